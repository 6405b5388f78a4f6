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

/** Error kinds: one per gRPC status the service uses. */
export type ErrorKind =
  | "invalid_argument"
  | "not_found"
  | "already_exists"
  | "aborted"
  | "failed_precondition"
  | "resource_exhausted"
  | "unauthenticated"
  | "permission_denied"
  | "unavailable"
  | "unimplemented"
  | "internal";

/**
 * The reason catalogue (ErrorInfo.reason, domain "secrets.v1"). Clients branch on
 * these strings, so they are part of the API: add, never rename. docs/api.md lists
 * them with their statuses.
 */
export const REASONS = {
  INVALID_NAME: "invalid_argument",
  INVALID_VALUE: "invalid_argument",
  VALUE_TOO_LARGE: "invalid_argument",
  INVALID_DESCRIPTION: "invalid_argument",
  INVALID_METADATA: "invalid_argument",
  INVALID_PAGE_SIZE: "invalid_argument",
  INVALID_PAGE_TOKEN: "invalid_argument",
  INVALID_VERSION: "invalid_argument",
  INVALID_ARGUMENT: "invalid_argument",
  EMPTY_UPDATE: "invalid_argument",
  TOO_MANY_NAMES: "invalid_argument",
  SECRET_NOT_FOUND: "not_found",
  VERSION_NOT_FOUND: "not_found",
  SERVICE_UNKNOWN: "not_found",
  DEVELOPER_NOT_FOUND: "not_found",
  SECRET_EXISTS: "already_exists",
  VERSION_MISMATCH: "aborted",
  WRITE_CONFLICT: "aborted",
  VERSION_DESTROYED: "failed_precondition",
  CURRENT_VERSION: "failed_precondition",
  KEY_STATE: "failed_precondition",
  QUOTA_EXCEEDED: "resource_exhausted",
  RATE_LIMITED: "resource_exhausted",
  TOKEN_MISSING: "unauthenticated",
  TOKEN_INVALID: "unauthenticated",
  TOKEN_EXPIRED: "unauthenticated",
  SCOPE_MISSING: "permission_denied",
  NOT_ALLOWLISTED: "permission_denied",
  BACKEND_UNAVAILABLE: "unavailable",
  AUDIT_UNAVAILABLE: "unavailable",
  NOT_IMPLEMENTED: "unimplemented",
  INTEGRITY_FAILURE: "internal",
  INTERNAL: "internal",
} as const satisfies Record<string, ErrorKind>;

/** A machine-readable reason from the catalogue. */
export type Reason = keyof typeof REASONS;

/** The ErrorInfo domain of every error this service sends. */
export const ERROR_DOMAIN = "secrets.v1";

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
