import { randomBytes, randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCoherentCache, type CacheStore } from "../../src/cache/coherent-cache.js";
import { createMemoryStore } from "../../src/cache/memory-cache.js";
import { createRedisCache, createRedisStore } from "../../src/cache/redis-cache.js";
import {
  decodeEntry,
  developerPrefix,
  encodeEntry,
  MAX_FILL_READ_AGE_MS,
  type CachedLookup,
  type SecretCache,
} from "../../src/cache/secret-cache.js";
import { AppError } from "../../src/errors.js";
import { startPrivateRedis, startPrivateSentinel, type PrivateRedis } from "../support/redis-server.js";

// The coherence primitives, run against the in-process store and a real Redis.

const found = (n: number): CachedLookup => ({
  kind: "found",
  secretId: randomUUID(),
  version: n,
  dekVersion: 1,
  ciphertext: randomBytes(40),
});

describe("entry format", () => {
  it("round-trips found and missing entries and rejects malformed bytes", () => {
    const f = found(7);
    expect(decodeEntry(encodeEntry(f))).toEqual(f);
    expect(decodeEntry(encodeEntry({ kind: "missing" }))).toEqual({ kind: "missing" });
    const bytes = encodeEntry(f);
    expect(decodeEntry(bytes.subarray(0, 26))).toBeUndefined(); // no ciphertext
    expect(decodeEntry(Buffer.from([0x02, 0x01]))).toBeUndefined(); // unknown format
    expect(decodeEntry(Buffer.from([0x01, 0x02, 0x00]))).toBeUndefined(); // trailing bytes
    expect(decodeEntry(Buffer.alloc(0))).toBeUndefined();
  });

  it("keys of one developer share a hash slot tag", () => {
    const p = developerPrefix("alice");
    expect(p).toMatch(/^sec:\{[0-9a-f]{16}\}:$/);
    expect(developerPrefix("bob")).not.toBe(p);
  });
});

let redis: PrivateRedis;
const clients: Redis[] = [];

beforeAll(async () => {
  redis = await startPrivateRedis();
});

afterAll(async () => {
  for (const c of clients) c.disconnect();
  await redis?.dispose();
});

const stores: [string, () => CacheStore][] = [
  ["memory", () => createMemoryStore()],
  [
    "redis",
    () => {
      const c = new Redis(redis.url, { maxRetriesPerRequest: 0 });
      clients.push(c);
      return createRedisStore(c);
    },
  ],
];

