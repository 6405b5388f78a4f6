import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { CacheOptions, SecretsClient } from "@secrets-service/client";
import { startTestService, type TestService } from "../support/fixtures.js";
import { callsOf, expectSecretsError, randomValue } from "./client-fixtures.js";

// The opt-in client cache against the real service: calls are counted in the
// server's own log lines (one JSON line per call), per developer.

let svc: TestService;

function clientFor(developer: string, cache?: CacheOptions): Promise<SecretsClient> {
  return svc.connectClient(developer, cache ? { cache } : {});
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  svc = await startTestService();
});

afterAll(async () => {
  await svc?.stop();
});

describe("single-flight", () => {
  it("makes one AccessSecret call for 25 concurrent lookups of one name (and 25 without the cache)", async () => {
    const value = randomValue("sf");
    const writer = await clientFor("cache-sf");
    await writer.secrets.create({ name: "hot_key", value });

    const plain = await clientFor("cache-sf");
    const plainResults = await Promise.all(Array.from({ length: 25 }, () => plain.secrets.access("hot_key")));
    expect(plainResults.every((r) => r.value === value)).toBe(true);
    expect(callsOf(svc.logs, "AccessSecret", "cache-sf").length, "calls without the cache").toBe(25);

    const cached = await clientFor("cache-sf", { ttlMs: 60_000 });
    const results = await Promise.all(Array.from({ length: 25 }, () => cached.secrets.access("hot_key")));
    expect(results.every((r) => r.value === value && r.version === 1 && r.name === "hot_key")).toBe(true);
    expect(callsOf(svc.logs, "AccessSecret", "cache-sf").length - 25, "calls with the cache").toBe(1);

    // Later lookups within the TTL are answered from the cache.
    await cached.secrets.access("hot_key");
    expect(callsOf(svc.logs, "AccessSecret", "cache-sf").length - 25).toBe(1);
  });

  it("makes one ResolveSecrets call for concurrent resolves, and asks only for the names not cached", async () => {
    const writer = await clientFor("cache-resolve");
    for (const name of ["a_key", "b_key", "c_key"]) await writer.secrets.create({ name, value: `${name}-value` });
    const cached = await clientFor("cache-resolve", { ttlMs: 60_000 });

    const results = await Promise.all(Array.from({ length: 10 }, () => cached.secrets.resolve(["a_key", "b_key"])));
    for (const r of results) expect(r).toEqual({ a_key: "a_key-value", b_key: "b_key-value" });
    expect(callsOf(svc.logs, "ResolveSecrets", "cache-resolve").length).toBe(1);

    expect(await cached.secrets.resolve(["a_key", "b_key", "c_key"])).toEqual({ a_key: "a_key-value", b_key: "b_key-value", c_key: "c_key-value" });
    expect(callsOf(svc.logs, "ResolveSecrets", "cache-resolve").length).toBe(2);
    expect(await cached.secrets.resolve(["c_key", "a_key"])).toEqual({ a_key: "a_key-value", c_key: "c_key-value" });
    expect(callsOf(svc.logs, "ResolveSecrets", "cache-resolve").length).toBe(2);
  });
});

describe("freshness", () => {
  it("refetches after the TTL: another writer's change is visible within ttlMs", async () => {
    const writer = await clientFor("cache-ttl");
    await writer.secrets.create({ name: "ttl_key", value: "first-value" });
    const cached = await clientFor("cache-ttl", { ttlMs: 300 });

    expect((await cached.secrets.access("ttl_key")).value).toBe("first-value");
    await writer.secrets.update("ttl_key", { value: "second-value" });
    // Within the TTL the cache may still answer with the old value: that is the documented bound.
    expect((await cached.secrets.access("ttl_key")).value).toBe("first-value");
    await sleep(350);
    expect(await cached.secrets.access("ttl_key")).toEqual({ name: "ttl_key", version: 2, value: "second-value" });
    expect(callsOf(svc.logs, "AccessSecret", "cache-ttl").length).toBe(2);
  });

  it("drops a name at once on update or delete through the same client", async () => {
    const cached = await clientFor("cache-inval", { ttlMs: 60_000 });
    await cached.secrets.create({ name: "inval_key", value: "old-value" });
    expect((await cached.secrets.access("inval_key")).value).toBe("old-value");
    expect((await cached.secrets.resolve(["inval_key"]))["inval_key"]).toBe("old-value");

    await cached.secrets.update("inval_key", { value: "new-value" });
    expect(await cached.secrets.access("inval_key")).toEqual({ name: "inval_key", version: 2, value: "new-value" });
    expect(await cached.secrets.resolve(["inval_key"])).toEqual({ inval_key: "new-value" });

    await cached.secrets.delete("inval_key");
    expect(await expectSecretsError(() => cached.secrets.access("inval_key"))).toMatchObject({ reason: "SECRET_NOT_FOUND" });
    expect(await expectSecretsError(() => cached.secrets.resolve(["inval_key"]))).toMatchObject({ reason: "SECRET_NOT_FOUND" });
  });

  it("never serves a stale value for a failure other than UNAVAILABLE or DEADLINE_EXCEEDED", async () => {
    const writer = await clientFor("cache-notfound");
    await writer.secrets.create({ name: "gone_key", value: "gone-value" });
    const cached = await clientFor("cache-notfound", { ttlMs: 100, staleIfErrorMs: 60_000 });
    expect((await cached.secrets.access("gone_key")).value).toBe("gone-value");
    await writer.secrets.delete("gone_key");
    await sleep(150);
    expect(await expectSecretsError(() => cached.secrets.access("gone_key"))).toMatchObject({ reason: "SECRET_NOT_FOUND" });
  });

  it("serves only the current version: an explicit version always calls the service", async () => {
    const cached = await clientFor("cache-version", { ttlMs: 60_000 });
    await cached.secrets.create({ name: "ver_key", value: "one-value" });
    await cached.secrets.update("ver_key", { value: "two-value" });
    expect((await cached.secrets.access("ver_key")).value).toBe("two-value");
    expect((await cached.secrets.access("ver_key", { version: 1 })).value).toBe("one-value");
    expect((await cached.secrets.access("ver_key", { version: 1 })).value).toBe("one-value");
    expect(callsOf(svc.logs, "AccessSecret", "cache-version").length).toBe(3);
  });
});

