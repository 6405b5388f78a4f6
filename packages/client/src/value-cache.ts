import { LRUCache } from "lru-cache";
import { status } from "@grpc/grpc-js";
import { clientFailure, isTransient } from "./errors.js";
import type { AccessedSecret } from "./types.js";

/**
 * The opt-in client cache for agent runtimes, which look up the same few secrets
 * many times a second. It holds current values only (AccessSecret version 0 and
 * ResolveSecrets), in this process's memory.
 *
 * - TTL: an entry answers for `ttlMs` after it was fetched. Staleness is bounded by
 *   the TTL: a change made by another client (or another process) may stay
 *   invisible here for up to `ttlMs`. A write through the same client (update,
 *   delete, …) drops that name at once.
 * - Single-flight: concurrent lookups of a name that is not cached share one call
 *   (a lookup that joins another's call waits for it, under that call's deadline).
 * - Stale-if-error: when a refresh fails UNAVAILABLE or DEADLINE_EXCEEDED, an entry
 *   that expired at most `staleIfErrorMs` ago answers instead; any other failure
 *   (NOT_FOUND after a delete, PERMISSION_DENIED, …) is thrown, never papered over.
 * - Bounded: at most `maxEntries` entries (a name for one caller), least recently used evicted first.
 * - Partitioned by caller: every lookup names a scope (the client uses a digest of
 *   the token the lookup is made with), and only lookups of the same scope share an
 *   entry or a load, so a client whose token source returns several developers'
 *   tokens never answers one with another's value.
 *
 * Invariant: a load that was in flight when its name was invalidated never stores
 * its result, so a lookup that starts after a write has returned never sees the
 * value from before it.
 */

/** How the TTL cache behaves. */
export interface CacheOptions {
  /** How long a fetched value answers lookups (> 0). */
  ttlMs: number;
  /** How long after expiry a value may still answer when the service is unreachable (default 0: never). */
  staleIfErrorMs?: number;
  /** The most entries kept (default 1,000). */
  maxEntries?: number;
}

/** Who a lookup is made for: the token it is made with, and the cache partition that token selects. */
export interface Caller {
  readonly token: string;
  /** A digest of the token (token.ts); entries and loads are shared only within one scope. */
  readonly scope: string;
}

/** The cache as SecretsClient uses it (this TTL cache, or the watched one of watched-cache.ts). */
export interface ValueCache {
  /**
   * The answer for the current version held for `caller`, if it may answer now (a
   * use, for eviction order); never loads. Settled, and the same promise for every hit
   * on one entry: a hit allocates nothing.
   */
  peek(caller: Caller, name: string): Promise<AccessedSecret> | undefined;
  /** `access(name)` of the current version for `caller`, through the cache. */
  access(caller: Caller, name: string, load: () => Promise<AccessedSecret>): Promise<AccessedSecret>;
  /** `resolve(names)` for `caller`: one load for all the names neither cached nor in flight. */
  resolve(caller: Caller, names: readonly string[], load: (names: string[]) => Promise<Record<string, string>>): Promise<Record<string, string>>;
  /** Forget a name in every scope (after a write to it through this client). */
  invalidate(name: string): void;
  /** Forget everything. */
  clear(): void;
}

interface Entry {
  readonly value: string;
  /** Unknown when the value came from ResolveSecrets, which does not say. */
  readonly version: number | undefined;
  readonly expiresAt: number;
  /** The answer of `access` from this entry, made at its first hit and shared by every later one. */
  answer?: Promise<AccessedSecret>;
}

interface Flight {
  readonly promise: Promise<Entry>;
  /** Whether the entry will know its version (an AccessSecret load). */
  readonly withVersion: boolean;
  /** Set by invalidate: the result must not be stored. */
  invalidated: boolean;
}

/** What `access` answers through the cache: frozen, because every hit on the entry shares it. */
const accessed = (name: string, version: number, value: string): AccessedSecret => Object.freeze({ name, version, value });

/** An entry's key: the scope, then the name (neither holds a space). */
const keyOf = (scope: string, name: string) => `${scope} ${name}`;
const nameOfKey = (key: string) => key.slice(key.indexOf(" ") + 1);

/** Passed to every get(): lru-cache's default options argument is a new object per call. */
const GET_OPTIONS = Object.freeze({});

