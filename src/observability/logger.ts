import { pino, type Logger } from "pino";

import { batchLines } from "./log-lines.js";

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
 * The service's logger. To stdout it writes through a buffered asynchronous
 * destination: a synchronous write per call line cost about an eighth of a cache
 * hit's CPU (profiled). Lines are gathered into batches of 8 KiB (log-lines.ts),
 * and reach stdout within 250 ms, or at once on `flush`; a crash can lose the last
 * few hundred milliseconds of log lines (never audit events, which go to the database).
 */
export function createLogger(level: string, destination?: NodeJS.WritableStream): Logger {
  const options = { level, redact: { paths: LOG_REDACT_PATHS, censor: "[REDACTED]" }, base: { service: "secrets" } };
  if (destination) return pino(options, destination as pino.DestinationStream);
  const stdout = batchLines(pino.destination({ dest: 1, sync: false }), 8192);
  setInterval(() => stdout.drain(), 250).unref();
  process.once("exit", () => stdout.flushSync());
  return pino(options, stdout);
}

