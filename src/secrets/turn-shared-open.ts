import type { CachedLookup } from "../cache/secret-cache.js";

/** A cache hit: what opening a value needs. */
export type FoundEntry = Extract<CachedLookup, { kind: "found" }>;

/** Opens a hit: its value, or a promise of it when the data key is not in memory. */
export type OpenHit = (developerId: string, name: string, hit: FoundEntry) => Buffer | Promise<Buffer>;

/**
 * Wraps `open` so that the calls of one event-loop turn that open the same entry
 * decrypt it once. The calls one Redis reply answers (one coalesced MGET, see
 * lib/coalescing-batcher.ts) all run in the turn the reply arrives in, and an agent's tasks
 * tend to ask for the same few secrets at once (in the benchmark's cache-hit phase,
 * 64 calls in flight over ten names, one reply answers about 33 lookups).
 *
 * What keeps this exactly what a decryption of its own would give:
 * - Only an identical entry is shared: same developer, name, secret id, version,
 *   data key version and ciphertext bytes, hence the same key, AAD and input, and
 *   AES-GCM's open is a function of those. Anything else is opened on its own.
 * - Nothing outlives the turn: the map is dropped when the turn ends (setImmediate
 *   runs after the I/O callbacks of the turn), so no plaintext is kept for later
 *   calls; the value cache holds only sealed entries, and this is not a cache.
 * - Only a value opened at once (its data key in memory) is shared; a failure is
 *   not, so every call that fails fails with its own error.
 * Callers must not modify the Buffer they are given: the calls sharing it each
 * copy it into their response.
 */
export function shareOpensWithinTurn(open: OpenHit): OpenHit {
  let opened: Map<string, { developerId: string; hit: FoundEntry; value: Buffer }> | undefined;

  return (developerId, name, hit) => {
    const earlier = opened?.get(name);
    if (earlier !== undefined && earlier.developerId === developerId && sameEntry(earlier.hit, hit)) return earlier.value;
    const value = open(developerId, name, hit);
    if (value instanceof Buffer) {
      if (opened === undefined) {
        const map = new Map<string, { developerId: string; hit: FoundEntry; value: Buffer }>();
        opened = map;
        setImmediate(() => {
          if (opened === map) opened = undefined;
        });
      }
      opened.set(name, { developerId, hit, value });
    }
    return value;
  };
}

function sameEntry(a: FoundEntry, b: FoundEntry): boolean {
  return (
    a === b ||
    (a.secretId === b.secretId && a.version === b.version && a.dekVersion === b.dekVersion && a.ciphertext.equals(b.ciphertext))
  );
}
