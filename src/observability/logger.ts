import { pino, type Logger } from "pino";

/** Fields pino removes wherever they appear: a safety net, not the first defence. */
export const LOG_REDACT_PATHS = [
  "value",
  "*.value",
  "values",
  "*.values",
  "token",
  "*.token",
  "authorization",
  "*.authorization",
  "metadata.authorization",
  "key",
  "*.key",
  "secret",
  "*.secret",
  "password",
  "*.password",
];

/**
 * The service's logger. To stdout it writes through sonic-boom, asynchronously and
 * buffered: a synchronous write per call line would cost a noticeable share of a
 * cache hit's CPU. Lines go out in writes of at least 8 KiB, and within 250 ms, or
 * at once on `flush`; a crash can lose the last few hundred milliseconds of log
 * lines (never audit events, which go to the database).
 */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  const options = { level, redact: { paths: LOG_REDACT_PATHS, censor: "[REDACTED]" }, base: { service: "secrets" } };
  if (destination) return pino(options, destination as pino.DestinationStream);
  const stdout = pino.destination({ dest: 1, sync: false, minLength: 8192, periodicFlush: 250 });
  process.once("exit", () => stdout.flushSync());
  return pino(options, stdout);
}