describe("bounds", () => {
  it("keeps at most maxEntries names, evicting the least recently used", async () => {
    const cached = await clientFor("cache-lru", { ttlMs: 60_000, maxEntries: 2 });
    for (const name of ["one", "two", "three"]) await cached.secrets.create({ name, value: `${name}-value` });
    const calls = () => callsOf(svc.logs, "AccessSecret", "cache-lru").length;

    await cached.secrets.access("one");
    await cached.secrets.access("two");
    await cached.secrets.access("one"); // hit; "two" is now the least recently used
    expect(calls()).toBe(2);
    await cached.secrets.access("three"); // evicts "two"
    await cached.secrets.access("one");
    expect(calls()).toBe(3);
    await cached.secrets.access("two");
    expect(calls()).toBe(4);
  });

  it("rejects nonsensical settings", async () => {
    await expect(clientFor("cache-bad", { ttlMs: 0 })).rejects.toThrow(/ttlMs/);
    await expect(clientFor("cache-bad", { ttlMs: 10, maxEntries: 0 })).rejects.toThrow(/maxEntries/);
  });

  it("leaves the service's own answer to an empty or oversized resolve", async () => {
    const cached = await clientFor("cache-limits", { ttlMs: 60_000 });
    expect(await expectSecretsError(() => cached.secrets.resolve([]))).toMatchObject({ codeName: "INVALID_ARGUMENT" });
    const many = Array.from({ length: 101 }, (_, i) => `n_${i}`);
    expect(await expectSecretsError(() => cached.secrets.resolve(many))).toMatchObject({ reason: "TOO_MANY_NAMES" });
  });
});

describe("callers", () => {
  it("never answers one developer's token with another's cached value, nor past a narrower allowlist", async () => {
    const values = { alice: randomValue("alice"), bob: randomValue("bob") };
    const tokens = { alice: await svc.token("cache-alice"), bob: await svc.token("cache-bob") };
    for (const dev of ["alice", "bob"] as const) {
      const writer = await clientFor(`cache-${dev}`);
      await writer.secrets.create({ name: "shared_name", value: values[dev] });
    }
    // One client for a runtime that serves several developers: the token function returns whose turn it is.
    let turn: string = tokens.alice;
    const runtime = await svc.connectClient("cache-alice", { token: () => turn, cache: { ttlMs: 60_000 } });

    expect((await runtime.secrets.access("shared_name")).value).toBe(values.alice);
    turn = tokens.bob;
    expect((await runtime.secrets.access("shared_name")).value).toBe(values.bob);
    expect(await runtime.secrets.resolve(["shared_name"])).toEqual({ shared_name: values.bob });
    turn = tokens.alice;
    expect(await runtime.secrets.resolve(["shared_name"])).toEqual({ shared_name: values.alice });
    // Each developer's second lookup was a hit: one AccessSecret call each.
    expect(callsOf(svc.logs, "AccessSecret", "cache-alice")).toHaveLength(1);
    expect(callsOf(svc.logs, "AccessSecret", "cache-bob")).toHaveLength(1);

    // Alice's task token that may read only another name gets the service's refusal, not her cached value.
    turn = await svc.token("cache-alice", { allowlist: ["other_name"] });
    expect(await expectSecretsError(() => runtime.secrets.access("shared_name"))).toMatchObject({ reason: "NOT_ALLOWLISTED" });

    // Concurrent first lookups by both developers do not share a load (the token is read as a call starts).
    const fresh = await svc.connectClient("cache-alice", { token: () => turn, cache: { ttlMs: 60_000 } });
    const both = await Promise.all(
      (["alice", "bob", "alice", "bob"] as const).map((dev) => {
        turn = tokens[dev];
        return fresh.secrets.access("shared_name").then((r) => [dev, r.value] as const);
      }),
    );
    for (const [dev, value] of both) expect(value).toBe(values[dev]);
  });
});
