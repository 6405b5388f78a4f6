import { status } from "@grpc/grpc-js";
import { LRUCache } from "lru-cache";
import { asSecretsError } from "./errors.js";
import { backoffMs, sleep, type RetryPolicy } from "./retry.js";
import type { WatchUpdate } from "./types.js";
import { createValueCache, type Caller, type ValueCache } from "./value-cache.js";
import { VALUE_CHANGES } from "./watch.js";

/**
 * `cache: "watched"`: current values held in memory for as long as a WatchSecrets
 * stream says they have not changed, instead of for a TTL.
 *
 * - One stream per token (the partition the TTL cache uses too), opened at the first
 *   lookup made with it and kept open until the client closes, or until more than
 *   MAX_WATCHED_TOKENS tokens are in use (the least recently used one's is closed).
 *   The stream watches every secret the token can see (prefix ""), not the names
 *   looked up: one stream whatever names come and go, no re-opening (and no gap) as
 *   the set grows, no 100-name limit; changes to other names cost a few bytes each.
 * - The stream always starts from a snapshot. Values are cached only from the moment
 *   the snapshot has arrived until the stream ends; a stream that ends (dropped,
 *   refused, silent too long (watch.ts), the service shutting down) empties the cache, and until
 *   the next stream's snapshot every lookup reads through to the service. So a cached
 *   value is dropped by the event of any change committed after the snapshot.
 * - `created`, `updated` and `deleted` events drop the name; the next lookup reads it
 *   again (single-flight, as in the TTL cache). A load in flight when its name's event
 *   arrives, or when the stream ends, does not store its result.
 * - A token the service refuses a watch to (no `secrets:read` scope, say) gets no
 *   caching: every lookup made with it reads through. Streams that fail UNAVAILABLE or
 *   RESOURCE_EXHAUSTED are opened again with backoff and full jitter.
 *
 * Staleness: a value served from memory misses no change whose event reached the
 * client; so it is at most the stream's delivery lag old, and at most the silence
 * after which watch.ts treats a stream as lost when the connection dies without a reset.
 */

/** What the watched cache needs from the client. */
export interface WatchedCacheOptions {
  /** One stream of every secret `token` can see, starting with a snapshot (watch.ts openWatch). */
  open: (token: string, signal: AbortSignal) => AsyncGenerator<WatchUpdate, void, undefined>;
  /** Backoff between streams. */
  policy: RetryPolicy;
}

/** Tokens whose streams are kept open at once. */
const MAX_WATCHED_TOKENS = 4;

/** Values kept per token, least recently used evicted first. */
const MAX_ENTRIES = 1_000;

/** Failures after which a stream is opened again: lost, too many at once, or a log that must start over. */
function retried(e: unknown): boolean {
  const error = asSecretsError(e);
  return error.code === status.UNAVAILABLE || error.code === status.RESOURCE_EXHAUSTED || error.reason === "REVISION_UNAVAILABLE";
}

interface TokenWatch {
  /** The token's values while its stream is in sync; undefined while not (lookups read through). */
  values: ValueCache | undefined;
  readonly stop: AbortController;
}

export function createWatchedCache(options: WatchedCacheOptions): ValueCache {
  const desync = (w: TokenWatch) => {
    w.values?.clear();
    w.values = undefined;
  };
  // The watch of the scope looked up last: a run of lookups with one token (the usual
  // case) skips the LRU, whose order it would not change.
  let lastScope: string | undefined;
  let last: TokenWatch | undefined;
  const watches = new LRUCache<string, TokenWatch>({
    max: MAX_WATCHED_TOKENS,
    dispose: (w) => {
      if (w === last) last = lastScope = undefined;
      w.stop.abort();
      desync(w);
    },
  });

  /** The caller's values if its stream is in sync; opens the stream at a caller's first lookup. */
  function valuesOf(caller: Caller): ValueCache | undefined {
    if (caller.scope === lastScope) return last!.values;
    let w = watches.get(caller.scope);
    if (w === undefined) {
      w = { values: undefined, stop: new AbortController() };
      watches.set(caller.scope, w);
      const opened = w;
      follow(opened, caller.token).catch(() => desync(opened));
    }
    lastScope = caller.scope;
    last = w;
    return w.values;
  }

  async function follow(w: TokenWatch, token: string): Promise<void> {
    const signal = w.stop.signal;
    let failures = 0;
    while (!signal.aborted) {
      try {
        for await (const update of options.open(token, signal)) {
          failures = 0;
          if (update.kind === "snapshot") {
            desync(w);
            // No TTL: an entry answers until an event, a write or the stream's end drops it.
            w.values = createValueCache({ ttlMs: Infinity, maxEntries: MAX_ENTRIES });
          } else if (update.kind === "events") {
            for (const e of update.events) if (VALUE_CHANGES.has(e.type)) w.values?.invalidate(e.name);
          }
        }
      } catch (e) {
        if (!retried(e)) return;
      } finally {
        desync(w);
      }
      failures += 1;
      await sleep(backoffMs(options.policy, failures), signal);
    }
  }

  return {
    peek(caller, name) {
      return valuesOf(caller)?.peek(caller, name);
    },
    access(caller, name, load) {
      const values = valuesOf(caller);
      return values ? values.access(caller, name, load) : load();
    },
    resolve(caller, names, load) {
      const values = valuesOf(caller);
      return values ? values.resolve(caller, names, load) : load([...names]);
    },
    invalidate(name) {
      for (const w of watches.values()) w.values?.invalidate(name);
    },
    clear() {
      watches.clear();
    },
  };
}
