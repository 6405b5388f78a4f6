import { SecretsError, SecretsUnavailableError, isTransient } from "@secrets-service/client";
import { redactSensitive } from "./sensitive.js";

/**
 * How the CLI fails: one line on stderr, `secrets: <what went wrong>`, and an exit
 * code a script can branch on. Expected failures never print a stack trace, and no
 * message holds a value or a token.
 */

/** Exit codes (listed in `secrets --help`). */
export const EXIT = {
  ok: 0,
  /** The service refused or failed the request (the reason is in the message). */
  service: 1,
  /** Bad usage or invalid input, found before anything was sent. */
  usage: 2,
  /** The service could not be reached or did not answer in time; retrying later may help. */
  unavailable: 3,
} as const;

/** An expected CLI-side failure: a message safe to print and its exit code. */
export class CliError extends Error {
  override name = "CliError";
  constructor(
    message: string,
    readonly exitCode: number = EXIT.usage,
  ) {
    super(message);
  }
}

/** The line to print (without the `secrets: ` prefix) and the exit code for any error. */
export function describeError(e: unknown): { message: string; exitCode: number; expected: boolean } {
  if (e instanceof CliError) return { message: e.message, exitCode: e.exitCode, expected: true };
  if (e instanceof SecretsError) {
    let message = e.message;
    if (e instanceof SecretsUnavailableError) {
      // The SDK's message names the address and the cause; the CLI adds what to do.
      message += "; is it running? (set --addr or SECRETS_ADDR)";
    }
    if (e.codeName === "UNAUTHENTICATED") {
      message += " (set SECRETS_TOKEN; against a dev-mode server: export SECRETS_TOKEN=$(secrets token))";
    }
    return { message, exitCode: isTransient(e) ? EXIT.unavailable : EXIT.service, expected: true };
  }
  // Third-party text (grpc-js, Node) may quote a token or a value: it is shown only on request.
  return { message: "unexpected error (SECRETS_DEBUG=1 shows details, with the token and values redacted)", exitCode: EXIT.service, expected: false };
}

/**
 * What the CLI prints on stderr for a failure: one `secrets: …` line, then, for an
 * unexpected error and only when `debug`, its stack. Every line passes through
 * redactSensitive, so neither holds the token or a value the command handled; the
 * stack, third-party text, is searched for their encoded forms too.
 */
export function failureText(e: unknown, debug: boolean): { text: string; exitCode: number } {
  const { message, exitCode, expected } = describeError(e);
  let text = redactSensitive(`secrets: ${message}\n`);
  if (!expected && debug) {
    text += redactSensitive(`${e instanceof Error ? (e.stack ?? `${e.name}: ${e.message}`) : String(e)}\n`, { encoded: true });
  }
  return { text, exitCode };
}
