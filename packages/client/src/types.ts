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
  /** When the service deletes it into the recovery bin; absent when it never expires. */
  readonly expireTime?: Date;
  /** Its rotation schedule; absent when it has none. */
  readonly rotation?: Rotation;
  /** In the recovery bin only (`list({ deleted: true })`): when it was deleted. */
  readonly deleteTime?: Date;
  /** In the recovery bin only: when the service purges it for good. */
  readonly purgeTime?: Date;
}

/**
 * A rotation schedule. It reminds, it does not rotate: at `nextRotationTime` the
 * service records a `RotationDue` audit event and moves the time on by the period.
 */
export interface Rotation {
  readonly nextRotationTime: Date;
  /** The period in seconds (1 hour to 36,500 days). */
  readonly periodSeconds: number;
  /** Set while a rotation is due: when it became due. Writing a new value clears it. */
  readonly dueTime?: Date;
}

/** A rotation schedule as `create` and `update` take it. */
export interface RotationInput {
  /** Whole seconds, 1 hour to 36,500 days. */
  periodSeconds: number;
  /** In the future; absent: one period from now. */
  nextRotationTime?: Date;
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
  /** When it expires (deleted into the recovery bin): in the future, at most 36,500 days ahead. Not with `ttlSeconds`. */
  expireTime?: Date;
  /** Expires this many seconds from now (1 to 36,500 days' worth). Not with `expireTime`. */
  ttlSeconds?: number;
  rotation?: RotationInput;
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
  /** A new expiry time; `null` removes the expiry. Not with `ttlSeconds`. */
  expireTime?: Date | null;
  /** A new expiry, this many seconds from now. Not with `expireTime`. */
  ttlSeconds?: number;
  /** A new rotation schedule (its due state starts afresh); `null` removes it. */
  rotation?: RotationInput | null;
}

/** What `delete` takes. */
export interface DeleteSecretInput {
  /** 0 or absent: no precondition; otherwise as in `update`. */
  expectedVersion?: number;
  /** Delete at once, skipping the recovery bin: the versions are erased for good. Not with `recoveryWindowDays`. */
  force?: boolean;
  /** Days in the recovery bin before the purge, 1 to 365; absent or 0: the service's default. */
  recoveryWindowDays?: number;
}

/** Which binned secret `restore` brings back: the most recently deleted one of a name, or one by id. */
export type RestoreTarget = { name: string; id?: never } | { id: string; name?: never };

/** What `list` filters on. */
export interface ListSecretsOptions {
  /** Literal prefix of the names (an underscore is not a wildcard). */
  namePrefix?: string;
  /** JSON containment: only secrets whose metadata contains this object. */
  metadataFilter?: JsonObject;
  /** Secrets fetched per call (the server's default is 50, its maximum 500). */
  pageSize?: number;
  /** List the secrets in the recovery bin (with `deleteTime` and `purgeTime`) instead of the live ones. */
  deleted?: boolean;
  /** Only secrets that expire before this time. */
  expiresBefore?: Date;
  /** Only secrets whose rotation is due. */
  rotationDue?: boolean;
}

/** Per-call options every method accepts as its last argument. */
export interface CallOptions {
  /** Overrides the client's `deadlineMs` for this call (retries included). */
  deadlineMs?: number;
  /** Cancels the call (and any retry wait); it then fails CANCELLED. */
  signal?: AbortSignal;
}

import type { SecretsError } from "./errors.js";

/** Which secrets `watch` follows: a list of 1 to 100 names, or every name that starts with `prefix` ("" for all). */
export type WatchTarget = { names: readonly string[]; prefix?: never } | { prefix: string; names?: never };

/** What `watch` takes besides its target. */
export interface WatchOptions {
  /**
   * Resume after this revision (one a previous watch reported) instead of starting with a snapshot:
   * its changes are replayed first. If the service no longer holds it, the watch starts with a snapshot.
   */
  fromRevision?: number;
  /** Ends the watch: the iteration then fails CANCELLED. Breaking out of the loop ends it too. */
  signal?: AbortSignal;
  /**
   * Told of each failure the watch recovers from, before it waits to reconnect: `attempt` counts the
   * failures since the last update (1 for the first), for logging or for giving up (abort the signal).
   * `error` is UNAVAILABLE (the stream was lost) or REVISION_UNAVAILABLE (a new snapshot follows).
   */
  onRetry?: (error: SecretsError, attempt: number) => void;
}

/**
 * What changed, in the service's words: `created` (the name resolves again: a create or a restore),
 * `updated` (a new current version), `deleted` (the name no longer resolves: a delete or an expiry),
 * `versionDestroyed` (an old version's value was destroyed), `rotationDue` (a rotation reminder fired).
 */
export type WatchEventType = "created" | "updated" | "deleted" | "versionDestroyed" | "rotationDue";

/** One change to one secret; never its value. */
export interface WatchEvent {
  readonly type: WatchEventType;
  readonly name: string;
  /** The new current version; for `versionDestroyed`, the destroyed one. */
  readonly version: number;
  /** The developer's revision this change made (revisions count every change of the developer). */
  readonly revision: number;
  /** When the change committed, by the service's clock. */
  readonly time: Date;
}

/** A watched secret that exists, and its current version. */
export interface WatchedSecret {
  readonly name: string;
  readonly version: number;
}

/**
 * What a watch yields. Every item carries the revision the watch stands at: every change up to it has
 * been delivered, so it is the point to resume after (`fromRevision`).
 *
 * - `snapshot`: the watched secrets that exist, as they stand at `revision`. First, unless the watch
 *   resumes (`fromRevision`); again whenever the service could not resume it (its change log no longer
 *   holds the revision): state built from earlier items must then be replaced, not patched.
 * - `events`: changes after the previous item, in revision order (gaps between revisions are changes
 *   the watch does not cover).
 * - `progress`: nothing new; the service says so every 30 s of quiet, which also shows the watch is alive.
 */
export type WatchUpdate =
  | { readonly kind: "snapshot"; readonly secrets: readonly WatchedSecret[]; readonly revision: number }
  | { readonly kind: "events"; readonly events: readonly WatchEvent[]; readonly revision: number }
  | { readonly kind: "progress"; readonly revision: number };
