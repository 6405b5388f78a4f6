import { randomBytes, randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mintHs256Token } from "../../src/auth/token-issuer.js";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { runCoherenceLoad, valueOf } from "../support/coherence.js";
import { secretsClient, type TestClient } from "../support/grpc-client.js";
import { cacheLookups } from "../support/metrics-scrape.js";
import { sharedOrPrivateRedis } from "../support/redis-server.js";
import { startServerProcess, type ServerProcess } from "../support/server-process.js";
import { createTestDb, type TestDb } from "../support/test-db.js";

// Two server processes sharing one Postgres and one Redis (the machine's, when
// REDIS_URL is set, as in CI). Writes go to one, reads to the other, concurrently;
// no read may return a state older than a write that had already returned when
// the read began — creates and deletes included. Bounded in count and time.

/** The load runs until both counts are reached, or for at most MAX_LOAD_MS. */
const TARGET_READS = 1_500;
const TARGET_WRITES = 100;
const MAX_LOAD_MS = 20_000;
const NAMES = 8;
const READERS = 24;

describe.runIf(process.env["DATABASE_URL"])("two replicas on one Postgres and one Redis", () => {
  let testDb: TestDb;
  let redis: { url: string; dispose(): Promise<void> } | undefined;
  const servers: ServerProcess[] = [];
  const clients: TestClient<typeof SecretService>[] = [];
  const metricsPorts: number[] = [];
  let token: string;

  beforeAll(async () => {
    testDb = await createTestDb();
    redis = await sharedOrPrivateRedis();
    const redisUrl = redis.url;
    const jwtSecret = randomBytes(32).toString("base64url");
    const env = {
      DATABASE_URL: testDb.url as string,
      REDIS_URL: redisUrl,
      SECRETS_GRPC_ADDR: "127.0.0.1:0",
      SECRETS_MASTER_KEYS: `k1:${randomBytes(32).toString("base64")}`,
      SECRETS_JWT_SECRET: jwtSecret,
      SECRETS_LOG_LEVEL: "info",
      SECRETS_METRICS_ADDR: "127.0.0.1:0",
    };
    for (let i = 0; i < 2; i++) {
      const server = startServerProcess(env);
      servers.push(server);
      const [, port, metricsPort] = await server.waitFor(/"port":(\d+),"metricsPort":(\d+)[^\n]*"msg":"serving"/);
      clients.push(secretsClient(`127.0.0.1:${port}`));
      metricsPorts.push(Number(metricsPort));
    }
    token = await mintHs256Token(new TextEncoder().encode(jwtSecret), {
      subject: `replica-dev-${randomUUID()}`,
      scopes: ["secrets:read", "secrets:write", "secrets:access"],
      ttlSeconds: 600,
    });
  });

  afterAll(async () => {
    for (const c of clients) c.close();
    for (const s of servers) s.kill("SIGTERM");
    await Promise.all(servers.map((s) => s.exited));
    await redis?.dispose();
    await testDb?.cleanup();
  });

  it("zero stale reads under concurrent writes on one replica and reads on the other", async () => {
    const [writer, reader] = clients as [TestClient<typeof SecretService>, TestClient<typeof SecretService>];
    // Names written once before the load: their reads should be cache hits.
    const stableNames = Array.from({ length: 4 }, (_, i) => `stable_${i}`);
    for (const name of stableNames) await writer.createSecret({ name, value: valueOf(name, 1) }, token);
    const hitsBefore = await cacheLookups(metricsPorts[1] as number, "hit");

    const r = await runCoherenceLoad({
      token,
      prefix: "coherent",
      names: NAMES,
      writerFor: () => writer,
      readers: READERS,
      readerFor: () => reader,
      stableNames,
      targetWrites: TARGET_WRITES,
      targetReads: TARGET_READS,
      targetStableReads: 150,
      maxLoadMs: MAX_LOAD_MS,
    });

    expect(r.errors).toEqual([]);
    expect(r.stale).toEqual([]);
    expect(r.writes).toBeGreaterThanOrEqual(TARGET_WRITES);
    expect(r.reads).toBeGreaterThanOrEqual(TARGET_READS);
    expect(r.notFoundReads).toBeGreaterThan(0);
    // The reads really went through the cache: the reader replica counted hits.
    expect(r.stableReads).toBeGreaterThanOrEqual(150);
    expect((await cacheLookups(metricsPorts[1] as number, "hit")) - hitsBefore).toBeGreaterThan(r.stableReads / 2);
  });
});