describe.each(stores)("coherence primitives on %s", (_label, makeStore) => {
  let cache: SecretCache;
  beforeAll(() => {
    cache = createCoherentCache(makeStore(), { kind: "memory", ttlMs: 30_000 });
  });
  const dev = () => `dev-${randomUUID()}`;

  it("a miss fills and the next lookup hits; not-found is cached too", async () => {
    const d = dev();
    const [first, second] = await cache.lookup(d, ["a", "b"]);
    expect(first?.hit).toBeUndefined();
    const value = found(1);
    await cache.fill([
      { ticket: first!.ticket, value },
      { ticket: second!.ticket, value: { kind: "missing" } },
    ]);
    const [a, b] = await cache.lookup(d, ["a", "b"]);
    expect(a?.hit).toEqual(value);
    expect(b?.hit).toEqual({ kind: "missing" });
  });

  it("a write that began after the lookup makes its fill a no-op", async () => {
    const d = dev();
    const [miss] = await cache.lookup(d, ["x"]);
    await cache.beginWrite(d, ["x"]);
    await cache.fill([{ ticket: miss!.ticket, value: found(1) }]);
    expect((await cache.lookup(d, ["x"]))[0]?.hit).toBeUndefined();
    await cache.endWrite(d, ["x"]);
    // Even after the write ended, the old ticket stays refused (the generation moved on).
    await cache.fill([{ ticket: miss!.ticket, value: found(1) }]);
    expect((await cache.lookup(d, ["x"]))[0]?.hit).toBeUndefined();
  });

  it("a lookup during a write gets a ticket that cannot fill", async () => {
    const d = dev();
    await cache.beginWrite(d, ["y"]);
    const [during] = await cache.lookup(d, ["y"]);
    expect(during?.ticket.generation).toBeNull();
    await cache.endWrite(d, ["y"]);
    await cache.fill([{ ticket: during!.ticket, value: found(1) }]);
    expect((await cache.lookup(d, ["y"]))[0]?.hit).toBeUndefined();
    // A lookup after the write can fill.
    const [after] = await cache.lookup(d, ["y"]);
    await cache.fill([{ ticket: after!.ticket, value: found(2) }]);
    expect((await cache.lookup(d, ["y"]))[0]?.hit).toMatchObject({ version: 2 });
  });

  it("a write deletes the entry; overlapping writes keep the fence until the last one ends", async () => {
    const d = dev();
    const [m] = await cache.lookup(d, ["z"]);
    await cache.fill([{ ticket: m!.ticket, value: found(1) }]);
    expect((await cache.lookup(d, ["z"]))[0]?.hit).toBeDefined();
    await cache.beginWrite(d, ["z"]);
    await cache.beginWrite(d, ["z"]);
    expect((await cache.lookup(d, ["z"]))[0]?.hit).toBeUndefined();
    await cache.endWrite(d, ["z"]);
    expect((await cache.lookup(d, ["z"]))[0]?.ticket.generation).toBeNull(); // still fenced
    await cache.endWrite(d, ["z"]);
    expect((await cache.lookup(d, ["z"]))[0]?.ticket.generation).not.toBeNull();
  });

  it("drops a fill whose lookup is older than the read-age bound", async () => {
    let t = 1_000_000;
    const aged = createCoherentCache(makeStore(), { kind: "memory", ttlMs: 30_000, now: () => t });
    const d = dev();
    const [m] = await aged.lookup(d, ["old"]);
    t += MAX_FILL_READ_AGE_MS;
    await aged.fill([{ ticket: m!.ticket, value: found(1) }]);
    expect((await aged.lookup(d, ["old"]))[0]?.hit).toBeUndefined();
  });

  it("evicts every entry of one developer and no other", async () => {
    const d1 = dev();
    const d2 = dev();
    for (const d of [d1, d2]) {
      const [m] = await cache.lookup(d, ["k"]);
      await cache.fill([{ ticket: m!.ticket, value: found(1) }]);
    }
    await cache.evictDeveloper(d1);
    expect((await cache.lookup(d1, ["k"]))[0]?.hit).toBeUndefined();
    expect((await cache.lookup(d2, ["k"]))[0]?.hit).toBeDefined();
  });
});

describe("Redis failures", () => {
  it("a Redis that is down turns lookups into misses and fails writes UNAVAILABLE; it recovers by itself", async () => {
    const own = await startPrivateRedis();
    const events: string[] = [];
    const cache = await createRedisCache({
      topology: { kind: "single", url: own.url },
      ttlMs: 30_000,
      commandTimeoutMs: 200,
      onOutage: (e) => events.push(e),
    });
    try {
      const d = `dev-${randomUUID()}`;
      const [m] = await cache.lookup(d, ["s"]);
      await cache.fill([{ ticket: m!.ticket, value: found(1) }]);
      expect((await cache.lookup(d, ["s"]))[0]?.hit).toBeDefined();

      await own.stop();
      for (let i = 0; i < 5; i++) {
        const [r] = await cache.lookup(d, ["s"]);
        expect(r?.hit).toBeUndefined();
        expect(r?.ticket.generation).toBeNull();
      }
      const err = await cache.beginWrite(d, ["s"]).then(
        () => undefined,
        (e: unknown) => e,
      );
      expect(err).toBeInstanceOf(AppError);
      expect((err as AppError).reason).toBe("BACKEND_UNAVAILABLE");
      await cache.endWrite(d, ["s"]); // best effort: does not throw
      expect(events).toEqual(["down"]); // once per outage

      await own.start();
      let back = false;
      for (let i = 0; i < 100 && !back; i++) {
        const [r] = await cache.lookup(d, ["s"]);
        back = r?.ticket.generation !== null;
        if (!back) await new Promise((res) => setTimeout(res, 50));
      }
      expect(back).toBe(true);
      expect(events).toEqual(["down", "up"]);
      await cache.beginWrite(d, ["s"]);
      await cache.endWrite(d, ["s"]);
    } finally {
      await cache.close();
      await own.dispose();
    }
  });
});

