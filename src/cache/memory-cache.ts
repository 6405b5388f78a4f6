import { LRUCache } from "lru-cache";
import type { KeyBytes } from "../crypto/key-bytes.js";
import { createCoherentCache, type CacheStore } from "./coherent-cache.js";
import type { LookupOutcome, SecretCache } from "./secret-cache.js";

/** Passed to every get(): lru-cache's default options argument is a new object per call. */
const GET_OPTIONS = Object.freeze({});

/**
 * The in-process cache, used only with the embedded database: one process (the
 * data directory's lock file guarantees it), so one map is coherent by itself. It
 * runs the same generation-and-fence scheme as Redis, because a lookup in flight
 * during a write can still race it inside one process. Each primitive runs without
 * an await, so it is atomic in the event loop.
 */
export function createMemoryStore(options: { maxEntries?: number; now?: () => number } = {}): CacheStore {
  const now = options.now ?? Date.now;
  /**
   * Sealed entries, least recently used out first, each dropped once older than the
   * ttl of its fill (ttlResolution 0: the clock is read on every check). Expiry here
   * only frees memory: the entry's own sealed expiry is what the codec enforces.
   */
  const entries = new LRUCache<string, Buffer>({ max: options.maxEntries ?? 100_000, perf: { now }, ttlResolution: 0 });
  /** Generations and fences: coherence state, not a cache, so never evicted before its expiry. */
  const counters = new Map<string, { n: number; expiresAt: number }>();

  const counter = (key: string): number => {
    const c = counters.get(key);
    if (!c) return 0;
    if (c.expiresAt <= now()) {
      counters.delete(key);
      return 0;
    }
    return c.n;
  };
  const bump = (key: string, by: number, ttlMs: number): number => {
    const n = counter(key) + by;
    if (n <= 0) counters.delete(key);
    else counters.set(key, { n, expiresAt: now() + ttlMs });
    return n;
  };
  const entry = (key: string): Buffer | null => entries.get(key, GET_OPTIONS) ?? null;

  return {
    async read(keys) {
      return keys.map((k) => {
        const g = counter(k.generation);
        return { entry: entry(k.entry), generation: g === 0 ? null : String(g), fenced: counter(k.fence) > 0 };
      });
    },
    async fill(items) {
      for (const { keys, expected, value, ttlMs } of items) {
        const g = counter(keys.generation);
        if ((g === 0 ? "" : String(g)) !== expected || counter(keys.fence) > 0) continue;
        entries.set(keys.entry, Buffer.from(value), { ttl: ttlMs });
      }
    },
    async fence(keys, fenceTtlMs, generationTtlMs) {
      for (const k of keys) {
        bump(k.generation, 1, generationTtlMs);
        bump(k.fence, 1, fenceTtlMs);
        entries.delete(k.entry);
      }
    },
    async release(keys, generationTtlMs) {
      for (const k of keys) {
        bump(k.generation, 1, generationTtlMs);
        entries.delete(k.entry);
        const c = counters.get(k.fence);
        if (c) bump(k.fence, -1, Math.max(1, c.expiresAt - now()));
      }
    },
    async deletePrefix(prefix) {
      let deleted = 0;
      for (const key of [...entries.keys()]) if (key.startsWith(prefix) && entries.delete(key)) deleted += 1;
      return deleted;
    },
    async close() {
      entries.clear();
      counters.clear();
    },
  };
}

/**
 * The in-process cache. Its entries have the same format and MAC as Redis's (one
 * codec); since no other process reads them, any key will do, even a random one.
 */
export function createMemoryCache(options: {
  ttlMs: number;
  entryKey: KeyBytes;
  maxEntries?: number;
  onLookup?: (result: LookupOutcome, count: number) => void;
}): SecretCache {
  return createCoherentCache(createMemoryStore(options), {
    kind: "memory",
    ttlMs: options.ttlMs,
    entryKey: options.entryKey,
    ...(options.onLookup ? { onLookup: options.onLookup } : {}),
  });
}
