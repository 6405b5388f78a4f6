/**
 * The closed set of error kinds the service raises, and the catalogue of reasons.
 *
 * Every failure the domain knows about is an AppError whose `reason` comes from
 * REASONS; the reason fixes the kind, and the kind fixes the gRPC status (mapped in
 * exactly one place, `server/status.ts`). There are no ad-hoc kinds. The message is
 * safe to send to the caller: it says what was wrong with the input and never
 * echoes a value, a token or a key. Whatever caused the error internally is kept in
 * `cause`, which is logged and never sent.
 */

import { ERROR_DOMAIN, REASONS, type ErrorKind, type Reason } from "@secrets-service/client/contract";

/** The kinds and the catalogue are written once, in the SDK package's contract module (docs/api.md lists them). */
export { ERROR_DOMAIN, REASONS, type ErrorKind, type Reason };

/**
 * An expected failure with a safe message. `metadata` goes to the caller in
 * ErrorInfo (e.g. `field`, `names`), so it must never hold a value or a token.
 */
export class AppError extends Error {
  override readonly name = "AppError";
  readonly kind: ErrorKind;
  readonly reason: Reason;
  readonly metadata: Readonly<Record<string, string>>;
  /** Safe facts for the server's log line only (never sent), e.g. a rejected name's length and hash. */
  readonly logFields: Readonly<Record<string, unknown>> | undefined;

  constructor(
    reason: Reason,
    message: string,
    metadata: Record<string, string> = {},
    options?: { cause?: unknown; logFields?: Record<string, unknown> },
  ) {
    super(message, options?.cause === undefined ? undefined : { cause: options.cause });
    this.reason = reason;
    this.kind = REASONS[reason];
    this.metadata = Object.freeze({ ...metadata });
    this.logFields = options?.logFields;
  }
}

/** True for an AppError; anything else reaching the edge is a bug, reported as INTERNAL. */
export function isAppError(e: unknown): e is AppError {
  return e instanceof AppError;
}

/** Shorthand for the invalid-argument family, which always names the offending field. */
export function invalid(reason: Reason, field: string, message: string): AppError {
  return new AppError(reason, message, { field });
}

/**
 * A ciphertext or wrapped key failed authentication: tampering, a row moved, or a
 * bug. Always INTERNAL to the caller (never a wrong value), logged as an integrity event.
 */
export function integrityFailure(what: string, cause?: unknown): AppError {
  return new AppError("INTEGRITY_FAILURE", "internal error", { what }, { cause });
}