describe("coalesced lookups", () => {
  /** A store over the private Redis whose MGETs are counted (and, when `hold` is set, held back). */
  function countingStore() {
    const c = new Redis(redis.url, { maxRetriesPerRequest: 0, autoPipeliningIgnoredCommands: ["mget"] });
    clients.push(c);
    const mgets: number[] = [];
    let hold: Promise<void> | undefined;
    const real = c.mgetBuffer.bind(c) as (keys: string[]) => Promise<(Buffer | null)[]>;
    (c as unknown as { mgetBuffer: unknown }).mgetBuffer = async (keys: string[]) => {
      mgets.push(keys.length);
      const h = hold;
      if (h) await h;
      return real(keys);
    };
    return {
      cache: createCoherentCache(createRedisStore(c), { kind: "redis", ttlMs: 30_000 }),
      mgets,
      holdNext(until: Promise<void>) {
        hold = until;
      },
    };
  }

  /** Fill `names` of `d` with distinct entries (version = index + 1); returns them. */
  async function seed(cache: SecretCache, d: string, names: string[]): Promise<CachedLookup[]> {
    const entries = names.map((_, i) => found(i + 1));
    const lookups = await cache.lookup(d, names);
    await cache.fill(lookups.map((l, i) => ({ ticket: l.ticket, value: entries[i] as CachedLookup })));
    return entries;
  }

  it("lookups made in one turn share one MGET, a key asked for twice goes out once, and each lookup gets its own entries", async () => {
    const { cache, mgets } = countingStore();
    const devs = [`dev-${randomUUID()}`, `dev-${randomUUID()}`];
    const names = Array.from({ length: 50 }, (_, i) => `n${i}`);
    const seeded = await Promise.all(devs.map((d) => seed(cache, d, names)));
    mgets.length = 0;
    // 100 lookups of one or two names each, both developers, some names never filled.
    const asks = Array.from({ length: 100 }, (_, i) => ({ d: i % 2, names: [`n${i % 50}`, ...(i % 3 === 0 ? [`absent${i}`] : [])] }));
    const results = await Promise.all(asks.map((a) => cache.lookup(devs[a.d] as string, a.names)));
    expect(mgets).toHaveLength(1);
    // Lookups i and i + 50 ask for the same developer's same name: three keys per distinct (developer, name).
    const distinct = new Set(asks.flatMap((a) => a.names.map((n) => `${a.d}/${n}`)));
    expect(distinct.size).toBeLessThan(asks.reduce((n, a) => n + a.names.length, 0));
    expect(mgets[0]).toBe(distinct.size * 3);
    for (const [i, a] of asks.entries()) {
      expect(results[i]?.[0]?.hit).toEqual(seeded[a.d]?.[i % 50]);
      if (a.names.length > 1) expect(results[i]?.[1]?.hit).toBeUndefined();
    }
  });

  it("lookups made while an MGET is on the wire wait for it, then go out together", async () => {
    const { cache, mgets, holdNext } = countingStore();
    const d = `dev-${randomUUID()}`;
    const seeded = await seed(cache, d, ["a", "b", "c"]);
    mgets.length = 0;
    let release = () => undefined as void;
    holdNext(new Promise<void>((r) => (release = r)));
    const first = cache.lookup(d, ["a"]);
    await new Promise((r) => setImmediate(r)); // the first MGET is sent, and held
    holdNext(Promise.resolve());
    const later = [cache.lookup(d, ["b"]), cache.lookup(d, ["c"])];
    await new Promise((r) => setTimeout(r, 2)); // several turns, still under the stall bound
    expect(mgets).toEqual([3]);
    release();
    const [a, b, c] = await Promise.all([first, ...later]);
    expect(mgets).toEqual([3, 6]);
    expect([a?.[0]?.hit, b?.[0]?.hit, c?.[0]?.hit]).toEqual(seeded);
  });

  it("behind a stalled MGET, later lookups go out on their own", async () => {
    const { cache, mgets, holdNext } = countingStore();
    const d = `dev-${randomUUID()}`;
    const [entry] = await seed(cache, d, ["a"]);
    mgets.length = 0;
    let release = () => undefined as void;
    holdNext(new Promise<void>((r) => (release = r)));
    const stalled = cache.lookup(d, ["a"]);
    await new Promise((r) => setTimeout(r, 50)); // past the stall bound
    holdNext(Promise.resolve());
    const [later] = await cache.lookup(d, ["a"]); // answered while the first is still held
    expect(later?.hit).toEqual(entry);
    expect(mgets).toEqual([3, 3]);
    release();
    expect((await stalled)[0]?.hit).toEqual(entry);
  });

  it("a failed MGET fails every lookup in it (each falls back to the database), and the next ones succeed", async () => {
    const c = new Redis(redis.url, { maxRetriesPerRequest: 0 });
    clients.push(c);
    let fail = true;
    const real = c.mgetBuffer.bind(c) as (keys: string[]) => Promise<(Buffer | null)[]>;
    (c as unknown as { mgetBuffer: unknown }).mgetBuffer = (keys: string[]) =>
      fail ? Promise.reject(new Error("boom")) : real(keys);
    const lookups: string[] = [];
    const cache = createCoherentCache(createRedisStore(c), { kind: "redis", ttlMs: 30_000, onLookup: (r, n) => lookups.push(`${r}:${n}`) });
    const d = `dev-${randomUUID()}`;
    const failed = await Promise.all([cache.lookup(d, ["a"]), cache.lookup(d, ["b", "c"])]);
    expect(failed.flat().map((l) => [l.hit, l.ticket.generation])).toEqual([[undefined, null], [undefined, null], [undefined, null]]);
    expect(lookups).toEqual(["error:1", "error:2"]);
    fail = false;
    const [ok] = await cache.lookup(d, ["a"]);
    expect(ok?.ticket.generation).toBe("");
  });
});

describe("Redis Sentinel", () => {
  it("finds the master through a sentinel and serves the cache from it", async () => {
    const master = await startPrivateRedis();
    const sentinel = await startPrivateSentinel(master.port, "secrets-master");
    const cache = await createRedisCache({
      topology: { kind: "sentinel", sentinels: [{ host: "127.0.0.1", port: sentinel.port }], name: "secrets-master", url: undefined },
      ttlMs: 30_000,
      connectTimeoutMs: 5_000,
    });
    try {
      const d = `dev-${randomUUID()}`;
      const [m] = await cache.lookup(d, ["via_sentinel"]);
      expect(m?.ticket.generation).not.toBeNull(); // connected: a real ticket, not an outage miss
      await cache.fill([{ ticket: m!.ticket, value: found(4) }]);
      expect((await cache.lookup(d, ["via_sentinel"]))[0]?.hit).toMatchObject({ version: 4 });
      // The entry is on the master the sentinel named.
      const direct = new Redis(master.url);
      try {
        expect((await direct.keys("sec:*:v:via_sentinel")).length).toBe(1);
      } finally {
        direct.disconnect();
      }
    } finally {
      await cache.close();
      await sentinel.dispose();
      await master.dispose();
    }
  });
});
