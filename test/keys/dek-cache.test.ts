import { describe, it, expect } from "vitest";
import { createDekCache } from "../../src/keys/dek-cache.js";
import { KeyBytes } from "../../src/crypto/key-bytes.js";

/** A wrapped key, as the row a cached key was unwrapped from holds it. */
const W = Buffer.from("wrapped-key-of-the-row");

/** A test clock; it starts after 0, since lru-cache reads an entry set at time 0 as one without a TTL. */
function clock(start = 1): { now: () => number; advance: (ms: number) => void } {
  let t = start;
  return { now: () => t, advance: (ms) => (t += ms) };
}

describe("DEK cache", () => {
  it("returns what was set, per developer and version", () => {
    const cache = createDekCache();
    const a1 = KeyBytes.random();
    const a2 = KeyBytes.random();
    cache.set("dev-a", 1, a1, W);
    cache.set("dev-a", 2, a2, W);
    expect(cache.get("dev-a", 1)).toBe(a1);
    expect(cache.get("dev-a", 2)).toBe(a2);
    expect(cache.get("dev-a", 3)).toBeUndefined();
    expect(cache.get("dev-b", 1)).toBeUndefined();
    expect(cache.size).toBe(2);
  });

  it("keeps at most maxEntries, dropping the least recently used", () => {
    const cache = createDekCache({ maxEntries: 2 });
    const a = KeyBytes.random();
    const b = KeyBytes.random();
    const c = KeyBytes.random();
    cache.set("a", 1, a, W);
    cache.set("b", 1, b, W);
    expect(cache.get("a", 1)).toBe(a); // a is now the most recently used
    cache.set("c", 1, c, W);
    expect(cache.size).toBe(2);
    expect(cache.get("b", 1)).toBeUndefined();
    expect(cache.get("a", 1)).toBe(a);
    expect(cache.get("c", 1)).toBe(c);
  });

  it("holds 10,000 entries by default", () => {
    const cache = createDekCache();
    const key = KeyBytes.random();
    for (let i = 0; i < 10_001; i++) cache.set(`dev-${i}`, 1, key, W);
    expect(cache.size).toBe(10_000);
    expect(cache.get("dev-0", 1)).toBeUndefined();
    expect(cache.get("dev-10000", 1)).toBe(key);
  });

  it("expires an entry once it is older than ttlMs, however often it is read", () => {
    const c = clock(1_000);
    const cache = createDekCache({ ttlMs: 1_000, now: c.now });
    const key = KeyBytes.random();
    cache.set("dev", 1, key, W);
    c.advance(500);
    expect(cache.get("dev", 1)).toBe(key);
    c.advance(500);
    expect(cache.get("dev", 1)).toBe(key);
    c.advance(1);
    expect(cache.get("dev", 1)).toBeUndefined();
    expect(cache.size).toBe(0);
  });

  it("expires after 5 minutes by default", () => {
    const c = clock();
    const cache = createDekCache({ now: c.now });
    cache.set("dev", 1, KeyBytes.random(), W);
    c.advance(5 * 60 * 1000);
    expect(cache.get("dev", 1)).toBeDefined();
    c.advance(1);
    expect(cache.get("dev", 1)).toBeUndefined();
  });

  it("restarts the TTL when a key is set again", () => {
    const c = clock();
    const cache = createDekCache({ ttlMs: 100, now: c.now });
    const key = KeyBytes.random();
    cache.set("dev", 1, key, W);
    c.advance(90);
    cache.set("dev", 1, key, W);
    c.advance(90);
    expect(cache.get("dev", 1)).toBe(key);
  });

  it("evicts one developer's keys only", () => {
    const cache = createDekCache();
    cache.set("dev1", 1, KeyBytes.random(), W);
    cache.set("dev1", 2, KeyBytes.random(), W);
    cache.set("dev10", 1, KeyBytes.random(), W);
    cache.set("dev", 1, KeyBytes.random(), W);
    cache.evictDeveloper("dev1");
    expect(cache.get("dev1", 1)).toBeUndefined();
    expect(cache.get("dev1", 2)).toBeUndefined();
    expect(cache.get("dev10", 1)).toBeDefined();
    expect(cache.get("dev", 1)).toBeDefined();
    expect(cache.size).toBe(2);
  });

  it("does not confuse developer ids that share a separator-like suffix", () => {
    const cache = createDekCache();
    const key = KeyBytes.random();
    cache.set("a\u0000", 1, key, W);
    expect(cache.get("a", 1)).toBeUndefined();
    cache.set('a",1', 2, key, W);
    expect(cache.get("a", 1)).toBeUndefined();
  });

  it("keeps any two (developer id, version) pairs apart", () => {
    // Every id of up to 3 characters from a few that could act as separators, with versions 0–12:
    // a slot encoding that made two of these pairs alike would hand one pair's key to the other.
    const ids = [""];
    for (const id of ids) if (id.length < 3) for (const c of ["a", "1", ":", '"', "\u0000"]) ids.push(id + c);
    const pairs = ids.flatMap((id) => Array.from({ length: 13 }, (_, v) => [id, v] as const));
    const cache = createDekCache({ maxEntries: pairs.length });
    const keys = pairs.map(([id, v]) => {
      const key = KeyBytes.random();
      cache.set(id, v, key, W);
      return key;
    });
    expect(cache.size).toBe(pairs.length);
    pairs.forEach(([id, v], i) => expect(cache.get(id, v)).toBe(keys[i]));
  });

  it("evicts a developer's expired keys too, and keys the bound evicted do not confuse it", () => {
    const c = clock();
    const cache = createDekCache({ maxEntries: 3, ttlMs: 10, now: c.now });
    cache.set("a", 1, KeyBytes.random(), W);
    c.advance(11);
    expect(cache.size).toBe(1); // expired, not yet dropped
    cache.evictDeveloper("a");
    expect(cache.size).toBe(0);

    cache.set("a", 2, KeyBytes.random(), W);
    cache.set("a", 3, KeyBytes.random(), W);
    cache.set("b", 1, KeyBytes.random(), W);
    cache.set("b", 2, KeyBytes.random(), W); // the bound evicts a/2
    cache.set("a", 3, KeyBytes.random(), W); // replaced in place
    cache.evictDeveloper("a");
    expect(cache.size).toBe(2);
    expect(cache.get("a", 3)).toBeUndefined();
    expect(cache.get("b", 1)).toBeDefined();
    expect(cache.get("b", 2)).toBeDefined();
    cache.evictDeveloper("b");
    expect(cache.size).toBe(0);
  });

  it("does not zeroize on eviction, since a caller may still hold the key", () => {
    const c = clock();
    const cache = createDekCache({ maxEntries: 1, ttlMs: 10, now: c.now });
    const lru = KeyBytes.random();
    cache.set("a", 1, lru, W);
    cache.set("b", 1, KeyBytes.random(), W);
    expect(lru.exposeSecretBytes().length).toBe(32);
    const expired = cache.get("b", 1)!;
    c.advance(11);
    expect(cache.get("b", 1)).toBeUndefined();
    expect(expired.exposeSecretBytes().length).toBe(32);
    const evicted = KeyBytes.random();
    cache.set("c", 1, evicted, W);
    cache.evictDeveloper("c");
    expect(evicted.exposeSecretBytes().length).toBe(32);
  });

  it("clear() drops and zeroizes every key", () => {
    const cache = createDekCache();
    const a = KeyBytes.random();
    const b = KeyBytes.random();
    cache.set("a", 1, a, W);
    cache.set("b", 1, b, W);
    cache.clear();
    expect(cache.size).toBe(0);
    expect(cache.get("a", 1)).toBeUndefined();
    expect(() => a.exposeSecretBytes()).toThrow(/zeroized/);
    expect(() => b.exposeSecretBytes()).toThrow(/zeroized/);
  });

  it("clear() zeroizes an expired key not yet dropped", () => {
    const c = clock();
    const cache = createDekCache({ ttlMs: 10, now: c.now });
    const key = KeyBytes.random();
    cache.set("a", 1, key, W);
    c.advance(11);
    expect(cache.size).toBe(1);
    cache.clear();
    expect(() => key.exposeSecretBytes()).toThrow(/zeroized/);
  });

  it("rejects nonsensical options", () => {
    expect(() => createDekCache({ maxEntries: 0 })).toThrow();
    expect(() => createDekCache({ maxEntries: 1.5 })).toThrow();
    expect(() => createDekCache({ ttlMs: 0 })).toThrow();
    expect(() => createDekCache({ ttlMs: Number.NaN })).toThrow();
    expect(() => createDekCache({ ttlMs: 1.5 })).toThrow(/ttlMs/);
  });
});

describe("DEK cache: the row a key came from", () => {
  it("answers a caller holding the same wrapped key, and misses for any other", () => {
    const cache = createDekCache();
    const key = KeyBytes.random();
    cache.set("dev", 7, key, W);
    expect(cache.get("dev", 7, Buffer.from(W))).toBe(key);
    expect(cache.get("dev", 7, Buffer.from("rewrapped-or-another-row"))).toBeUndefined();
    expect(cache.get("dev", 7)).toBe(key); // no row at hand (a cache hit): the version alone, never reused
  });

  it("keeps its own copy of the wrapped key", () => {
    const cache = createDekCache();
    const key = KeyBytes.random();
    const wrapped = Buffer.from(W);
    cache.set("dev", 1, key, wrapped);
    wrapped.fill(0);
    expect(cache.get("dev", 1, W)).toBe(key);
  });
});
