import type { SecretCache } from "../cache/secret-cache.js";
import { AppError } from "../api/errors.js";
import type { Db } from "../store/db.js";
import { shredDeveloperRows } from "../store/shred-store.js";
import { retryConflicts } from "../store/conflicts.js";

/**
 * Crypto-shredding (docs/design.md, Key lifecycle): a developer's secrets, data keys
 * and cache entries are deleted, and every live replica drops the developer's
 * unwrapped keys before the call returns.
 */

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

export interface DeveloperShredDeps {
  db: Db;
  cache: SecretCache;
  /** Publishes an eviction of a developer's unwrapped keys to every replica; returns its id (replica-coordination.ts). */
  publishEviction(developerId: string): Promise<number>;
  /** Waits until every live replica acknowledged an eviction; returns how many did. */
  awaitAcknowledgements(evictionId: number): Promise<number>;
  report(what: string, e: unknown): void;
  onEvent?: (what: string, fields: Record<string, unknown>) => void;
}

/** Shreds one developer (already authorized); DEVELOPER_NOT_FOUND when nothing was stored, after the clean-up. */
export function createDeveloperShred(deps: DeveloperShredDeps): (developerId: string) => Promise<ShredResult> {
  const { db, cache } = deps;
  return async (developerId) => {
    // No cache fence is needed: once every replica has dropped the unwrapped keys,
    // an entry left in (or filled into) the cache holds a ciphertext nobody can open.
    const deleted = await retryConflicts(() => db.transaction((tx) => shredDeveloperRows(tx, developerId)));
    // Evict first, whatever happens to the cache afterwards: this replica's keys and
    // the eviction every replica applies, so no replica keeps a shredded key.
    const evictionId = await deps.publishEviction(developerId);
    let cacheEntriesDeleted = 0;
    let cacheCleanupFailed = false;
    try {
      cacheEntriesDeleted = await cache.evictDeveloper(developerId);
    } catch (e) {
      cacheCleanupFailed = true;
      deps.report("shred: cache clean-up (entries left expire on their own)", e);
    }
    const replicasEvicted = await deps.awaitAcknowledgements(evictionId);
    const result = {
      developerId,
      secretsDeleted: deleted.secrets,
      versionsDeleted: deleted.versions,
      dataKeysDeleted: deleted.dataKeys,
      replicasEvicted,
      cacheEntriesDeleted,
      cacheCleanupFailed,
    };
    deps.onEvent?.("developer shredded", result);
    if (deleted.secrets + deleted.versions + deleted.dataKeys === 0) {
      throw new AppError("DEVELOPER_NOT_FOUND", "nothing is stored for this developer", { developer_id: developerId });
    }
    return result;
  };
}
