/**
 * The SDK's plain data types: what callers pass in and get back. They mirror
 * `secrets.v1` without protobuf classes, so a caller never imports generated code:
 * metadata is a JSON object, timestamps are Dates, a version's state is a string.
 */

/** A JSON value, as metadata holds it. */
export type JsonValue = string | number | boolean | null | JsonValue[] | JsonObject;

/** A JSON object: the shape of a secret's metadata and of a metadata filter. */
export interface JsonObject {
  [key: string]: JsonValue;
}

/** A secret's attributes; never its value (use `access` or `resolve` for that). */
export interface Secret {
  /** Random UUID, never reused: a deleted and re-created name is a new secret. */
  readonly id: string;
  readonly name: string;
  readonly description: string;
  /** `{}` when the secret has none. */
  readonly metadata: JsonObject;
  /** The current version: 1 at creation, one more for every new value. */
  readonly version: number;
  readonly createdAt: Date;
  readonly updatedAt: Date;
  /** The token `sub` that created the secret. */
  readonly createdBy: string;
  /** The token `sub` that last changed it. */
  readonly updatedBy: string;
}

/** Whether a version still holds its ciphertext. */
export type VersionState = "enabled" | "destroyed";

/** One version of a secret, without its value. */
export interface SecretVersion {
  readonly version: number;
  readonly state: VersionState;
  readonly createdAt: Date;
  readonly createdBy: string;
}

/** One version's value, as `access` returns it. */
export interface AccessedSecret {
  readonly name: string;
  readonly version: number;
  readonly value: string;
}

/** What `create` takes. */
export interface CreateSecretInput {
  name: string;
  /** UTF-8, 1 byte to 64 KiB. */
  value: string;
  description?: string;
  metadata?: JsonObject;
}

/**
 * What `update` takes: a field left out is unchanged, a field given replaces the
 * old one whole (`metadata: {}` clears it). Only a new value makes a new version.
 */
export interface UpdateSecretInput {
  value?: string;
  description?: string;
  metadata?: JsonObject;
  /** 0 or absent: no precondition; otherwise the call fails ABORTED (VERSION_MISMATCH) unless it is current. */
  expectedVersion?: number;
}

/** What `list` filters on. */
export interface ListSecretsOptions {
  /** Literal prefix of the names (an underscore is not a wildcard). */
  namePrefix?: string;
  /** JSON containment: only secrets whose metadata contains this object. */
  metadataFilter?: JsonObject;
  /** Secrets fetched per call (the server's default is 50, its maximum 500). */
  pageSize?: number;
}

/** Per-call options every method accepts as its last argument. */
export interface CallOptions {
  /** Overrides the client's `deadlineMs` for this call (retries included). */
  deadlineMs?: number;
  /** Cancels the call (and any retry wait); it then fails CANCELLED. */
  signal?: AbortSignal;
}
