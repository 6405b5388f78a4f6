import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { Redis } from "ioredis";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { expectCallError, startTestService, type LogCapture, type TcpProxy, type TestClient, type TestService } from "../support/fixtures.js";
import { startPrivateRedis, type PrivateRedis } from "../support/redis-server.js";

// The Redis cache end to end: a hit needs no Postgres; Redis down never fails a
// read; what Redis holds is sealed. Postgres sits behind a proxy the test can cut,
// and Redis is a private instance the test starts and kills.

describe.runIf(process.env["DATABASE_URL"])("Redis cache over real gRPC", () => {
  let svc: TestService;
  let redis: PrivateRedis;
  let proxy: TcpProxy;
  let client: TestClient<typeof SecretService>;
  let logs: LogCapture;
  let token: string;

  beforeAll(async () => {
    redis = await startPrivateRedis();
    const proxied = await startTestService({ REDIS_URL: redis.url }, { proxy: true });
    svc = proxied;
    ({ proxy, logs, secrets: client } = proxied);
    token = await svc.token(`cache-dev-${randomUUID()}`);
  });

  afterAll(async () => {
    await svc?.stop();
    await redis?.dispose();
  });

  it("serves hits (values and not-found) with Postgres unreachable: no database round trip on a hit", async () => {
    for (let i = 0; i < 10; i++) await client.createSecret({ name: `hot_${i}`, value: `hot-value-${i}` }, token);
    // Warm: the first lookups miss and fill.
    for (let i = 0; i < 10; i++) expect((await client.accessSecret({ name: `hot_${i}` }, token)).value).toBe(`hot-value-${i}`);
    await expectCallError(() => client.accessSecret({ name: "never_created" }, token));
    await new Promise((r) => setTimeout(r, 100)); // fills are off the response path

    await proxy.down();
    try {
      for (let i = 0; i < 10; i++) {
        const r = await client.accessSecret({ name: `hot_${i}` }, token);
        expect(r).toEqual(expect.objectContaining({ name: `hot_${i}`, version: 1, value: `hot-value-${i}` }));
      }
      const resolved = await client.resolveSecrets({ names: ["hot_1", "hot_2", "hot_3"] }, token);
      expect(resolved.values).toEqual({ hot_1: "hot-value-1", hot_2: "hot-value-2", hot_3: "hot-value-3" });
      const missing = await expectCallError(() => client.accessSecret({ name: "never_created" }, token));
      expect(missing.code).toBe(status.NOT_FOUND);
      // A miss needs the database, and says so.
      const cold = await expectCallError(() => client.accessSecret({ name: "hot_1", version: 1 }, token));
      expect(cold.code).toBe(status.UNAVAILABLE);
    } finally {
      await proxy.up();
    }
  });

  it("a write is visible to the next read at once: update, delete and re-create invalidate", async () => {
    await client.createSecret({ name: "changing", value: "c-1" }, token);
    expect((await client.accessSecret({ name: "changing" }, token)).value).toBe("c-1");
    await client.updateSecret({ name: "changing", value: "c-2" }, token);
    expect((await client.accessSecret({ name: "changing" }, token))).toMatchObject({ value: "c-2", version: 2 });
    await client.deleteSecret({ name: "changing" }, token);
    expect((await expectCallError(() => client.accessSecret({ name: "changing" }, token))).code).toBe(status.NOT_FOUND);
    await client.createSecret({ name: "changing", value: "c-3" }, token);
    expect((await client.accessSecret({ name: "changing" }, token))).toMatchObject({ value: "c-3", version: 1 });
  });

  it("an entry moved under another name in Redis is refused: the name's own value is served", async () => {
    await client.createSecret({ name: "entry_a", value: "value-of-a" }, token);
    await client.createSecret({ name: "entry_b", value: "value-of-b" }, token);
    await client.accessSecret({ name: "entry_a" }, token);
    await client.accessSecret({ name: "entry_b" }, token);
    await new Promise((r) => setTimeout(r, 100));
    const r = new Redis(redis.url);
    try {
      const [keyA] = await r.keys("sec:*:v:entry_a");
      const [keyB] = await r.keys("sec:*:v:entry_b");
      expect(keyA && keyB).toBeTruthy();
      await r.set(keyB as string, (await r.getBuffer(keyA as string)) as Buffer, "PX", 30_000);
    } finally {
      r.disconnect();
    }
    // Its MAC binds it to entry_a: a miss for entry_b, which is read from Postgres.
    const r1 = await client.accessSecret({ name: "entry_b" }, token);
    expect(r1.value === "value-of-b", "entry_b's own value").toBe(true);
    const resolved = await client.resolveSecrets({ names: ["entry_b"] }, token);
    expect(resolved.values["entry_b"] === "value-of-b", "entry_b's own value").toBe(true);
  });

  it("Redis holds no plaintext value, key or token", async () => {
    const r = new Redis(redis.url);
    try {
      const keys = await r.keys("*");
      expect(keys.length).toBeGreaterThan(10);
      let dump = Buffer.alloc(0);
      for (const key of keys) {
        const v = await r.getBuffer(key);
        if (v) dump = Buffer.concat([dump, Buffer.from(key), v]);
      }
      for (let i = 0; i < 10; i++) {
        const value = `hot-value-${i}`;
        for (const form of [value, Buffer.from(value).toString("hex"), Buffer.from(value).toString("base64")]) {
          expect(dump.includes(Buffer.from(form)), "a value was found in Redis").toBe(false);
        }
      }
      expect(dump.includes(Buffer.from(token))).toBe(false);
      expect(keys.every((k) => /^sec:\{[0-9a-f]{16}\}:[vgf]:[A-Za-z][A-Za-z0-9_]*$/.test(k))).toBe(true);
    } finally {
      r.disconnect();
    }
  });

  it("Redis killed under read load: no read fails; writes fail UNAVAILABLE until it is back; one warning per outage", async () => {
    for (let i = 0; i < 5; i++) await client.createSecret({ name: `load_${i}`, value: `load-value-${i}` }, token);
    let stop = false;
    let reads = 0;
    const failures: unknown[] = [];
    const readers = Array.from({ length: 8 }, async (_, w) => {
      for (let n = 0; !stop && n < 100_000; n++) {
        const name = `load_${(w + n) % 5}`;
        try {
          const r = await client.accessSecret({ name }, token);
          if (r.value !== `load-value-${(w + n) % 5}`) failures.push(new Error("wrong value"));
          reads += 1;
        } catch (e) {
          failures.push(e);
        }
      }
    });
    await new Promise((r) => setTimeout(r, 300));
    await redis.stop();
    await new Promise((r) => setTimeout(r, 500));
    const write = await expectCallError(() => client.updateSecret({ name: "load_0", description: "while down" }, token));
    expect(write.code).toBe(status.UNAVAILABLE);
    expect(write.reason).toBe("BACKEND_UNAVAILABLE");
    await redis.start();
    await new Promise((r) => setTimeout(r, 1_500));
    stop = true;
    await Promise.all(readers);
    expect(failures).toEqual([]);
    expect(reads).toBeGreaterThan(100);
    const warnings = logs.lines().filter((l) => String(l["msg"]).startsWith("redis unreachable"));
    expect(warnings).toHaveLength(1);
    expect(logs.lines().some((l) => l["msg"] === "redis reachable again")).toBe(true);
    // Writes work again, and the description change that failed was not made.
    expect((await client.getSecret({ name: "load_0" }, token)).secret?.description).toBe("");
    await client.updateSecret({ name: "load_0", value: "load-value-0b" }, token);
    expect((await client.accessSecret({ name: "load_0" }, token)).value).toBe("load-value-0b");
  });
});
