import { describe, expect, it } from "vitest";
import { AppError } from "../../src/errors.js";
import { createRateLimiter } from "../../src/secrets/rate-limiter.js";

function reasonOf(fn: () => void): string | undefined {
  try {
    fn();
    return undefined;
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    expect((e as AppError).kind).toBe("resource_exhausted");
    return (e as AppError).reason;
  }
}

describe("per-developer rate limiter", () => {
  it("allows the burst, then the sustained rate, per developer", () => {
    let t = 0;
    const limiter = createRateLimiter({ ratePerSecond: 10, burst: 5, kind: "write", now: () => t });
    for (let i = 0; i < 5; i++) limiter.take("a");
    expect(reasonOf(() => limiter.take("a"))).toBe("RATE_LIMITED");
    limiter.take("b"); // another developer is unaffected
    t += 100; // one token back at 10/s
    limiter.take("a");
    expect(reasonOf(() => limiter.take("a"))).toBe("RATE_LIMITED");
    t += 10_000; // refills to the burst, not beyond
    for (let i = 0; i < 5; i++) limiter.take("a");
    expect(reasonOf(() => limiter.take("a"))).toBe("RATE_LIMITED");
  });

  it("counts a call's cost (ResolveSecrets of n names costs n) and says when to retry", () => {
    let t = 0;
    const limiter = createRateLimiter({ ratePerSecond: 100, burst: 100, kind: "read", now: () => t });
    limiter.take("a", 100);
    try {
      limiter.take("a", 10);
      throw new Error("expected a limit");
    } catch (e) {
      expect((e as AppError).metadata).toEqual({ limit: "100", retry_after_ms: "100" });
    }
  });

  it("is off at rate 0", () => {
    const limiter = createRateLimiter({ ratePerSecond: 0, kind: "read" });
    for (let i = 0; i < 10_000; i++) limiter.take("a");
  });
});
