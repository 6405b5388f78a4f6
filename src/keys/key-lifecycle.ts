import { SUBJECT_PATTERN, type Principal } from "../auth/principal.js";
import type { SecretCache } from "../cache/secret-cache.js";
import type { KeyProvider } from "../crypto/key-provider.js";
import { KeyBytes } from "../crypto/key-bytes.js";
import { openValue, sealValue } from "../crypto/value-cipher.js";
import { AppError, invalid } from "../api/errors.js";
import type { Db, Queryable } from "../store/db.js";
import * as keyStore from "../store/key-store.js";
import * as replicaStore from "../store/replica-store.js";
import { requireScope } from "../auth/authorize.js";
import { retryConflicts } from "../secrets/conflicts.js";
import { DataKeyUnavailable, type DataKey, type DataKeys } from "./data-keys.js";

/**
 * The key lifecycle, run while the service serves traffic (docs/design.md, Key lifecycle):
 *
 * - Master key rotation records a new active master key once every live replica
 *   holds it; data keys are then rewrapped in the background, in batches, by any
 *   replica (rows locked FOR UPDATE SKIP LOCKED). All progress lives in the database,
 *   so a rotation interrupted by a crash resumes when any replica runs again.
 * - Developer key rotation adds a data key version for new writes (taking the old
 *   one FOR UPDATE, which waits for writes holding it FOR SHARE) and marks the old
 *   one retiring; values are re-encrypted row by row with compare-and-swap, and the
 *   old version is retired, its wrapped key erased, under FOR UPDATE after a recount
 *   shows nothing references it.
 * - Shredding deletes a developer's secrets, data keys and cache entries and has
 *   every live replica evict their unwrapped keys before the call returns.
 * - Each replica heartbeats (with the ids of the master keys it holds) and applies
 *   every published eviction it has not acknowledged yet.
 *
 * The active master key is read from Postgres wherever it decides something (a
 * rewrap's target, a new key's wrapping, GetKeyStatus), never from a replica's
 * memory: a replica that has not heard of a rotation yet cannot move keys back.
 * The row locks these take follow the order written in store/key-store.ts.
 */

export interface KeyStatus {
  activeMasterKeyId: string;
  dataKeysPerMasterKey: Map<string, number>;
  dataKeysToRewrap: number;
  versionsToReencrypt: number;
  replicas: replicaStore.ReplicaRow[];
  dataKeys: keyStore.DataKeyInfoRow[];
}

/** What ShredDeveloper destroyed, and how the clean-up went. */
export interface ShredResult {
  developerId: string;
  secretsDeleted: number;
  versionsDeleted: number;
  dataKeysDeleted: number;
  /** Live replicas (this one included) that confirmed they dropped the developer's unwrapped keys. */
  replicasEvicted: number;
  /** Cache entries deleted from Redis (or the in-process cache). */
  cacheEntriesDeleted: number;
  /** The cache clean-up failed (logged): entries left behind hold ciphertexts under destroyed keys and expire. */
  cacheCleanupFailed: boolean;
}

export interface KeyLifecycle {
  rotateMasterKey(p: Principal, keyId: string): Promise<{ activeKeyId: string; previousKeyId: string; dataKeysToRewrap: number }>;
  rotateDeveloperKey(
    p: Principal,
    developerId: string,
  ): Promise<{ developerId: string; newVersion: number; previousVersion: number; versionsToReencrypt: number }>;
  shredDeveloper(p: Principal, developerId: string, confirmDeveloperId: string): Promise<ShredResult>;
  getKeyStatus(p: Principal, developerId: string): Promise<KeyStatus>;
  /** The active master key as this replica last read it (for logs; decisions read the database). */
  activeKekId(): string;
  /** Starts a rotation of a developer's data key without a caller (encryption limit reached). */
  rotateInBackground(developerId: string): void;
  /** Background work not done yet, for the metrics: data keys to rewrap, versions to re-encrypt. */
  pendingJobs(): Promise<{ rewrap: number; reencrypt: number }>;
  /** Registers this replica (heartbeat) and starts the background loops. */
  start(): Promise<void>;
  /** Stops the loops and deregisters this replica. */
  stop(): Promise<void>;
  /** One pass of the background work (rewrap, re-encrypt, retire); returns how much it did. */
  runBackgroundPass(): Promise<{ rewrapped: number; reencrypted: number; retired: number }>;
}

