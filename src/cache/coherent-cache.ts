import {
  decodeEntry,
  developerPrefix,
  encodeEntry,
  fenceUnavailable,
  FENCE_TTL_MS,
  GENERATION_TTL_MS,
  jitteredTtl,
  MAX_FILL_READ_AGE_MS,
  nameKeys,
  type CacheKind,
  type LookupResult,
  type NameKeys,
  type SecretCache,
} from "./secret-cache.js";

/**
 * The primitives of the coherence scheme, each atomic, over one developer's keys
 * (one hash slot). Redis implements them with MGET and Lua scripts; the in-process
 * cache with plain maps in one event loop.
 */
export interface CacheStore {
  /** Entry, generation and fence of each name, in one round trip. */
  read(keys: readonly NameKeys[]): Promise<{ entry: Buffer | null; generation: string | null; fenced: boolean }[]>;
  /** Sets each entry iff its generation still equals `expected` ("" = absent) and no fence stands. */
  fill(items: readonly { keys: NameKeys; expected: string; value: Buffer; ttlMs: number }[]): Promise<void>;
  /** INCR generation, INCR fence (with expiry), DEL entry — for each name, atomically. */
  fence(keys: readonly NameKeys[], fenceTtlMs: number, generationTtlMs: number): Promise<void>;
  /** INCR generation, DEL entry, DECR fence (deleted at zero) — for each name, atomically. */
  release(keys: readonly NameKeys[], generationTtlMs: number): Promise<void>;
  /** Deletes every key under a developer's prefix; returns how many went. */
  deletePrefix(prefix: string): Promise<number>;
  close(): Promise<void>;
}

export interface CoherentCacheOptions {
  kind: Exclude<CacheKind, "none">;
  ttlMs: number;
  /** Called on the first failure of an outage and on recovery; logs once per outage. */
  onOutage?: (event: "down" | "up", error?: unknown) => void;
  /** Counts lookups per name by result. */
  onLookup?: (result: "hit" | "miss" | "error", count: number) => void;
  now?: () => number;
}

export function createCoherentCache(store: CacheStore, options: CoherentCacheOptions): SecretCache {
  const now = options.now ?? Date.now;
  let down = false;
  const failed = (e: unknown) => {
    if (!down) {
      down = true;
      options.onOutage?.("down", e);
    }
  };
  const succeeded = () => {
    if (down) {
      down = false;
      options.onOutage?.("up");
    }
  };
  const keysOf = (developerId: string, names: readonly string[]) => {
    const prefix = developerPrefix(developerId);
    return names.map((n) => nameKeys(prefix, n));
  };

  return {
    kind: options.kind,

    async lookup(developerId, names) {
      const lookedUpAt = now();
      try {
        const rows = await store.read(keysOf(developerId, names));
        succeeded();
        const hits = rows.filter((r) => r.entry !== null).length;
        options.onLookup?.("hit", hits);
        options.onLookup?.("miss", names.length - hits);
        return names.map((name, i): LookupResult => {
          const row = rows[i];
          const fillable = row !== undefined && !row.fenced;
          return {
            hit: row?.entry ? decodeEntry(row.entry) : undefined,
            ticket: { developerId, name, generation: fillable ? (row.generation ?? "") : null, lookedUpAt },
          };
        });
      } catch (e) {
        failed(e);
        options.onLookup?.("error", names.length);
        return names.map((name) => ({ hit: undefined, ticket: { developerId, name, generation: null, lookedUpAt } }));
      }
    },

    async fill(items) {
      const fresh = items.filter((i) => i.ticket.generation !== null && now() - i.ticket.lookedUpAt < MAX_FILL_READ_AGE_MS);
      if (fresh.length === 0) return;
      // All items of one call belong to one developer (one lookup); group anyway for safety.
      const byDeveloper = new Map<string, typeof fresh>();
      for (const item of fresh) {
        const list = byDeveloper.get(item.ticket.developerId) ?? [];
        list.push(item);
        byDeveloper.set(item.ticket.developerId, list);
      }
      try {
        for (const [developerId, list] of byDeveloper) {
          const prefix = developerPrefix(developerId);
          await store.fill(
            list.map((i) => ({
              keys: nameKeys(prefix, i.ticket.name),
              expected: i.ticket.generation as string,
              value: encodeEntry(i.value),
              ttlMs: jitteredTtl(options.ttlMs),
            })),
          );
        }
        succeeded();
      } catch (e) {
        failed(e);
      }
    },

    async beginWrite(developerId, names) {
      try {
        await store.fence(keysOf(developerId, names), FENCE_TTL_MS, GENERATION_TTL_MS);
        succeeded();
      } catch (e) {
        failed(e);
        throw fenceUnavailable(e);
      }
    },

    async endWrite(developerId, names) {
      try {
        await store.release(keysOf(developerId, names), GENERATION_TTL_MS);
        succeeded();
      } catch (e) {
        failed(e);
      }
    },

    async evictDeveloper(developerId) {
      // Entries only: generations and fences stay, so no lookup in flight can fill afterwards.
      return store.deletePrefix(`${developerPrefix(developerId)}v:`);
    },

    close: () => store.close(),
  };
}
