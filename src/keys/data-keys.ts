import { LRUCache } from "lru-cache";
import type { DekCache } from "./dek-cache.js";
import type { KeyProvider } from "../crypto/key-provider.js";
import { KeyBytes } from "../crypto/key-bytes.js";
import { AppError, integrityFailure } from "../api/errors.js";
import type { Db, Queryable } from "../store/db.js";
import * as keyStore from "../store/key-store.js";
import { activeMasterKey } from "../store/master-key-store.js";
import { writeConflict } from "../store/conflicts.js";

/**
 * A data key ready to use: its version (unique for all time), the unwrapped bytes
 * (memory only) and the wrapped key of the row they came from, which a write
 * compares with the row it locks.
 */
export interface DataKey {
  readonly version: number;
  readonly key: KeyBytes;
  readonly wrappedKey: Buffer;
}

/**
 * Per-developer data keys (DEKs): created on first write, unwrapped on demand under
 * the master key their row names, and kept unwrapped only in the in-memory cache.
 */
export interface DataKeys {
  /**
   * Runs `fn` in a transaction with the developer's active DEK, whose row is read
   * FOR SHARE inside that transaction (so it cannot be retired under the write).
   * Creates the developer's first DEK if there is none.
   */
  withWriteKey<T>(developerId: string, fn: (tx: Queryable, dek: DataKey) => Promise<T>, options?: WriteKeyOptions): Promise<T>;
  /**
   * The unwrapped DEK `version` of a developer: from memory, else by unwrapping
   * `wrapped` when the caller already read the row, else read from Postgres.
   */
  forRead(developerId: string, version: number, wrapped?: { kekId: string; wrappedKey: Buffer }): Promise<KeyBytes>;
  /** The unwrapped DEK if it is in memory, at once (the cache-hit path); undefined means: use forRead. */
  inMemory(developerId: string, version: number): KeyBytes | undefined;
  /**
   * The developer's active DEK, created if there is none: for a key the service
   * itself owns under a developer id no token can name (cache-entry-key.ts).
   */
  currentKey(developerId: string): Promise<DataKey>;
  /** Forgets a developer's unwrapped keys (shredding, retirement). */
  evict(developerId: string): void;
  /**
   * Wraps a new data key for `developerId` under the recorded active master key; the
   * version comes from the sequence that never hands one out twice.
   */
  wrapNew(q: Queryable, developerId: string, fresh: KeyBytes): Promise<{ version: number; kekId: string; wrappedKey: Buffer }>;
  /** Registers who is told when a developer's active DEK passes DEK_ROTATE_AT encryptions (the key lifecycle). */
  onRotationDue(listener: (developerId: string) => void): void;
}

export interface WriteKeyOptions {
  /** How many values `fn` will seal, counted against the DEK's limit (default 1). */
  encryptions?: number;
  /**
   * Awaited before the developer's first DEK is created; throwing refuses the write
   * and creates nothing (an update checks there is something to update).
   */
  beforeFirstKey?: () => Promise<void>;
}

export interface DataKeysDeps {
  db: Db;
  keyProvider: KeyProvider;
  cache: DekCache;
  /** Encryptions reserved per counter update. */
  reservationBlock?: number;
  /** Developers whose reservations and active key are remembered (default 100,000). */
  maxDevelopersRemembered?: number;
}

/** Thrown inside a write transaction when the active DEK changed since it was read (rotated, rewrapped, shredded). */
class StaleDataKey extends Error {}

/**
 * A data key that no longer exists or was retired (its wrapped key erased). On the
 * cache-hit path this means "entry too old": the reader falls back to the database.
 */
export class DataKeyUnavailable extends Error {
  override readonly name = "DataKeyUnavailable";
}

/**
 * AES-GCM with random 96-bit nonces stays within its bounds well below 2^32
 * encryptions per key; a key is rotated before 2^30 (docs/design.md). Rotation starts at the soft
 * limit; past the hard limit a write fails rather than encrypt once more.
 */
export const DEK_ROTATE_AT = 2 ** 30 - 2 ** 24;
export const DEK_HARD_LIMIT = 2 ** 30;

/** Reads of the active key a write makes before it gives up (WRITE_CONFLICT). */
const MAX_ATTEMPTS = 4;
/** What a replica remembers of one developer's keys between writes. Forgetting it is always safe. */
interface Remembered {
  /**
   * The DEK row last read as active: a write whose key is still in memory starts
   * without reading it again. Only a guess: the write's transaction reads the active
   * row FOR SHARE and retries on a mismatch, as it does for a key rotated after an
   * ordinary read.
   */
  active?: keyStore.DataKeyRow;
  /** Encryptions still reserved, by DEK version; only ever under-used (forgetting them over-counts). */
  readonly reserved: Map<number, number>;
}

