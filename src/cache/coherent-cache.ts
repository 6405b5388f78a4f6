import type { KeyBytes } from "../crypto/key-bytes.js";
import { createEntryCodec } from "./entry-codec.js";
import {
  developerPrefix,
  fenceUnavailable,
  FENCE_TTL_MS,
  GENERATION_TTL_MS,
  jitteredTtl,
  MAX_FILL_READ_AGE_MS,
  nameKeys,
  type CacheKind,
  type CachedLookup,
  type LookupOutcome,
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
  /**
   * The 32-byte key entries are authenticated under (entry-codec.ts). Only a key
   * derived from it is kept, and nothing of it goes to the store; the caller may
   * zeroize it once this returns. Replicas that share a store must share it to
   * serve each other's fills; with different keys each refuses the other's entries.
   */
  entryKey: KeyBytes;
  /** Called on the first failure of an outage and on recovery; logs once per outage. */
  onOutage?: (event: "down" | "up", error?: unknown) => void;
  /** Counts lookups per name by result; "rejected" and "expired" only when there are some. */
  onLookup?: (result: LookupOutcome, count: number) => void;
  now?: () => number;
}

export function createCoherentCache(store: CacheStore, options: CoherentCacheOptions): SecretCache {
  const now = options.now ?? Date.now;
  const codec = createEntryCodec(options.entryKey);
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
        // Expiry is judged by this replica's clock once the entries are in hand.
        const readAt = now();
        let hits = 0;
        let rejected = 0;
        let expired = 0;
        const results: LookupResult[] = [];
        for (let i = 0; i < names.length; i++) {
          const name = names[i] as string;
          const row = rows[i];
          const generation = row?.generation ?? "";
          let hit: CachedLookup | undefined;
          if (row?.entry) {
            const opened = codec.open(developerId, name, generation, row.entry, readAt);
            if (opened === "invalid") rejected++;
            else if (opened === "expired") expired++;
            else {
              hit = opened;
              hits++;
            }
          }
          // A refused entry leaves the name fillable, as an absent one does: the fill overwrites it.
          const fillable = row !== undefined && !row.fenced;
          results.push({ hit, ticket: { developerId, name, generation: fillable ? generation : null, lookedUpAt } });
        }
        options.onLookup?.("hit", hits);
        options.onLookup?.("miss", names.length - hits - rejected - expired);
        if (rejected > 0) options.onLookup?.("rejected", rejected);
        if (expired > 0) options.onLookup?.("expired", expired);
        return results;
      } catch (e) {
        failed(e);
        options.onLookup?.("error", names.length);
        return names.map((name) => ({ hit: undefined, ticket: { developerId, name, generation: null, lookedUpAt } }));
      }
    },

    async fill(items) {
      const filledAt = now();
      const fresh = items.filter((i) => i.ticket.generation !== null && filledAt - i.ticket.lookedUpAt < MAX_FILL_READ_AGE_MS);
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
          const entries = [];
          for (const { ticket, value } of list) {
            // Counted from the lookup, not the fill: the Postgres read began after the
            // lookup, so at its expiry the entry's value was current at most one TTL before.
            const expiresAt = ticket.lookedUpAt + jitteredTtl(options.ttlMs);
            const ttlMs = expiresAt - filledAt;
            if (ttlMs <= 0) continue;
            const generation = ticket.generation as string;
            entries.push({
              keys: nameKeys(prefix, ticket.name),
              expected: generation,
              value: codec.seal(developerId, ticket.name, generation, expiresAt, value),
              ttlMs,
            });
          }
          if (entries.length > 0) await store.fill(entries);
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