/** A cache with `options`; `now` is injectable for tests. */
export function createValueCache(options: CacheOptions, now: () => number = Date.now): ValueCache {
  const ttlMs = options.ttlMs;
  const staleMs = options.staleIfErrorMs ?? 0;
  const maxEntries = options.maxEntries ?? 1_000;
  if (!(ttlMs > 0)) throw new RangeError("cache.ttlMs must be positive");
  if (!(staleMs >= 0)) throw new RangeError("cache.staleIfErrorMs must not be negative");
  if (!Number.isInteger(maxEntries) || maxEntries < 1) throw new RangeError("cache.maxEntries must be a positive integer");

  // No lru-cache ttl: an entry has two deadlines (fresh until expiresAt, usable on a
  // transient failure until expiresAt + staleMs), checked here.
  const entries = new LRUCache<string, Entry>({ max: maxEntries });
  const flights = new Map<string, Flight>();

  /** The entry if still fresh; a use for LRU order. */
  function fresh(key: string): Entry | undefined {
    const entry = entries.get(key, GET_OPTIONS);
    return entry && now() < entry.expiresAt ? entry : undefined;
  }

  /** The entry if within its stale-if-error window; not a use. */
  function stale(key: string): Entry | undefined {
    const entry = entries.peek(key);
    return entry && now() <= entry.expiresAt + staleMs ? entry : undefined;
  }

  function fly(key: string, promise: Promise<Entry>, withVersion: boolean): Flight {
    const flight: Flight = { promise, withVersion, invalidated: false };
    flights.set(key, flight);
    promise.then(
      (entry) => {
        if (!flight.invalidated) entries.set(key, entry);
      },
      () => undefined, // the caller that started the load sees the failure
    ).finally(() => {
      if (flights.get(key) === flight) flights.delete(key);
    });
    return flight;
  }

  async function settle(key: string, flight: Flight, needVersion: boolean): Promise<Entry> {
    try {
      return await flight.promise;
    } catch (e) {
      const old = isTransient(e) ? stale(key) : undefined;
      if (old && (!needVersion || old.version !== undefined)) return old;
      throw e;
    }
  }

  const entryOf = (value: string, version: number | undefined): Entry => ({ value, version, expiresAt: now() + ttlMs });

  return {
    peek({ scope }, name) {
      const hit = fresh(keyOf(scope, name));
      if (hit?.version === undefined) return undefined;
      return (hit.answer ??= Promise.resolve(accessed(name, hit.version, hit.value)));
    },

    async access({ scope }, name, load) {
      const key = keyOf(scope, name);
      const hit = fresh(key);
      if (hit?.version !== undefined) return (hit.answer ??= Promise.resolve(accessed(name, hit.version, hit.value)));
      let flight = flights.get(key);
      if (!flight?.withVersion) {
        flight = fly(key, load().then((r) => entryOf(r.value, r.version)), true);
      }
      const entry = await settle(key, flight, true);
      return accessed(name, entry.version as number, entry.value);
    },

    async resolve({ scope }, names, load) {
      const plan = new Map<string, Entry | Flight>();
      const missing: string[] = [];
      for (const name of names) {
        if (plan.has(name) || missing.includes(name)) continue;
        const key = keyOf(scope, name);
        const known = fresh(key) ?? flights.get(key);
        if (known) plan.set(name, known);
        else missing.push(name);
      }
      if (missing.length > 0) {
        const batch = load(missing);
        for (const name of missing) {
          const promise = batch.then((values) => {
            const value = values[name];
            // The service answers every name or fails the call; a gap is a broken server.
            if (value === undefined) throw clientFailure(status.INTERNAL, "CLIENT_INTERNAL", "ResolveSecrets answered without a requested name");
            return entryOf(value, undefined);
          });
          plan.set(name, fly(keyOf(scope, name), promise, false));
        }
      }
      const out: Record<string, string> = {};
      await Promise.all(
        [...plan].map(async ([name, known]) => {
          out[name] = ("promise" in known ? await settle(keyOf(scope, name), known, false) : known).value;
        }),
      );
      return out;
    },

    invalidate(name) {
      for (const key of [...entries.keys()]) if (nameOfKey(key) === name) entries.delete(key);
      for (const [key, flight] of flights) {
        if (nameOfKey(key) !== name) continue;
        flight.invalidated = true;
        flights.delete(key);
      }
    },

    clear() {
      entries.clear();
      for (const flight of flights.values()) flight.invalidated = true;
      flights.clear();
    },
  };
}