export interface KeyLifecycleDeps {
  db: Db;
  keyProvider: KeyProvider;
  dataKeys: DataKeys;
  cache: SecretCache;
  replicaId: string;
  initialActiveKekId: string;
  /** Rows per background batch, and a pause between batches to bound the load (SECRETS_KEY_JOB_*). */
  batchSize: number;
  pauseMs: number;
  heartbeatMs?: number;
  evictionPollMs?: number;
  backgroundMs?: number;
  /** How long ShredDeveloper waits for every live replica to confirm the eviction. */
  evictionWaitMs?: number;
  onError?: (what: string, e: unknown) => void;
  onEvent?: (what: string, fields: Record<string, unknown>) => void;
}

const KEY_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

/** A developer whose keys went (a shred) while background work for it was under way. */
class DeveloperGone extends Error {}

export function createKeyLifecycle(deps: KeyLifecycleDeps): KeyLifecycle {
  const { db, keyProvider, dataKeys, cache, replicaId } = deps;
  let activeKekId = deps.initialActiveKekId;
  let running = false;
  const timers = new Set<NodeJS.Timeout>();
  let backgroundBusy: Promise<unknown> | undefined;
  let backgroundAgain = false;
  const rotating = new Set<string>();

  const report = (what: string, e: unknown) => deps.onError?.(what, e);
  const pause = () => (deps.pauseMs > 0 ? new Promise((r) => setTimeout(r, deps.pauseMs)) : Promise.resolve());

  function every(ms: number, fn: () => Promise<unknown>, what: string): void {
    const tick = () => {
      if (!running) return;
      fn()
        .catch((e: unknown) => report(what, e))
        .finally(() => {
          if (!running) return;
          const t = setTimeout(() => {
            timers.delete(t);
            tick();
          }, ms);
          t.unref();
          timers.add(t);
        });
    };
    tick();
  }

  let beats = 0;
  async function heartbeatOnce(): Promise<void> {
    await replicaStore.heartbeat(db, replicaId, keyProvider.keyIds());
    activeKekId = await keyStore.activeMasterKey(db);
    // Now and then, forget evictions every replica applied long ago (the DEK cache TTL is minutes).
    if (beats++ % 100 === 0) await replicaStore.pruneEvictions(db, 3_600);
  }

  /**
   * Applies the evictions this replica has not acknowledged. Not a cursor over ids:
   * ids are handed out before commit, so an eviction can become visible after one
   * with a higher id, and "after the last id seen" would skip it.
   */
  async function applyEvictions(): Promise<void> {
    const evictions = await replicaStore.unacknowledgedEvictions(db, replicaId);
    if (evictions.length === 0) return;
    for (const e of evictions) dataKeys.evict(e.developerId);
    await replicaStore.acknowledgeEvictions(db, replicaId, evictions.map((e) => e.id));
  }

  /** Publishes an eviction of a developer's unwrapped keys and applies it here at once; returns its id. */
  async function publishEviction(developerId: string): Promise<number> {
    dataKeys.evict(developerId);
    const id = await replicaStore.publishEviction(db, developerId);
    await replicaStore.acknowledgeEvictions(db, replicaId, [id]);
    return id;
  }

  /** Waits until every live replica acknowledged eviction `id`; returns how many did. */
  async function awaitAcknowledgements(id: number): Promise<number> {
    const deadline = Date.now() + (deps.evictionWaitMs ?? 10_000);
    for (;;) {
      const missing = await replicaStore.replicasMissingAck(db, id);
      if (missing.length === 0) break;
      if (Date.now() > deadline) {
        throw new AppError("BACKEND_UNAVAILABLE", "not every live replica confirmed the key eviction in time; the shred itself is done", {
          replicas: missing.join(","),
        });
      }
      await new Promise((r) => setTimeout(r, 100));
    }
    return replicaStore.countAcknowledgements(db, id);
  }

  /**
   * Rewraps one batch of data keys under the active master key, read under a share
   * lock for the whole batch (so a rotation waits for it, and the next batch reads
   * the new key), and written back in one statement.
   */
  async function rewrapBatch(): Promise<number> {
    return retryConflicts(() =>
      db.transaction(async (tx) => {
        const kek = await keyStore.activeMasterKey(tx, { forShare: true });
        activeKekId = kek;
        // Keys under a master key this replica lacks are left to a replica that holds it.
        const from = keyProvider.keyIds().filter((id) => id !== kek);
        if (!keyProvider.has(kek) || from.length === 0) return 0;
        const rows = await keyStore.lockDataKeysToRewrap(tx, from, deps.batchSize);
        const rewrapped: { row: keyStore.DataKeyRow; wrappedKey: Buffer }[] = [];
        for (const row of rows) {
          if (row.wrappedKey === null) continue;
          const context = { developerId: row.developerId, dekVersion: row.version };
          const dek = await keyProvider.unwrap(row.kekId, row.wrappedKey, context);
          try {
            rewrapped.push({ row, wrappedKey: await keyProvider.wrap(kek, dek, context) });
          } finally {
            dek.zeroize(); // our own unwrapped copy, never the one in the DEK cache
          }
        }
        return keyStore.rewrapDataKeys(tx, rewrapped, kek);
      }),
    );
  }

  async function reencryptBatch(): Promise<number> {
    const rows = await keyStore.ciphertextsUnderRetiringKeys(db, deps.batchSize);
    const byDeveloper = new Map<string, keyStore.StaleCiphertextRow[]>();
    for (const row of rows) byDeveloper.set(row.developerId, [...(byDeveloper.get(row.developerId) ?? []), row]);
    let done = 0;
    for (const [developerId, list] of byDeveloper) {
      try {
        done += await reencryptOf(developerId, list);
      } catch (e) {
        // Shredded since the rows were read: nothing of it is left to re-encrypt.
        if (!(e instanceof DeveloperGone) && !(e instanceof DataKeyUnavailable)) throw e;
      }
    }
    return done;
  }

  /** Re-encrypts one developer's rows under its active key; never creates a first key (DeveloperGone). */
  function reencryptOf(developerId: string, list: readonly keyStore.StaleCiphertextRow[]): Promise<number> {
    const reencrypt = async (tx: Queryable, dek: DataKey) => {
      let swapped = 0;
      for (const row of list) {
        const binding = { developerId, secretId: row.secretId, name: row.name, version: row.version };
        const old = await dataKeys.forRead(developerId, row.dekVersion);
        const plaintext = openValue(old, row.dekVersion, row.ciphertext, binding);
        try {
          const sealed = sealValue(dek.key, dek.version, plaintext, binding);
          if (await keyStore.swapCiphertext(tx, row, sealed, dek.version)) swapped += 1;
        } finally {
          plaintext.fill(0);
        }
      }
      return swapped;
    };
    const options = { encryptions: list.length, beforeFirstKey: () => Promise.reject(new DeveloperGone()) };
    return retryConflicts(() => dataKeys.withWriteKey(developerId, reencrypt, options));
  }

  async function retireUnreferenced(): Promise<number> {
    let retired = 0;
    for (const key of await keyStore.retiringDataKeys(db)) {
      const done = await retryConflicts(() => db.transaction((tx) => keyStore.retireIfUnreferenced(tx, key.developerId, key.version)));
      if (!done) continue;
      retired += 1;
      deps.onEvent?.("data key retired", { developer: key.developerId, version: key.version });
      await publishEviction(key.developerId);
      await cache.evictDeveloper(key.developerId).catch((e: unknown) => report("retired key: cache clean-up", e));
    }
    return retired;
  }

  async function backgroundPass(): Promise<{ rewrapped: number; reencrypted: number; retired: number }> {
    let rewrapped = 0;
    let reencrypted = 0;
    for (let n = await rewrapBatch(); n > 0; n = await rewrapBatch()) {
      rewrapped += n;
      await pause();
    }
    for (let n = await reencryptBatch(); n > 0; n = await reencryptBatch()) {
      reencrypted += n;
      await pause();
    }
    const retired = await retireUnreferenced();
    if (rewrapped + reencrypted + retired > 0) deps.onEvent?.("key job pass", { rewrapped, reencrypted, retired });
    return { rewrapped, reencrypted, retired };
  }

  /** Runs a background pass now (or right after the running one). */
  function kick(): void {
    if (backgroundBusy) {
      backgroundAgain = true;
      return;
    }
    backgroundBusy = backgroundPass()
      .catch((e: unknown) => report("key job", e))
      .finally(() => {
        backgroundBusy = undefined;
        if (backgroundAgain && running) {
          backgroundAgain = false;
          kick();
        }
      });
  }

  /**
   * The developer a key call is about: empty means the caller. The scope is checked
   * before the id is validated (the order of docs/api.md, Tokens): one's own needs `ownScope`,
   * anyone else's needs operator.
   */
  function authorizeDeveloper(p: Principal, developerId: string, ownScope: "secrets:keys" | "secrets:operator"): string {
    const target = developerId === "" ? p.developerId : developerId;
    if (target === p.developerId && !p.scopes.has("secrets:operator")) requireScope(p, ownScope);
    else requireScope(p, "secrets:operator");
    if (!SUBJECT_PATTERN.test(target)) throw invalid("INVALID_ARGUMENT", "developer_id", "developer_id is malformed");
    return target;
  }

  async function rotateDeveloper(developerId: string): Promise<{ newVersion: number; previousVersion: number }> {
    const fresh = KeyBytes.random(32);
    try {
      const result = await retryConflicts(() =>
        db.transaction(async (tx) => {
          const active = await keyStore.lockActiveForRotation(tx, developerId);
          if (!active) throw new AppError("KEY_STATE", "this developer has no data key yet", {});
          const next = await dataKeys.wrapNew(tx, developerId, fresh);
          await keyStore.insertRotatedDataKey(tx, developerId, active.version, next.version, next.kekId, next.wrappedKey);
          return { newVersion: next.version, previousVersion: active.version };
        }),
      );
      deps.onEvent?.("data key rotated", { developer: developerId, ...result });
      kick();
      return result;
    } finally {
      fresh.zeroize();
    }
  }

  const lifecycle: KeyLifecycle = {
    activeKekId: () => activeKekId,

    async rotateMasterKey(p, keyId) {
      requireScope(p, "secrets:operator");
      if (!KEY_ID_PATTERN.test(keyId)) throw invalid("INVALID_ARGUMENT", "key_id", "key_id must be a master key id ([A-Za-z0-9_-], 1 to 64)");
      if (!keyProvider.has(keyId)) {
        throw new AppError("KEY_STATE", "this replica's keyring does not hold that master key", { key_id: keyId, replicas: replicaId });
      }
      await heartbeatOnce();
      const lacking = (await replicaStore.liveReplicas(db)).filter((r) => !r.keyIds.includes(keyId)).map((r) => r.id);
      if (lacking.length > 0) {
        throw new AppError("KEY_STATE", `live replicas lack master key ${keyId}: ${lacking.join(", ")}`, {
          key_id: keyId,
          replicas: lacking.join(","),
        });
      }
      const previousKeyId = await db.transaction((tx) => keyStore.setActiveMasterKey(tx, keyId));
      activeKekId = keyId;
      deps.onEvent?.("master key activated", { keyId, previousKeyId });
      kick();
      return { activeKeyId: keyId, previousKeyId, dataKeysToRewrap: await keyStore.countDataKeysToRewrap(db, keyId) };
    },

    async rotateDeveloperKey(p, rawDeveloperId) {
      const developerId = authorizeDeveloper(p, rawDeveloperId, "secrets:keys");
      const r = await rotateDeveloper(developerId);
      return { developerId, ...r, versionsToReencrypt: await keyStore.countCiphertextsToReencrypt(db, developerId) };
    },

    async shredDeveloper(p, rawDeveloperId, confirm) {
      requireScope(p, "secrets:operator");
      if (rawDeveloperId === "") throw invalid("INVALID_ARGUMENT", "developer_id", "developer_id is required");
      const developerId = authorizeDeveloper(p, rawDeveloperId, "secrets:operator");
      if (confirm !== developerId) {
        throw invalid("INVALID_ARGUMENT", "confirm_developer_id", "confirm_developer_id must repeat developer_id");
      }
      // No cache fence is needed: once every replica has dropped the unwrapped keys,
      // an entry left in (or filled into) the cache holds a ciphertext nobody can open.
      const deleted = await retryConflicts(() => db.transaction((tx) => keyStore.shredDeveloperRows(tx, developerId)));
      // Evict first, whatever happens to the cache afterwards: this replica's keys and
      // the eviction every replica applies, so no replica keeps a shredded key.
      const evictionId = await publishEviction(developerId);
      let cacheEntriesDeleted = 0;
      let cacheCleanupFailed = false;
      try {
        cacheEntriesDeleted = await cache.evictDeveloper(developerId);
      } catch (e) {
        cacheCleanupFailed = true;
        report("shred: cache clean-up (entries left expire on their own)", e);
      }
      const replicasEvicted = await awaitAcknowledgements(evictionId);
      const result = { developerId, ...shredCounts(deleted), replicasEvicted, cacheEntriesDeleted, cacheCleanupFailed };
      deps.onEvent?.("developer shredded", result);
      if (deleted.secrets + deleted.versions + deleted.dataKeys === 0) {
        throw new AppError("DEVELOPER_NOT_FOUND", "nothing is stored for this developer", { developer_id: developerId });
      }
      return result;
    },

    async getKeyStatus(p, rawDeveloperId) {
      const operator = p.scopes.has("secrets:operator");
      const developerId = authorizeDeveloper(p, rawDeveloperId, "secrets:keys");
      const own = !operator || rawDeveloperId !== "";
      const perKek = operator ? await keyStore.dataKeysPerMasterKey(db) : new Map<string, number>();
      // From the database, so every replica answers alike from the moment a rotation is recorded.
      const active = operator ? await keyStore.activeMasterKey(db) : "";
      return {
        activeMasterKeyId: active,
        dataKeysPerMasterKey: perKek,
        dataKeysToRewrap: operator ? await keyStore.countDataKeysToRewrap(db, active) : 0,
        versionsToReencrypt: await keyStore.countCiphertextsToReencrypt(db, operator && rawDeveloperId === "" ? undefined : developerId),
        replicas: operator ? await replicaStore.liveReplicas(db) : [],
        dataKeys: own ? await keyStore.dataKeyInfos(db, developerId) : [],
      };
    },

    async pendingJobs() {
      return {
        rewrap: await keyStore.countDataKeysToRewrap(db, await keyStore.activeMasterKey(db)),
        reencrypt: await keyStore.countCiphertextsToReencrypt(db),
      };
    },

    rotateInBackground(developerId) {
      if (rotating.has(developerId)) return;
      rotating.add(developerId);
      rotateDeveloper(developerId)
        .catch((e: unknown) => report("automatic data key rotation", e))
        .finally(() => rotating.delete(developerId));
    },

    async start() {
      await heartbeatOnce();
      // This replica holds no unwrapped key yet: the evictions published so far are moot for it.
      await replicaStore.acknowledgeAllEvictions(db, replicaId);
      running = true;
      every(deps.heartbeatMs ?? 5_000, heartbeatOnce, "heartbeat");
      every(deps.evictionPollMs ?? 500, applyEvictions, "key evictions");
      every(deps.backgroundMs ?? 5_000, async () => kick(), "key jobs");
    },

    async stop() {
      running = false;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      await backgroundBusy;
      await replicaStore.removeReplica(db, replicaId).catch((e: unknown) => report("deregister replica", e));
    },

    runBackgroundPass: backgroundPass,
  };
  // A developer's key past its encryption limit is rotated without a caller.
  dataKeys.onRotationDue((developerId) => lifecycle.rotateInBackground(developerId));
  return lifecycle;
}

function shredCounts(c: keyStore.ShredCounts): { secretsDeleted: number; versionsDeleted: number; dataKeysDeleted: number } {
  return { secretsDeleted: c.secrets, versionsDeleted: c.versions, dataKeysDeleted: c.dataKeys };
}
