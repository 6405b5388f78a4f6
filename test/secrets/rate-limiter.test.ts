import { describe, expect, it } from "vitest";
import { AppError } from "../../src/api/errors.js";
import { createRateLimiter, type RateLimiter } from "../../src/secrets/rate-limiter.js";

/** The error a take raised, or undefined when it went through. */
function refusal(limiter: RateLimiter, developerId: string, cost?: number): AppError | undefined {
  try {
    limiter.take(developerId, cost);
    return undefined;
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    return e as AppError;
  }
}

/** How many takes of `cost` go through in a row before the first refusal (at most `max`). */
function admitted(limiter: RateLimiter, developerId: string, max = 1_000, cost = 1): number {
  let n = 0;
  while (n < max && refusal(limiter, developerId, cost) === undefined) n += 1;
  return n;
}

describe("per-developer rate limiter", () => {
  it("allows the burst, then the sustained rate, per developer", () => {
    let t = 0;
    const limiter = createRateLimiter({ ratePerSecond: 10, burst: 5, kind: "write", now: () => t });
    expect(admitted(limiter, "a")).toBe(5);
    const refused = refusal(limiter, "a");
    expect([refused?.kind, refused?.reason]).toEqual(["resource_exhausted", "RATE_LIMITED"]);
    expect(admitted(limiter, "b")).toBe(5); // another developer has a bucket of its own
    t += 100; // one token back at 10/s
    expect(admitted(limiter, "a")).toBe(1);
    t += 10_000; // refills to the burst, not beyond
    expect(admitted(limiter, "a")).toBe(5);
  });

  it("counts a call's cost (ResolveSecrets of n names costs n) and says when to retry", () => {
    let t = 0;
    const limiter = createRateLimiter({ ratePerSecond: 100, burst: 100, kind: "read", now: () => t });
    expect(refusal(limiter, "a", 100)).toBeUndefined();
    const refused = refusal(limiter, "a", 10);
    expect(refused?.metadata).toEqual({ limit: "100", retry_after_ms: "100" });
    expect(refused?.message).toContain("read");
    t += 100;
    expect(refusal(limiter, "a", 10)).toBeUndefined();
  });

  it("is off at rate 0", () => {
    const limiter = createRateLimiter({ ratePerSecond: 0, kind: "read" });
    expect(admitted(limiter, "a", 10_000)).toBe(10_000);
  });

  it("forgets the least recently used developer past its bound (a forgotten bucket starts full)", () => {
    const t = 0;
    const limiter = createRateLimiter({ ratePerSecond: 1, burst: 1, kind: "read", maxDevelopers: 2, now: () => t });
    for (const d of ["a", "b"]) expect(admitted(limiter, d)).toBe(1);
    expect(refusal(limiter, "a")).toBeDefined(); // a is the most recently used now, b the least
    expect(admitted(limiter, "c")).toBe(1); // a third developer: b is forgotten
    expect(admitted(limiter, "b")).toBe(1); // b starts over with a full bucket (and a is forgotten in turn)
    expect(admitted(limiter, "c")).toBe(0); // c was kept: still empty
  });
});
