/**
 * The secrets SDK, the package `@secrets-service/client`: a client of
 * `secrets.v1.SecretService` with plain objects in and out, typed errors to branch
 * on, deadlines, retries of idempotent calls, watches of changes, and an opt-in cache for
 * agent runtimes (a TTL, or kept fresh by a watch);
 * KeyService (`client.keys`) and AuditService (`client.audit`) for key holders and operators;
 * the secrets a task definition references (and resolving them in one call); and
 * redaction of secret values from text before it is shown or stored.
 */
export { SecretsClient, type SecretsApi, type SecretsClientOptions } from "./secrets-client.js";
export { parseAddress, DEFAULT_PORT, type ServiceAddress } from "./address.js";
export type {
  DataKeyInfo,
  DataKeyState,
  DeveloperKeyRotation,
  KeyApi,
  KeyStatus,
  MasterKeyInfo,
  MasterKeyRotation,
  ReplicaInfo,
  ShredResult,
} from "./key-api.js";
export type { AuditApi, AuditEvent, ListAuditEventsOptions } from "./audit-api.js";
export {
  SecretsError,
  SecretsUnavailableError,
  SecretsDeadlineError,
  SecretsTokenError,
  CLIENT_REASONS,
  isTransient,
  type ClientReason,
  type SecretsReason,
  type StatusCodeName,
} from "./errors.js";
export { LIMITS, LIST_METADATA_KEYS, type ListMetadataKey, type Reason } from "./contract.js";
export { SECRET_NAME_PATTERN, VALUE_MAX_BYTES, RESOLVE_MAX_NAMES, tokenProblem, valueProblem } from "./limits.js";
export type { RetryOptions } from "./retry.js";
export { VALUE_CHANGES } from "./watch.js";
export type { CacheOptions } from "./value-cache.js";
export type { TlsOptions } from "./transport.js";
export type { TokenSource } from "./token.js";
export type {
  AccessedSecret,
  CallOptions,
  CreateSecretInput,
  DeleteSecretInput,
  JsonObject,
  JsonValue,
  ListSecretsOptions,
  RestoreTarget,
  Rotation,
  RotationInput,
  Secret,
  SecretVersion,
  UpdateSecretInput,
  VersionState,
  WatchedSecret,
  WatchEvent,
  WatchEventType,
  WatchOptions,
  WatchTarget,
  WatchUpdate,
} from "./types.js";
export {
  collectSecretReferences,
  resolveTaskSecrets,
  TaskReferencesError,
  TooManySecretReferencesError,
  type SecretReferences,
  type TaskReferenceError,
  type TaskSecretsClient,
} from "./task-references.js";
export { redactSecrets, createSecretRedactor, MIN_ENCODED_REDACTION_BYTES, type RedactOptions } from "./redact.js";
