import fc from "fast-check";
import { describe, expect, it } from "vitest";
import type { Principal } from "../../src/auth/principal.js";
import { cachingVerifier } from "../../src/auth/token-cache.js";
import { AppError } from "../../src/api/errors.js";

function fakeVerifier(expiresAt: number) {
  const calls: string[] = [];
  return {
    calls,
    async verify(token: string): Promise<Principal> {
      calls.push(token);
      if (token === "bad") throw new AppError("TOKEN_INVALID", "token malformed");
      return { developerId: token, scopes: new Set(), allowlist: null, tokenId: undefined, expiresAt };
    },
  };
}

describe("verified-token cache", () => {
  it("verifies a token once and reuses it until exp + skew", async () => {
    let t = 1_000_000;
    const inner = fakeVerifier(1_000 + 60); // exp at t = 1,060,000 ms
    const v = cachingVerifier(inner, { now: () => t, clockToleranceSeconds: 30 });
    expect((await v.verify("a")).developerId).toBe("a");
    await v.verify("a");
    await v.verify("a");
    expect(inner.calls).toEqual(["a"]);
    t = 1_089_999;
    await v.verify("a");
    expect(inner.calls).toEqual(["a"]);
    t = 1_090_000; // exp + 30 s: the cached entry no longer counts
    await v.verify("a");
    expect(inner.calls).toEqual(["a", "a"]);
  });

  it("answers `verified` at once only for a token verified before and still valid", async () => {
    let t = 1_000_000;
    const inner = fakeVerifier(1_000 + 60);
    const v = cachingVerifier(inner, { now: () => t, clockToleranceSeconds: 30 });
    expect(v.verified?.("a")).toBeUndefined();
    await v.verify("a");
    expect(v.verified?.("a")?.developerId).toBe("a");
    await expect(v.verify("bad")).rejects.toThrow();
    expect(v.verified?.("bad")).toBeUndefined();
    t = 1_090_000;
    expect(v.verified?.("a")).toBeUndefined();
    expect(inner.calls).toEqual(["a", "bad"]);
  });

  it("never caches a failure", async () => {
    const inner = fakeVerifier(9_999_999_999);
    const v = cachingVerifier(inner);
    await expect(v.verify("bad")).rejects.toThrow(AppError);
    await expect(v.verify("bad")).rejects.toThrow(AppError);
    expect(inner.calls).toEqual(["bad", "bad"]);
  });

  it("verifies a token brought by many calls at once once, and a failure fails them all without being kept", async () => {
    const inner = fakeVerifier(Math.floor(Date.now() / 1000) + 600);
    const v = cachingVerifier(inner);
    const principals = await Promise.all([1, 2, 3].map(() => v.verify("a")));
    expect(inner.calls).toEqual(["a"]);
    expect(new Set(principals).size).toBe(1);
    const failures = await Promise.allSettled([1, 2].map(() => v.verify("bad")));
    expect(failures.map((f) => f.status)).toEqual(["rejected", "rejected"]);
    expect(inner.calls).toEqual(["a", "bad"]);
    await expect(v.verify("bad")).rejects.toMatchObject({ reason: "TOKEN_INVALID" });
    expect(inner.calls).toEqual(["a", "bad", "bad"]);
  });

  it("is bounded, evicting the least recently used", async () => {
    const inner = fakeVerifier(9_999_999_999);
    const v = cachingVerifier(inner, { maxEntries: 2 });
    await v.verify("a");
    await v.verify("b");
    await v.verify("a"); // a is now most recent
    await v.verify("c"); // evicts b
    await v.verify("a");
    await v.verify("b");
    expect(inner.calls).toEqual(["a", "b", "c", "b"]);
  });

  it("counts every hit as a use, at any capacity", async () => {
    const inner = fakeVerifier(9_999_999_999);
    const v = cachingVerifier(inner, { maxEntries: 8 });
    for (const token of ["a", "b", "a", "c", "d", "e", "f", "g", "h", "i"]) await v.verify(token);
    // b was the least recently used when i came: a stays, used after b.
    expect(v.verified?.("a")?.developerId).toBe("a");
    expect(v.verified?.("b")).toBeUndefined();
  });

  it("keeps every token of interleaved callers, and forgets none for a failure between them", async () => {
    const inner = fakeVerifier(9_999_999_999);
    const v = cachingVerifier(inner, { maxEntries: 2 });
    for (const token of ["a", "a", "b", "a", "b", "b", "a"]) await v.verify(token);
    await expect(v.verify("bad")).rejects.toThrow(AppError);
    expect(v.verified?.("a")?.developerId).toBe("a");
    expect(v.verified?.("b")?.developerId).toBe("b");
    expect(inner.calls).toEqual(["a", "b", "bad"]);
  });

  it("evicts a token used call after call only once others were used after it", async () => {
    const inner = fakeVerifier(9_999_999_999);
    const v = cachingVerifier(inner, { maxEntries: 2 });
    await v.verify("a");
    await v.verify("b");
    for (let i = 0; i < 3; i++) expect(v.verified?.("a")?.developerId).toBe("a");
    await v.verify("c"); // b is the least recently used
    expect(v.verified?.("a")?.developerId).toBe("a");
    expect(v.verified?.("b")).toBeUndefined();
    expect(inner.calls).toEqual(["a", "b", "c"]);
  });

  it("evicts a token exactly when its capacity in other tokens were used since its last use", async () => {
    await fc.assert(
      fc.asyncProperty(fc.array(fc.integer({ min: 0, max: 19 }), { minLength: 1, maxLength: 300 }), async (uses) => {
        const inner = fakeVerifier(9_999_999_999);
        const v = cachingVerifier(inner, { maxEntries: 8 });
        const used: string[] = [];
        for (const n of uses) {
          const token = `t${n}`;
          const verifications = inner.calls.length;
          await v.verify(token);
          const last = used.lastIndexOf(token);
          const verifiedAgain = inner.calls.length > verifications;
          // Least recently used: evicted exactly when 8 (the capacity) other tokens were used since.
          expect(verifiedAgain).toBe(last < 0 || new Set(used.slice(last + 1)).size >= 8);
          used.push(token);
        }
      }),
      { numRuns: 300 },
    );
  });
});
