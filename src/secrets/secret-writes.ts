import type { Principal } from "../auth/principal.js";
import { requireAllowlisted, requireScope } from "../auth/authorize.js";
import type { SecretCache } from "../cache/secret-cache.js";
import { sealValue } from "../crypto/value-cipher.js";
import { AppError } from "../api/errors.js";
import type { DataKeys } from "../keys/data-keys.js";
import type { Db, Queryable } from "../store/db.js";
import * as binStore from "../store/bin-store.js";
import { appendChanges } from "../store/change-log.js";
import * as store from "../store/secret-store.js";
import * as versionStore from "../store/version-store.js";
import { retryConflicts } from "../store/conflicts.js";
import type { RateLimiter } from "./rate-limiter.js";
import { mustFind, notFound, toSecret, toVersion, versionNotFound, type Secret, type SecretVersion } from "./secret-rows.js";
import {
  validateDescription,
  validateExpiry,
  validateMetadata,
  validateName,
  validateRecoveryWindow,
  validateRestoreTarget,
  validateRotation,
  validateRotationChange,
  validateValue,
  validateVersion,
  type ExpiryInput,
  type JsonObject,
  type RotationInput,
} from "./validation.js";

/**
 * The writes: CreateSecret, UpdateSecret, DeleteSecret, DestroySecretVersion and
 * RestoreSecret. A delete moves the secret to the recovery bin unless forced
 * (store/bin-store.ts); a bin move and a restore change what a name reads, so they
 * are writes like the others. Each is fenced in the lookup cache before it commits
 * and released after (docs/design.md, The cache), and its transaction is retried
 * inside the fence when it loses a race (conflicts.ts). A value is sealed under the developer's
 * active data key inside the transaction that stores it (keys/data-keys.ts). A write that
 * changes what a name resolves to appends that change to the developer's change log, in
 * the same transaction and as its last lock (store/change-log.ts): WatchSecrets reads it.
 */
export interface SecretWrites {
  createSecret(p: Principal, input: CreateInput): Promise<Secret>;
  updateSecret(p: Principal, input: UpdateInput): Promise<Secret>;
  deleteSecret(p: Principal, name: string, expectedVersion: number, options?: DeleteOptions): Promise<void>;
  destroySecretVersion(p: Principal, name: string, version: number): Promise<SecretVersion>;
  /** Exactly one of `name` (the most recently deleted secret of that name) and `id`; the other is empty. */
  restoreSecret(p: Principal, target: { name: string; id: string }): Promise<Secret>;
}

/** DeleteSecret's choice between the recovery bin and deleting at once. */
export interface DeleteOptions {
  /** Days in the bin; 0 means the service's default. */
  recoveryWindowDays: number;
  /** Delete at once, skipping the bin. */
  force: boolean;
}

export interface CreateInput {
  name: string;
  value: string;
  description: string;
  metadata: JsonObject | undefined;
  /** Undefined: the secret does not expire. */
  expiry?: Exclude<ExpiryInput, { clear: boolean }>;
  /** Undefined: no rotation schedule. */
  rotation?: RotationInput;
}

export interface UpdateInput {
  name: string;
  value: string | undefined;
  description: string | undefined;
  metadata: JsonObject | undefined;
  expectedVersion: number;
  /** Undefined keeps the expiry as it is. */
  expiry?: ExpiryInput;
  /** Undefined keeps the schedule; `{ clear: true }` removes it. */
  rotation?: RotationInput | { clear: boolean };
}

export interface SecretWritesDeps {
  db: Db;
  dataKeys: DataKeys;
  cache: SecretCache;
  /** Versions that keep their ciphertext; older ones are destroyed (SECRETS_MAX_VERSIONS). */
  maxVersions: number;
  /** Secrets a developer may store (QUOTA_EXCEEDED past it). */
  maxSecrets: number;
  /** The per-developer write rate (RESOURCE_EXHAUSTED past it). */
  writes: RateLimiter;
  newId: () => string;
  /** Days a deleted secret stays in the recovery bin when the delete names none (SECRETS_RECOVERY_WINDOW_DAYS). */
  recoveryWindowDays: number;
  /** The clock a bin move's delete and purge times, and an expiry's and a schedule's times, are read from. */
  now: () => Date;
  /** Told of an expiry or rotation time a write has just stored, so the lifecycle job runs by then. */
  scheduled?: (at: Date) => void;
}

