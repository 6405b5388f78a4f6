import { LRUCache } from "lru-cache";
import type { Principal } from "./principal.js";
import type { TokenVerifier } from "./token-verifier.js";

/**
 * Reuses verified tokens instead of re-verifying each call (a signature check costs
 * far more than a map lookup). Bounded, keyed by the token text, evicting the least
 * recently used; an entry is dropped when its token expires (`exp`, plus the
 * verifier's skew), so the cache never accepts a token the verifier would refuse for
 * its age. Failed verifications are not cached. Calls that bring a token while it is
 * being verified wait for that one verification (a client opening many streams at
 * once, or reconnecting them, verifies its token once). The token is looked up by the map,
 * never compared with another caller's: a comparison that stops at the first
 * differing character could be timed.
 */
export interface TokenCacheOptions {
  maxEntries?: number;
  /** The verifier's clock tolerance: a token is valid until exp + skew. */
  clockToleranceSeconds?: number;
  now?: () => number;
}

interface Entry {
  principal: Principal;
  /** Wall-clock ms: the expiry is the token's own `exp`, not a time since it was cached. */
  validUntil: number;
}

/** Passed to every get(): lru-cache's default options argument is a new object per call. */
const GET_OPTIONS = Object.freeze({});

export function cachingVerifier(inner: TokenVerifier, options: TokenCacheOptions = {}): TokenVerifier {
  const skewMs = (options.clockToleranceSeconds ?? 30) * 1000;
  const now = options.now ?? Date.now;
  // No lru-cache ttl: each entry's deadline comes from its token, checked below as the verifier checks it.
  const verified = new LRUCache<string, Entry>({ max: options.maxEntries ?? 10_000 });
  /** Verifications under way, by token: as many as calls in flight at most. */
  const verifying = new Map<string, Promise<Principal>>();

  function known(token: string): Principal | undefined {
    const hit = verified.get(token, GET_OPTIONS);
    if (hit === undefined) return undefined;
    if (now() < hit.validUntil) return hit.principal;
    verified.delete(token);
    return undefined;
  }

  return {
    verified: known,

    async verify(token) {
      const hit = known(token);
      if (hit !== undefined) return hit;
      let pending = verifying.get(token);
      if (pending === undefined) {
        pending = inner
          .verify(token)
          .then((principal) => {
            verified.set(token, { principal, validUntil: principal.expiresAt * 1000 + skewMs });
            return principal;
          })
          .finally(() => verifying.delete(token));
        verifying.set(token, pending);
      }
      return pending;
    },
  };
}
