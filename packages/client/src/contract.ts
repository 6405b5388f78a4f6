/**
 * The parts of the API contract that server and SDK both enforce or read, written once: the input limits, the
 * naming rules, and the reason catalogue of ErrorInfo (docs/api.md). The server imports them from
 * `@secrets-service/client/contract`; this module imports nothing, so the server loads no client code with it.
 */

/** The API's input limits (docs/api.md): the service enforces them, the SDK and the CLI check before they send. */
export const LIMITS = {
  nameMaxLength: 128,
  valueMaxBytes: 64 * 1024,
  descriptionMaxChars: 1024,
  metadataMaxBytes: 16 * 1024,
  metadataMaxDepth: 8,
  metadataMaxKeys: 256,
  pageSizeDefault: 50,
  pageSizeMax: 500,
  resolveMaxNames: 100,
} as const;

/** A secret name: an ASCII letter, then letters, digits and underscores; 1 to `nameMaxLength` characters. */
const NAME = `[A-Za-z][A-Za-z0-9_]{0,${LIMITS.nameMaxLength - 1}}`;

/** Secret names (and the names a token's `secrets` allowlist may hold). */
export const NAME_PATTERN = new RegExp(`^${NAME}$`);
/** A prefix of some valid name (possibly empty). */
export const NAME_PREFIX_PATTERN = new RegExp(`^(?:${NAME})?$`);

/**
 * A bearer token as `authorization: Bearer <token>` carries it: RFC 6750's b64token
 * (a JWT is three base64url parts joined by dots). No space, control or non-ASCII
 * character; the service refuses any other token before it looks at it.
 */
export const BEARER_TOKEN_PATTERN = /^[A-Za-z0-9._~+/=-]+$/;

/** A token's `sub`, the developer a call acts for (docs/api.md, Tokens). */
export const SUBJECT_PATTERN = /^[A-Za-z0-9._@:-]{1,128}$/;

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
 * The reason catalogue (ErrorInfo.reason, domain "secrets.v1") with the kind each reason fixes. Clients branch
 * on these strings, so they are part of the API: add, never rename. docs/api.md lists them with their statuses.
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
  RESTORE_NAME_TAKEN: "already_exists",
  VERSION_MISMATCH: "aborted",
  WRITE_CONFLICT: "aborted",
  VERSION_DESTROYED: "failed_precondition",
  CURRENT_VERSION: "failed_precondition",
  REVISION_UNAVAILABLE: "failed_precondition",
  KEY_STATE: "failed_precondition",
  QUOTA_EXCEEDED: "resource_exhausted",
  RATE_LIMITED: "resource_exhausted",
  TOO_MANY_WATCHES: "resource_exhausted",
  TOKEN_MISSING: "unauthenticated",
  TOKEN_INVALID: "unauthenticated",
  TOKEN_EXPIRED: "unauthenticated",
  SCOPE_MISSING: "permission_denied",
  NOT_ALLOWLISTED: "permission_denied",
  BACKEND_UNAVAILABLE: "unavailable",
  AUDIT_UNAVAILABLE: "unavailable",
  SHUTTING_DOWN: "unavailable",
  NOT_IMPLEMENTED: "unimplemented",
  INTEGRITY_FAILURE: "internal",
  INTERNAL: "internal",
} as const satisfies Record<string, ErrorKind>;

/** A machine-readable reason from the catalogue. */
export type Reason = keyof typeof REASONS;

/** The ErrorInfo domain of every error this service sends. */
export const ERROR_DOMAIN = "secrets.v1";

/**
 * ErrorInfo metadata keys whose value is a list, sent joined with "," (ErrorInfo metadata is string to
 * string): `names` (SECRET_NOT_FOUND, NOT_ALLOWLISTED) and `replicas` (KEY_STATE, BACKEND_UNAVAILABLE). Items
 * never hold a comma: names follow NAME_PATTERN, replica ids are host-style ids.
 */
export const LIST_METADATA_KEYS = ["names", "replicas"] as const;

/** A list-valued ErrorInfo metadata key. */
export type ListMetadataKey = (typeof LIST_METADATA_KEYS)[number];

/** The one way the server joins a list for ErrorInfo metadata, and the SDK splits it. */
export const LIST_SEPARATOR = ",";
