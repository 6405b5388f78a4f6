import { LRUCache } from "lru-cache";
import { AppError } from "../api/errors.js";

/**
 * Per-developer token buckets: `ratePerSecond` sustained, `burst` at once. Each
 * replica keeps its own buckets (a developer's effective limit is the rate times
 * the number of replicas their calls spread over). The map of buckets is bounded;
 * the least recently used developer's bucket is forgotten first (it refills anyway).
 */
export interface RateLimiter {
  /** Takes `cost` tokens or throws RESOURCE_EXHAUSTED (RATE_LIMITED) saying when to retry. */
  take(developerId: string, cost?: number): void;
}

export interface RateLimiterOptions {
  /** 0 turns the limit off. */
  ratePerSecond: number;
  burst?: number;
  /** Which limit this is, for the error: "read" or "write". */
  kind: string;
  maxDevelopers?: number;
  now?: () => number;
}

/** Passed to every get(): lru-cache's default options argument is a new object per call. */
const GET_OPTIONS = Object.freeze({});

export function createRateLimiter(options: RateLimiterOptions): RateLimiter {
  const rate = options.ratePerSecond;
  if (rate <= 0) return { take() {} };
  const burst = options.burst ?? rate * 2;
  const now = options.now ?? Date.now;
  // No ttl: a bucket idle long enough is full again, which a forgotten one is too.
  const buckets = new LRUCache<string, { tokens: number; at: number }>({ max: options.maxDevelopers ?? 100_000 });

  return {
    take(developerId, cost = 1) {
      const t = now();
      let b = buckets.get(developerId, GET_OPTIONS); // a use: most recently used now
      if (b) {
        b.tokens = Math.min(burst, b.tokens + ((t - b.at) / 1000) * rate);
        b.at = t;
      } else {
        b = { tokens: burst, at: t };
        buckets.set(developerId, b);
      }
      if (b.tokens < cost) {
        const retryAfterMs = Math.ceil(((cost - b.tokens) / rate) * 1000);
        throw new AppError("RATE_LIMITED", `too many ${options.kind} calls for this developer; retry after ${retryAfterMs} ms`, {
          limit: String(rate),
          retry_after_ms: String(retryAfterMs),
        });
      }
      b.tokens -= cost;
    },
  };
}