const DAY_MS = 86_400_000;

export function createSecretWrites(deps: SecretWritesDeps): SecretWrites {
  const { db, dataKeys, cache, maxVersions, maxSecrets, writes, newId, now } = deps;

  /**
   * A write: fenced in the cache before it commits, released after (docs/design.md, The
   * cache); the transaction is retried inside the fence when it loses a race.
   */
  async function fenced<T>(developerId: string, name: string, write: () => Promise<T>): Promise<T> {
    await cache.beginWrite(developerId, [name]);
    try {
      return await retryConflicts(write);
    } finally {
      await cache.endWrite(developerId, [name]);
    }
  }

  /** Tells the lifecycle job of the times a stored row now holds. */
  function scheduledTimes(row: store.SecretRow): void {
    if (row.expireTime) deps.scheduled?.(row.expireTime);
    if (row.nextRotationTime) deps.scheduled?.(row.nextRotationTime);
  }

  return {
    async createSecret(p, input) {
      requireScope(p, "secrets:write");
      const name = validateName(input.name);
      const value = validateValue(input.value);
      const description = validateDescription(input.description);
      const metadataJson = validateMetadata(input.metadata ?? {});
      const at = now();
      const expireTime = input.expiry === undefined ? null : validateExpiry(input.expiry, at);
      const rotation = input.rotation === undefined ? null : validateRotation(input.rotation, at);
      requireAllowlisted(p, [name]);
      writes.take(p.developerId);

      const id = newId();
      const row = await fenced(p.developerId, name, () => dataKeys.withWriteKey(p.developerId, async (tx, dek) => {
        const row = await store.insertSecret(tx, {
          id,
          developerId: p.developerId,
          name,
          description,
          metadataJson,
          createdBy: p.developerId,
          ciphertext: sealValue(dek.key, dek.version, value, { developerId: p.developerId, secretId: id, name, version: 1 }),
          dekVersion: dek.version,
          expireTime,
          rotation,
        }, maxSecrets);
        await appendChanges(tx, p.developerId, [{ kind: "created", name, version: 1 }], now());
        return row;
      }));
      scheduledTimes(row);
      return toSecret(row);
    },

    async updateSecret(p, input) {
      requireScope(p, "secrets:write");
      const name = validateName(input.name);
      const value = input.value === undefined ? undefined : validateValue(input.value);
      const description = input.description === undefined ? undefined : validateDescription(input.description);
      const metadataJson = input.metadata === undefined ? undefined : validateMetadata(input.metadata);
      const expected = validateVersion(input.expectedVersion, "expected_version", true);
      const at = now();
      const expireTime = input.expiry === undefined ? undefined : validateExpiry(input.expiry, at);
      const rotation = input.rotation === undefined ? undefined : validateRotationChange(input.rotation, at);
      if ([value, description, metadataJson, expireTime, rotation].every((v) => v === undefined)) {
        throw new AppError("EMPTY_UPDATE", "the update changes nothing: send value, description, metadata, an expiry or a rotation", {
          field: "value,description,metadata,expiration,rotation_change",
        });
      }
      requireAllowlisted(p, [name]);
      writes.take(p.developerId);

      const change = { description, metadataJson, expireTime, rotation, updatedBy: p.developerId };
      const row = await fenced(p.developerId, name, async () =>
        value === undefined
          ? await db.transaction(async (tx) => {
              const current = await lockForChange(tx, p.developerId, name, expected);
              return store.updateSecretAttributes(tx, p.developerId, current.id, { ...change, newVersion: undefined });
            })
          : await dataKeys.withWriteKey(p.developerId, async (tx, dek) => {
              const current = await lockForChange(tx, p.developerId, name, expected);
              const version = current.currentVersion + 1;
              const binding = { developerId: p.developerId, secretId: current.id, name, version };
              await versionStore.insertVersion(tx, {
                secretId: current.id,
                developerId: p.developerId,
                version,
                ciphertext: sealValue(dek.key, dek.version, value, binding),
                dekVersion: dek.version,
                createdBy: p.developerId,
              });
              await versionStore.destroyVersionsUpTo(tx, p.developerId, current.id, version - maxVersions);
              const updated = await store.updateSecretAttributes(tx, p.developerId, current.id, { ...change, newVersion: version });
              await appendChanges(tx, p.developerId, [{ kind: "updated", name, version }], now());
              return updated;
            }, {
              // A first write creates the developer's data key: not for an update of nothing
              // (the lock above re-checks once the key exists).
              beforeFirstKey: async () => void (await mustFind(db, p.developerId, name)),
            }),
      );
      scheduledTimes(row);
      return toSecret(row);
    },

    async deleteSecret(p, rawName, expectedVersion, options = { recoveryWindowDays: 0, force: false }) {
      requireScope(p, "secrets:write");
      const name = validateName(rawName);
      const expected = validateVersion(expectedVersion, "expected_version", true);
      const windowDays = validateRecoveryWindow(options.recoveryWindowDays, options.force, deps.recoveryWindowDays);
      requireAllowlisted(p, [name]);
      writes.take(p.developerId);
      await fenced(p.developerId, name, () =>
        db.transaction(async (tx) => {
          const current = await lockForChange(tx, p.developerId, name, expected);
          const deleteTime = now();
          if (windowDays === "force") {
            await store.deleteSecretById(tx, p.developerId, current.id);
          } else {
            const purgeTime = new Date(deleteTime.getTime() + windowDays * DAY_MS);
            await binStore.binSecret(tx, p.developerId, current.id, deleteTime, purgeTime);
          }
          await appendChanges(tx, p.developerId, [{ kind: "deleted", name, version: current.currentVersion }], deleteTime);
        }),
      );
    },

    async restoreSecret(p, input) {
      requireScope(p, "secrets:write");
      const target = validateRestoreTarget(input.name, input.id);
      if ("name" in target) requireAllowlisted(p, [target.name]);
      writes.take(p.developerId);
      // The name is fenced, so by id it is looked up first; names never change, and
      // the locked row is checked to still carry it.
      const name = "name" in target ? target.name : (await binStore.findBinned(db, p.developerId, target))?.name;
      if (name === undefined) throw notFound();
      if ("id" in target) requireAllowlisted(p, [name]);
      const row = await fenced(p.developerId, name, () =>
        db.transaction(async (tx) => {
          const binned = await binStore.findBinned(tx, p.developerId, target, true);
          if (binned?.name !== name) throw notFound();
          const at = now();
          const restored = await binStore.restoreBinned(tx, p.developerId, binned.id, at);
          await store.requireWithinQuota(tx, p.developerId, maxSecrets);
          await appendChanges(tx, p.developerId, [{ kind: "created", name, version: restored.currentVersion }], at);
          return restored;
        }),
      );
      scheduledTimes(row);
      return toSecret(row);
    },

    async destroySecretVersion(p, rawName, rawVersion) {
      requireScope(p, "secrets:write");
      const name = validateName(rawName);
      const version = validateVersion(rawVersion, "version", false);
      requireAllowlisted(p, [name]);
      writes.take(p.developerId);
      const row = await fenced(p.developerId, name, () => db.transaction(async (tx) => {
        const current = await mustFind(tx, p.developerId, name, true);
        if (version > current.currentVersion) throw versionNotFound(version);
        if (version === current.currentVersion) {
          throw new AppError("CURRENT_VERSION", "the current version cannot be destroyed; write a new value first", {
            version: String(version),
          });
        }
        await versionStore.destroyVersion(tx, p.developerId, current.id, version);
        await appendChanges(tx, p.developerId, [{ kind: "versionDestroyed", name, version }], now());
        return versionStore.findVersion(tx, p.developerId, current.id, version);
      }));
      if (!row) throw versionNotFound(version);
      return toVersion(row);
    },
  };
}

/** Locks a secret for a write and checks `expected_version` (0: no precondition) under that lock. */
async function lockForChange(tx: Queryable, developerId: string, name: string, expected: number): Promise<store.SecretRow> {
  const row = await mustFind(tx, developerId, name, true);
  if (expected !== 0 && row.currentVersion !== expected) {
    throw new AppError("VERSION_MISMATCH", "expected_version does not match the current version", {
      expected_version: String(expected),
      current_version: String(row.currentVersion),
    });
  }
  return row;
}
