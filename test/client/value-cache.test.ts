import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { SecretsError } from "../../packages/client/src/errors.js";
import { createValueCache } from "../../packages/client/src/value-cache.js";

// The SDK's value cache on its own, with a test clock: bound, TTL and the
// stale-if-error window (client-cache.test.ts runs it against the real service).

function harness(options: { ttlMs: number; staleIfErrorMs?: number; maxEntries?: number }) {
  let t = 1_000;
  const cache = createValueCache(options, () => t);
  const loads: string[] = [];
  let failWith: SecretsError | undefined;
  const access = (name: string, scope = "caller-a") =>
    cache.access({ scope, token: "unused" }, name, async () => {
      loads.push(`${scope}/${name}`);
      if (failWith) throw failWith;
      return { name, version: loads.length, value: `${scope}-value-of-${name}` };
    });
  return {
    cache,
    access,
    loads,
    advance: (ms: number) => (t += ms),
    failing: (code: status | undefined) => (failWith = code === undefined ? undefined : new SecretsError({ code, details: "test failure" })),
  };
}

describe("SDK value cache", () => {
  it("answers for ttlMs after a load, then loads again", async () => {
    const h = harness({ ttlMs: 100 });
    await h.access("a");
    h.advance(99);
    await h.access("a");
    expect(h.loads).toEqual(["caller-a/a"]);
    h.advance(1);
    await h.access("a");
    expect(h.loads).toEqual(["caller-a/a", "caller-a/a"]);
  });

  it("keeps at most maxEntries names, evicting the least recently used", async () => {
    const h = harness({ ttlMs: 60_000, maxEntries: 2 });
    await h.access("a");
    await h.access("b");
    await h.access("a"); // a hit: b is now the least recently used
    await h.access("c");
    expect(h.loads).toEqual(["caller-a/a", "caller-a/b", "caller-a/c"]);
    await h.access("a");
    await h.access("b");
    expect(h.loads).toEqual(["caller-a/a", "caller-a/b", "caller-a/c", "caller-a/b"]);
  });

  it("serves an expired value on a transient failure within staleIfErrorMs, and not after", async () => {
    const h = harness({ ttlMs: 100, staleIfErrorMs: 50 });
    expect((await h.access("a")).value).toBe("caller-a-value-of-a");
    h.failing(status.UNAVAILABLE);
    h.advance(150);
    expect((await h.access("a")).value).toBe("caller-a-value-of-a");
    h.advance(1);
    await expect(h.access("a")).rejects.toMatchObject({ codeName: "UNAVAILABLE" });
  });

  it("never serves an expired value for a failure that is not transient", async () => {
    const h = harness({ ttlMs: 100, staleIfErrorMs: 60_000 });
    await h.access("a");
    h.failing(status.NOT_FOUND);
    h.advance(100);
    await expect(h.access("a")).rejects.toMatchObject({ codeName: "NOT_FOUND" });
  });

  it("forgets an invalidated name at once", async () => {
    const h = harness({ ttlMs: 60_000 });
    await h.access("a");
    h.cache.invalidate("a");
    await h.access("a");
    expect(h.loads).toEqual(["caller-a/a", "caller-a/a"]);
  });

  it("keeps callers apart: a scope never gets another scope's entry or joins its load", async () => {
    const h = harness({ ttlMs: 60_000 });
    const [a, b] = await Promise.all([h.access("k", "caller-a"), h.access("k", "caller-b")]);
    expect([a.value, b.value]).toEqual(["caller-a-value-of-k", "caller-b-value-of-k"]);
    expect((await h.access("k", "caller-b")).value).toBe("caller-b-value-of-k");
    expect(h.loads).toEqual(["caller-a/k", "caller-b/k"]);
    const resolved = await h.cache.resolve({ scope: "caller-c", token: "unused" }, ["k"], async (names) => Object.fromEntries(names.map((n) => [n, `caller-c-${n}`])));
    expect(resolved).toEqual({ k: "caller-c-k" });
  });

  it("forgets an invalidated name in every scope", async () => {
    const h = harness({ ttlMs: 60_000 });
    await h.access("k", "caller-a");
    await h.access("k", "caller-b");
    h.cache.invalidate("k");
    await h.access("k", "caller-a");
    await h.access("k", "caller-b");
    expect(h.loads).toEqual(["caller-a/k", "caller-b/k", "caller-a/k", "caller-b/k"]);
  });

  it("peek answers only with a fresh entry that knows its version, and never loads", async () => {
    const h = harness({ ttlMs: 100 });
    const caller = { scope: "caller-a", token: "unused" };
    expect(h.cache.peek(caller, "a")).toBeUndefined();
    await h.access("a");
    const hit = h.cache.peek(caller, "a");
    expect(await hit).toEqual({ name: "a", version: 1, value: "caller-a-value-of-a" });
    // Every hit on the entry shares one settled answer, frozen so that no caller can change it for the others.
    expect(h.cache.peek(caller, "a")).toBe(hit);
    const answer = await hit!;
    expect(Object.isFrozen(answer)).toBe(true);
    expect(() => Object.assign(answer, { value: "changed" })).toThrow(TypeError);
    expect(await h.access("a")).toBe(answer);
    expect(h.cache.peek({ scope: "caller-b", token: "unused" }, "a")).toBeUndefined();
    await h.cache.resolve(caller, ["r"], async () => ({ r: "resolved" }));
    expect(h.cache.peek(caller, "r"), "ResolveSecrets does not say the version").toBeUndefined();
    h.advance(100);
    expect(h.cache.peek(caller, "a")).toBeUndefined();
    expect(h.loads).toEqual(["caller-a/a"]);
  });
});
