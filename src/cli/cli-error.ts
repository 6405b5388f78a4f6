import { SecretsError, SecretsUnavailableError, isTransient } from "@secrets-service/client";

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
export function describeError(e: unknown, address: string | undefined): { message: string; exitCode: number; expected: boolean } {
  if (e instanceof CliError) return { message: e.message, exitCode: e.exitCode, expected: true };
  if (e instanceof SecretsError) {
    let message = e.message;
    if (e instanceof SecretsUnavailableError) {
      // grpc-js's text ends in an empty "Resolution note:"; the cause before it is what helps.
      const cause = e.details.replace(/\.?\s*Resolution note:\s*$/, "");
      message = `UNAVAILABLE: cannot reach the service${address ? ` at ${address}` : ""} (${cause}); is it running? (set --addr or SECRETS_ADDR)`;
    }
    if (e.codeName === "UNAUTHENTICATED") {
      message += " (set SECRETS_TOKEN; against a dev-mode server: export SECRETS_TOKEN=$(secrets token))";
    }
    return { message, exitCode: isTransient(e) ? EXIT.unavailable : EXIT.service, expected: true };
  }
  const message = e instanceof Error ? e.message : String(e);
  return { message: `unexpected error: ${message}`, exitCode: EXIT.service, expected: false };
}