export function createDataKeys(deps: DataKeysDeps): DataKeys {
  const { db, keyProvider, cache } = deps;
  const block = deps.reservationBlock ?? 256;
  let rotationDue: ((developerId: string) => void) | undefined;
  // Past the bound, the least recently used developer is forgotten.
  const remembered = new LRUCache<string, Remembered>({ max: deps.maxDevelopersRemembered ?? 100_000 });
  const rememberedOf = (developerId: string): Remembered => {
    let r = remembered.get(developerId);
    if (r === undefined) remembered.set(developerId, (r = { reserved: new Map() }));
    return r;
  };

  /** The row's key: from memory if it was unwrapped from this very row's wrapped key, else unwrapped now. */
  async function unwrap(row: keyStore.DataKeyRow): Promise<KeyBytes> {
    if (row.state === "retired" || row.wrappedKey === null) {
      throw new DataKeyUnavailable(`data key version ${row.version} is retired`);
    }
    const wrappedKey = row.wrappedKey;
    const cached = cache.get(row.developerId, row.version, wrappedKey);
    if (cached) return cached;
    if (!keyProvider.has(row.kekId)) {
      throw new AppError("KEY_STATE", "a master key this data needs is not configured", {}, {
        cause: new Error(`master key ${row.kekId} missing from the keyring`),
      });
    }
    const key = await keyProvider.unwrap(row.kekId, wrappedKey, { developerId: row.developerId, dekVersion: row.version });
    cache.set(row.developerId, row.version, key, wrappedKey);
    return key;
  }

  async function wrapNew(q: Queryable, developerId: string, fresh: KeyBytes) {
    const kekId = await activeMasterKey(q);
    const version = await keyStore.nextDataKeyVersion(q);
    return { version, kekId, wrappedKey: await keyProvider.wrap(kekId, fresh, { developerId, dekVersion: version }) };
  }

  async function activeKey(developerId: string, beforeFirstKey: (() => Promise<void>) | undefined): Promise<DataKey> {
    let row = await keyStore.findActiveDataKey(db, developerId);
    if (!row) {
      await beforeFirstKey?.();
      const fresh = KeyBytes.random(32);
      try {
        const wrapped = await wrapNew(db, developerId, fresh);
        await keyStore.insertFirstDataKey(db, developerId, wrapped.version, wrapped.kekId, wrapped.wrappedKey);
      } finally {
        fresh.zeroize();
      }
      // Another replica may have won the insert: whatever is stored is the key.
      row = await keyStore.findActiveDataKey(db, developerId);
      if (!row) throw new StaleDataKey();
    }
    const key = await unwrap(row);
    rememberedOf(developerId).active = row;
    return { version: row.version, key, wrappedKey: row.wrappedKey as Buffer };
  }

  /** The DEK last read as active, when its bytes are still in memory: no query. */
  function rememberedActive(developerId: string): DataKey | undefined {
    const row = remembered.get(developerId)?.active;
    if (row === undefined || row.wrappedKey === null) return undefined;
    const key = cache.get(developerId, row.version, row.wrappedKey);
    return key === undefined ? undefined : { version: row.version, key, wrappedKey: row.wrappedKey };
  }

  async function reserve(developerId: string, version: number, count: number): Promise<boolean> {
    const mine = rememberedOf(developerId).reserved;
    const left = mine.get(version) ?? 0;
    if (left >= count) {
      mine.set(version, left - count);
      return true;
    }
    const size = Math.max(block, count);
    const total = await keyStore.reserveEncryptions(db, developerId, version, size);
    if (total === undefined) return false;
    if (total >= DEK_ROTATE_AT) rotationDue?.(developerId);
    if (total > DEK_HARD_LIMIT) {
      throw new AppError("KEY_STATE", "the data key reached its encryption limit; retry after its rotation", {});
    }
    mine.set(version, size - count);
    return true;
  }

  return {
    onRotationDue(listener) {
      rotationDue = listener;
    },

    async withWriteKey(developerId, fn, options = {}) {
      const encryptions = options.encryptions ?? 1;
      // A remembered key is tried first, and does not count as an attempt: only reads do.
      let remembered = rememberedActive(developerId);
      for (let attempt = remembered ? 0 : 1; ; attempt++) {
        try {
          const dek = remembered ?? (await activeKey(developerId, options.beforeFirstKey));
          remembered = undefined;
          if (!(await reserve(developerId, dek.version, encryptions))) throw new StaleDataKey();
          return await db.transaction(async (tx) => {
            // The key sealed with must be the very row locked: same version (never
            // reused) and the wrapped key it was unwrapped from.
            const locked = await keyStore.findActiveDataKey(tx, developerId, { forShare: true });
            if (locked?.version !== dek.version || locked.wrappedKey === null || !locked.wrappedKey.equals(dek.wrappedKey)) {
              throw new StaleDataKey();
            }
            return fn(tx, dek);
          });
        } catch (e) {
          if (!(e instanceof StaleDataKey)) throw e;
          if (attempt >= MAX_ATTEMPTS) throw writeConflict();
        }
      }
    },

    currentKey: (developerId) => activeKey(developerId, undefined),

    inMemory(developerId, version) {
      return cache.get(developerId, version);
    },

    async forRead(developerId, version, wrapped) {
      const cached = cache.get(developerId, version, wrapped?.wrappedKey);
      if (cached) return cached;
      const row = wrapped
        ? { developerId, version, kekId: wrapped.kekId, wrappedKey: wrapped.wrappedKey, state: "active" as const }
        : await keyStore.findDataKey(db, developerId, version);
      if (!row) throw new DataKeyUnavailable(`data key version ${version} does not exist`);
      try {
        return await unwrap(row);
      } catch (e) {
        if (e instanceof AppError || e instanceof DataKeyUnavailable) throw e;
        throw integrityFailure("data key", e);
      }
    },

    evict(developerId) {
      cache.evictDeveloper(developerId);
      remembered.delete(developerId);
    },

    wrapNew,
  };
}
