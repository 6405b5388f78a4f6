import { randomBytes, randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { developerPrefix, nameKeys } from "../../src/cache/secret-cache.js";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { CallError, expectCallError, NO_RATE_LIMITS, startTestService, type TestClient, type TestService } from "../support/fixtures.js";

// Rollback through Redis (issue 17, point 4). Someone with write access to Redis
// copies a developer's keys, waits for the secret to move on (a new version and
// the old one destroyed, or the secret deleted), and writes the copies back,
// again and again, with a long PTTL. The service over real gRPC must never serve
// the old value from entries written back alone; written back together with the
// generations and fences, only until the copied entry's own expiry (at most one
// TTL after the lookup that filled it), and never after it.
//
// Needs a real Redis: runs when REDIS_URL is set (as in CI) and fails, rather than
// skips, when that Redis cannot be reached.

const REDIS_URL = process.env["REDIS_URL"];
const TTL_SECONDS = 2;
/** Longest entry lifetime: the TTL plus its 10 % jitter. */
const MAX_LIFETIME_MS = TTL_SECONDS * 1_100;
/** What the attacker gives the keys it writes back: far beyond any entry's expiry. */
const LONG_PTTL_MS = 60_000;
/** How long after the copied entry's expiry the attacker keeps writing it back. */
const AFTER_EXPIRY_MS = 1_500;

type Outcome = "old" | "new" | "not found" | "other";
interface Read {
  startedAt: number;
  via: "AccessSecret" | "ResolveSecrets";
  outcome: Outcome;
}
interface CopiedKey {
  key: string;
  value: Buffer;
  pttl: number;
}

describe.runIf(REDIS_URL)("cache entries written back into Redis (replay)", () => {
  let svc: TestService;
  let client: TestClient<typeof SecretService>;
  let redis: Redis;

  beforeAll(async () => {
    // Fail, never skip, when REDIS_URL is set but unreachable: the service would
    // start anyway (reads go to the database), and every assertion below would
    // pass without a cache.
    redis = new Redis(REDIS_URL as string, { lazyConnect: true, connectTimeout: 2_000, maxRetriesPerRequest: 0, retryStrategy: () => null });
    redis.on("error", () => undefined);
    const reachable = await redis.connect().then(
      () => redis.ping(),
      () => undefined,
    );
    if (reachable !== "PONG") throw new Error("REDIS_URL is set but Redis cannot be reached: these tests need it");
    svc = await startTestService({ REDIS_URL: REDIS_URL as string, SECRETS_CACHE_TTL_SECONDS: String(TTL_SECONDS), ...NO_RATE_LIMITS });
    client = svc.secrets;
  });

  afterAll(async () => {
    await svc?.stop();
    redis?.disconnect();
  });

  /** A developer of its own per test, its token, and the two values it will hold (never printed: outcomes are labels). */
  async function setUp() {
    const developer = `replay-${randomUUID()}`;
    const token = await svc.token(developer, { scopes: ["secrets:read", "secrets:write", "secrets:access"] });
    const oldValue = `old-${randomBytes(12).toString("hex")}`;
    const newValue = `new-${randomBytes(12).toString("hex")}`;
    const label = (value: string): Outcome => (value === oldValue ? "old" : value === newValue ? "new" : "other");
    const access = async (name: string): Promise<Read> => {
      const startedAt = Date.now();
      try {
        return { startedAt, via: "AccessSecret", outcome: label((await client.accessSecret({ name }, token)).value) };
      } catch (e) {
        if (e instanceof CallError && e.code === status.NOT_FOUND) return { startedAt, via: "AccessSecret", outcome: "not found" };
        throw e;
      }
    };
    const resolve = async (name: string): Promise<Read> => {
      const startedAt = Date.now();
      try {
        const values = (await client.resolveSecrets({ names: [name] }, token)).values;
        return { startedAt, via: "ResolveSecrets", outcome: label(values[name] ?? "") };
      } catch (e) {
        if (e instanceof CallError && e.code === status.NOT_FOUND) return { startedAt, via: "ResolveSecrets", outcome: "not found" };
        throw e;
      }
    };
    return { developer, token, oldValue, newValue, access, resolve };
  }

  /** Waits until the service's fill (off the response path) has stored the name's entry. */
  async function entryFilled(developer: string, name: string): Promise<void> {
    const key = nameKeys(developerPrefix(developer), name).entry;
    for (let i = 0; i < 100; i++) {
      if ((await redis.exists(key)) === 1) return;
      await new Promise((r) => setTimeout(r, 20));
    }
    throw new Error("the cache entry was never filled: is the service using Redis?");
  }

  /** Every key of the developer, with its bytes and remaining PTTL, as an attacker with read access sees them. */
  async function copyKeys(developer: string): Promise<CopiedKey[]> {
    const pattern = `${developerPrefix(developer)}*`;
    const copies: CopiedKey[] = [];
    let cursor = "0";
    do {
      const [next, keys] = await redis.scan(cursor, "MATCH", pattern, "COUNT", 100);
      for (const key of keys) {
        const [value, pttl] = await Promise.all([redis.getBuffer(key), redis.pttl(key)]);
        if (value !== null) copies.push({ key, value, pttl });
      }
      cursor = next;
    } while (cursor !== "0");
    return copies;
  }

  const isEntry = (key: string) => /}:v:/.test(key);

  /**
   * Writes the copies back, with at least LONG_PTTL_MS to live: entries alone, or
   * every key (generations and fences too, and keys made since the copy deleted),
   * so that the developer's keys are exactly as copied.
   */
  async function writeBack(developer: string, copies: readonly CopiedKey[], what: "entries" | "everything"): Promise<void> {
    const tx = redis.multi();
    if (what === "everything") {
      const copied = new Set(copies.map((c) => c.key));
      for (const now of await copyKeys(developer)) if (!copied.has(now.key)) tx.del(now.key);
    }
    for (const c of copies) {
      if (what === "entries" && !isEntry(c.key)) continue;
      tx.set(c.key, c.value, "PX", Math.max(c.pttl, LONG_PTTL_MS));
    }
    await tx.exec();
    for (const c of copies.filter((c) => isEntry(c.key))) expect((await redis.getBuffer(c.key))?.equals(c.value), "the copy is in place").toBe(true);
  }

  /** The copied entry's expiry (entry-codec.ts: bytes 2–9, u64 ms since the epoch), checked against its PTTL. */
  function expiryOf(copy: CopiedKey, copiedAt: number): number {
    expect(copy.value[0]).toBe(0x02);
    const expiresAt = copy.value.readUInt32BE(2) * 2 ** 32 + copy.value.readUInt32BE(6);
    expect(Math.abs(copiedAt + copy.pttl - expiresAt)).toBeLessThan(500);
    return expiresAt;
  }

  /** Fills the entry of `name` (holding the old value), copies the developer's keys, and returns the copies and the entry's expiry. */
  async function fillAndCopy(s: Awaited<ReturnType<typeof setUp>>, name: string) {
    await client.createSecret({ name, value: s.oldValue }, s.token);
    const lookedUpFrom = Date.now();
    expect((await s.access(name)).outcome).toBe("old");
    await entryFilled(s.developer, name);
    expect((await s.resolve(name)).outcome).toBe("old"); // a hit on the entry just filled
    const copiedAt = Date.now();
    const copies = await copyKeys(s.developer);
    const entry = copies.find((c) => c.key === nameKeys(developerPrefix(s.developer), name).entry);
    expect(entry, "the entry was copied").toBeDefined();
    expect(copies.some((c) => /}:g:/.test(c.key)), "the generation was copied").toBe(true);
    const expiresAt = expiryOf(entry as CopiedKey, copiedAt);
    // The window an old value can be served in is one entry lifetime from the lookup that filled it.
    expect(expiresAt).toBeLessThanOrEqual(lookedUpFrom + MAX_LIFETIME_MS);
    return { copies, expiresAt };
  }

  /** Writes back and reads (both RPCs) over and over, until `until`. */
  async function replayWhileReading(s: Awaited<ReturnType<typeof setUp>>, name: string, copies: readonly CopiedKey[], what: "entries" | "everything", until: number) {
    const reads: Read[] = [];
    while (Date.now() < until) {
      await writeBack(s.developer, copies, what);
      reads.push(await s.access(name));
      await writeBack(s.developer, copies, what);
      reads.push(await s.resolve(name));
      await new Promise((r) => setTimeout(r, 25));
    }
    return reads;
  }

  const outcomes = (reads: readonly Read[]) => [...new Set(reads.map((r) => `${r.via}: ${r.outcome}`))].sort();

  it("entries written back alone after an update and a destroy of the old version are never served", async () => {
    const s = await setUp();
    const { copies, expiresAt } = await fillAndCopy(s, "api_key");
    await client.updateSecret({ name: "api_key", value: s.newValue }, s.token);
    await client.destroySecretVersion({ name: "api_key", version: 1 }, s.token);
    const reads = await replayWhileReading(s, "api_key", copies, "entries", expiresAt + AFTER_EXPIRY_MS);
    expect(reads.filter((r) => r.startedAt < expiresAt).length).toBeGreaterThan(4); // inside the window too
    expect(outcomes(reads)).toEqual(["AccessSecret: new", "ResolveSecrets: new"]);
  });

  it("entries written back alone after a delete are never served: NOT_FOUND, as GetSecret says", async () => {
    const s = await setUp();
    const { copies, expiresAt } = await fillAndCopy(s, "deleted_key");
    await client.deleteSecret({ name: "deleted_key" }, s.token);
    const reads = await replayWhileReading(s, "deleted_key", copies, "entries", expiresAt + AFTER_EXPIRY_MS);
    expect(reads.filter((r) => r.startedAt < expiresAt).length).toBeGreaterThan(4);
    expect(outcomes(reads)).toEqual(["AccessSecret: not found", "ResolveSecrets: not found"]);
    expect((await expectCallError(() => client.getSecret({ name: "deleted_key" }, s.token))).code).toBe(status.NOT_FOUND);
  });

  it("with generations and fences written back too, the old value is served only before the copied entry's expiry, never after", async () => {
    const s = await setUp();
    const { copies, expiresAt } = await fillAndCopy(s, "rolled_key");
    await client.updateSecret({ name: "rolled_key", value: s.newValue }, s.token);
    await client.destroySecretVersion({ name: "rolled_key", version: 1 }, s.token);
    const reads = await replayWhileReading(s, "rolled_key", copies, "everything", expiresAt + AFTER_EXPIRY_MS);
    const before = reads.filter((r) => r.startedAt < expiresAt);
    const after = reads.filter((r) => r.startedAt >= expiresAt);
    expect(after.length).toBeGreaterThan(4);
    expect(outcomes(after)).toEqual(["AccessSecret: new", "ResolveSecrets: new"]);
    // The bound is the entry's expiry: inside it a full replay does bring the old value back (docs/threat-model.md).
    expect(before.some((r) => r.outcome === "old")).toBe(true);
    expect(reads.every((r) => r.outcome === "old" || r.outcome === "new")).toBe(true);
  });

  it("with generations and fences written back too, a deleted value is served only before the copied entry's expiry, never after", async () => {
    const s = await setUp();
    const { copies, expiresAt } = await fillAndCopy(s, "gone_key");
    await client.deleteSecret({ name: "gone_key" }, s.token);
    const reads = await replayWhileReading(s, "gone_key", copies, "everything", expiresAt + AFTER_EXPIRY_MS);
    const after = reads.filter((r) => r.startedAt >= expiresAt);
    expect(after.length).toBeGreaterThan(4);
    expect(outcomes(after)).toEqual(["AccessSecret: not found", "ResolveSecrets: not found"]);
    expect(reads.every((r) => r.outcome === "old" || r.outcome === "not found")).toBe(true);
    expect((await expectCallError(() => client.getSecret({ name: "gone_key" }, s.token))).code).toBe(status.NOT_FOUND);
  });
});
