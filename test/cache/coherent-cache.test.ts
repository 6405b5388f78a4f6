import { randomBytes, randomUUID } from "node:crypto";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { createCoherentCache, type CacheStore } from "../../src/cache/coherent-cache.js";
import { createMemoryStore } from "../../src/cache/memory-cache.js";
import { createRedisCache, createRedisStore } from "../../src/cache/redis-cache.js";
import {
  developerPrefix,
  MAX_FILL_READ_AGE_MS,
  nameKeys,
  type CachedLookup,
  type LookupOutcome,
  type SecretCache,
} from "../../src/cache/secret-cache.js";
import { KeyBytes } from "../../src/crypto/key-bytes.js";
import { AppError } from "../../src/api/errors.js";
import { startPrivateRedis, startPrivateSentinel, type PrivateRedis } from "../support/redis-server.js";

// The coherence primitives, run against the in-process store and a real Redis.

const entryKey = KeyBytes.random(32);

const found = (n: number): CachedLookup => ({
  kind: "found",
  secretId: randomUUID(),
  version: n,
  dekVersion: 1,
  ciphertext: randomBytes(40),
});

describe("keys", () => {
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
    cache = createCoherentCache(makeStore(), { kind: "memory", ttlMs: 30_000, entryKey });
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
    const aged = createCoherentCache(makeStore(), { kind: "memory", ttlMs: 30_000, entryKey, now: () => t });
    const d = dev();
    const [m] = await aged.lookup(d, ["old"]);
    t += MAX_FILL_READ_AGE_MS;
    await aged.fill([{ ticket: m!.ticket, value: found(1) }]);
    expect((await aged.lookup(d, ["old"]))[0]?.hit).toBeUndefined();
  });

  /** A cache over a store of its own, the store itself (to play the attacker), and the lookups it counted. */
  function withStore(options: { key?: KeyBytes; now?: () => number } = {}) {
    const store = makeStore();
    const counted: Partial<Record<LookupOutcome, number>> = {};
    const c = createCoherentCache(store, {
      kind: "memory",
      ttlMs: 30_000,
      entryKey: options.key ?? entryKey,
      onLookup: (r, n) => (counted[r] = (counted[r] ?? 0) + n),
      ...(options.now ? { now: options.now } : {}),
    });
    /** Writes `bytes` as the entry of (d, name), as someone with write access to the store would. */
    const plant = async (d: string, name: string, bytes: Buffer) => {
      const keys = nameKeys(developerPrefix(d), name);
      const [row] = await store.read([keys]);
      await store.fill([{ keys, expected: row?.generation ?? "", value: bytes, ttlMs: 3_600_000 }]);
      expect((await store.read([keys]))[0]?.entry).toEqual(bytes);
    };
    const rawEntry = async (d: string, name: string) => (await store.read([nameKeys(developerPrefix(d), name)]))[0]?.entry as Buffer;
    return { store, cache: c, counted, plant, rawEntry };
  }

  async function filled(c: SecretCache, d: string, name: string, value: CachedLookup) {
    const [m] = await c.lookup(d, [name]);
    await c.fill([{ ticket: m!.ticket, value }]);
    expect((await c.lookup(d, [name]))[0]?.hit).toEqual(value);
  }

  it("an entry written back after a write is refused, counted, and the name fills again", async () => {
    const { cache: c, counted, plant, rawEntry } = withStore();
    const d = dev();
    const old = found(1);
    await filled(c, d, "rolled", old);
    const copy = await rawEntry(d, "rolled");
    await c.beginWrite(d, ["rolled"]);
    await c.endWrite(d, ["rolled"]);
    await plant(d, "rolled", copy);
    const [replayed] = await c.lookup(d, ["rolled"]);
    expect(replayed?.hit).toBeUndefined();
    expect(replayed?.ticket.generation).not.toBeNull(); // fillable, as for an absent entry
    expect(counted.rejected).toBe(1);
    const fresh = found(2);
    await c.fill([{ ticket: replayed!.ticket, value: fresh }]);
    expect((await c.lookup(d, ["rolled"]))[0]?.hit).toEqual(fresh);
  });

  it("a cached not-found written back after a create is refused", async () => {
    const { cache: c, plant, rawEntry } = withStore();
    const d = dev();
    await filled(c, d, "created", { kind: "missing" });
    const copy = await rawEntry(d, "created");
    await c.beginWrite(d, ["created"]);
    await c.endWrite(d, ["created"]);
    await plant(d, "created", copy);
    expect((await c.lookup(d, ["created"]))[0]?.hit).toBeUndefined();
  });

  it("an entry copied to another name or developer, or altered, is refused", async () => {
    const { cache: c, counted, plant, rawEntry } = withStore();
    const d = dev();
    const other = dev();
    await filled(c, d, "source", found(1));
    const copy = await rawEntry(d, "source");
    await plant(d, "target", copy);
    await plant(other, "source", copy);
    const altered = Buffer.from(copy);
    altered[altered.length - 20] = (altered[altered.length - 20] as number) ^ 0x80;
    await plant(d, "altered", altered);
    await plant(d, "garbage", Buffer.from("not an entry"));
    const results = [...(await c.lookup(d, ["target", "altered", "garbage"])), ...(await c.lookup(other, ["source"]))];
    expect(results.map((r) => r.hit)).toEqual([undefined, undefined, undefined, undefined]);
    expect(results.every((r) => r.ticket.generation !== null)).toBe(true);
    expect(counted.rejected).toBe(4);
  });

  it("an entry past its expiry is refused even while the store still holds it", async () => {
    let t = Date.now();
    const { cache: c, counted } = withStore({ now: () => t });
    const d = dev();
    await filled(c, d, "aging", found(1));
    t += 30_000 * 0.9 - 10; // within the shortest jittered lifetime
    expect((await c.lookup(d, ["aging"]))[0]?.hit).toBeDefined();
    t += 30_000 * 0.2 + 20; // past the longest
    const [late] = await c.lookup(d, ["aging"]);
    expect(late?.hit).toBeUndefined();
    expect(late?.ticket.generation).not.toBeNull();
    expect(counted.expired).toBe(1);
  });

  it("a cache under another entry key refuses this one's entries (a miss, never an answer)", async () => {
    const { store, cache: mine } = withStore();
    const theirs = createCoherentCache(store, { kind: "memory", ttlMs: 30_000, entryKey: KeyBytes.random(32) });
    const d = dev();
    await filled(mine, d, "shared", found(1));
    const [seen] = await theirs.lookup(d, ["shared"]);
    expect(seen?.hit).toBeUndefined();
    // It fills in its own right, and then the first one refuses that entry in turn.
    await theirs.fill([{ ticket: seen!.ticket, value: found(1) }]);
    expect((await theirs.lookup(d, ["shared"]))[0]?.hit).toBeDefined();
    expect((await mine.lookup(d, ["shared"]))[0]?.hit).toBeUndefined();
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
      entryKey,
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
      cache: createCoherentCache(createRedisStore(c), { kind: "redis", ttlMs: 30_000, entryKey }),
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
    const cache = createCoherentCache(createRedisStore(c), { kind: "redis", ttlMs: 30_000, entryKey, onLookup: (r, n) => lookups.push(`${r}:${n}`) });
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
      entryKey,
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
