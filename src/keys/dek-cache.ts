/**
 * Unwrapped data keys, kept in this process's memory only (never logged, never sent to Redis or
 * anywhere else), so that a hot path does not unwrap a DEK per request.
 *
 * Invariants:
 * - at most `maxEntries` keys; the least recently used goes first;
 * - a key is dropped once more than `ttlMs` passed since it was set, however often it is read:
 *   the TTL is what bounds a replica that missed a shred or retirement eviction, so reads must
 *   not extend it;
 * - eviction (LRU, TTL, evictDeveloper, replacement) does not zeroize, because a caller may still
 *   hold the key for an operation in flight; `clear()` zeroizes every key it holds.
 */
import { Buffer } from "node:buffer";
import { LRUCache } from "lru-cache";
import type { KeyBytes } from "../crypto/key-bytes.js";

/**
 * The in-memory DEK cache, keyed by (developer id, DEK version). A version is never
 * reused (store/key-store.ts), and each key is kept with the wrapped key of the row
 * it was unwrapped from, so a caller holding that row can check it is the same key.
 */
export interface DekCache {
  /**
   * The cached key, or undefined when absent or expired, or when `wrappedKey` is given
   * and differs from the one the cached key came from (the row was rewrapped or is not
   * that key's row: unwrap it again). Counts as a use for LRU order.
   */
  get(developerId: string, version: number, wrappedKey?: Uint8Array): KeyBytes | undefined;
  /** Caches `key`, unwrapped from `wrappedKey`; the cache holds the key by reference (and zeroizes it on `clear()`). */
  set(developerId: string, version: number, key: KeyBytes, wrappedKey: Uint8Array): void;
  /** Drops every key of one developer (shred, DEK retirement, eviction from another replica). */
  evictDeveloper(developerId: string): void;
  /** Drops and zeroizes every key (shutdown). */
  clear(): void;
  /** Entries held, counting any expired one not yet dropped. */
  readonly size: number;
}

const DEFAULT_MAX_ENTRIES = 10_000;
const DEFAULT_TTL_MS = 5 * 60 * 1000;
/** Passed to every get(): lru-cache's default options argument is a new object per call. */
const GET_OPTIONS = Object.freeze({});

interface Entry {
  developerId: string;
  key: KeyBytes;
  wrappedKey: Buffer;
}

/**
 * Creates a bounded LRU cache with a TTL (defaults: 10,000 entries, 5 minutes) on lru-cache.
 * Time is the monotonic clock, so a step of the wall clock cannot extend a key's life. `now`
 * is injectable so tests can move the clock; it must never read 0 (lru-cache takes an entry
 * set at time 0 for one without a TTL).
 */
export function createDekCache(options: { maxEntries?: number; ttlMs?: number; now?: () => number } = {}): DekCache {
  const maxEntries = options.maxEntries ?? DEFAULT_MAX_ENTRIES;
  const ttlMs = options.ttlMs ?? DEFAULT_TTL_MS;
  if (!Number.isInteger(maxEntries) || maxEntries < 1) {
    throw new Error("DEK cache maxEntries must be a positive integer");
  }
  if (!Number.isInteger(ttlMs) || ttlMs < 1) {
    // lru-cache takes whole milliseconds only.
    throw new Error("DEK cache ttlMs must be a positive integer");
  }

  /** The slots held for each developer, so that evictDeveloper touches only theirs. */
  const slotsOf = new Map<string, Set<string>>();
  const forget = (developerId: string, k: string): void => {
    const slots = slotsOf.get(developerId);
    if (slots?.delete(k) === true && slots.size === 0) slotsOf.delete(developerId);
  };

  // Reads neither extend the TTL (updateAgeOnGet is off) nor return an expired key (allowStale
  // is off); an expired key is dropped when read. ttlResolution 0 reads the clock on every
  // check instead of caching it behind a timer. `dispose` does not zeroize (eviction must not):
  // it only keeps `slotsOf` in step when an entry leaves; "set" replaces one in place.
  const entries = new LRUCache<string, Entry>({
    max: maxEntries,
    ttl: ttlMs,
    ttlResolution: 0,
    ...(options.now ? { perf: { now: options.now } } : {}),
    dispose: (entry, k, reason) => {
      if (reason !== "set") forget(entry.developerId, k);
    },
  });

  // A number's decimal form has no ':', so the first ':' ends the version: no two pairs alike.
  const slot = (developerId: string, version: number): string => `${version}:${developerId}`;

  return {
    get(developerId, version, wrappedKey) {
      const entry = entries.get(slot(developerId, version), GET_OPTIONS);
      if (entry === undefined) return undefined;
      if (wrappedKey !== undefined && !entry.wrappedKey.equals(wrappedKey)) return undefined;
      return entry.key;
    },

    set(developerId, version, key, wrappedKey) {
      const k = slot(developerId, version);
      entries.set(k, { developerId, key, wrappedKey: Buffer.from(wrappedKey) });
      let slots = slotsOf.get(developerId);
      if (slots === undefined) slotsOf.set(developerId, (slots = new Set()));
      slots.add(k);
    },

    evictDeveloper(developerId) {
      // Expired entries too: delete() drops an entry whether or not it is stale.
      for (const k of slotsOf.get(developerId) ?? []) entries.delete(k);
    },

    clear() {
      // dump() includes expired entries, which are zeroized too.
      for (const [, held] of entries.dump()) held.value.key.zeroize();
      entries.clear();
    },

    get size() {
      return entries.size;
    },
  };
}
