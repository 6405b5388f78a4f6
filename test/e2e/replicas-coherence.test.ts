import { randomBytes, randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mintHs256Token } from "../../src/auth/token-issuer.js";
import type { SecretService } from "../../src/gen/secrets/v1/secrets_pb.js";
import { CallError, secretsClient, type TestClient } from "../support/grpc-client.js";
import { startPrivateRedis, type PrivateRedis } from "../support/redis-server.js";
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
  let privateRedis: PrivateRedis | undefined;
  const servers: ServerProcess[] = [];
  const clients: TestClient<typeof SecretService>[] = [];
  const metricsPorts: number[] = [];
  let token: string;

  beforeAll(async () => {
    testDb = await createTestDb();
    let redisUrl = process.env["REDIS_URL"];
    if (!redisUrl) {
      privateRedis = await startPrivateRedis();
      redisUrl = privateRedis.url;
    }
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
    await privateRedis?.dispose();
    await testDb?.cleanup();
  });

  it("zero stale reads under concurrent writes on one replica and reads on the other", async () => {
    const [writer, reader] = clients as [TestClient<typeof SecretService>, TestClient<typeof SecretService>];
    /** Per name: the seq of the last write that returned, and whether each seq left the secret existing. */
    const returned = new Map<string, number>();
    const exists = new Map<string, boolean[]>();
    let stop = false;
    let writes = 0;
    let reads = 0;
    let notFoundReads = 0;
    const stale: string[] = [];
    const errors: unknown[] = [];
    // Names written once before the load: their reads should be cache hits.
    for (let i = 0; i < 4; i++) await writer.createSecret({ name: `stable_${i}`, value: `stable_${i}:1` }, token);
    let stableReads = 0;
    const hitsBefore = await cacheLookups(metricsPorts[1] as number, "hit");

    // One sequential writer per name: create → update → update → delete → create …
    const writers = Array.from({ length: NAMES }, async (_, i) => {
      const name = `coherent_${i}`;
      const states: boolean[] = [false];
      exists.set(name, states);
      returned.set(name, 0);
      for (let seq = 1; !stop && seq < 10_000; seq++) {
        const step = (seq - 1) % 4;
        try {
          if (step === 0) await writer.createSecret({ name, value: `${name}:${seq}` }, token);
          else if (step === 3) await writer.deleteSecret({ name }, token);
          else await writer.updateSecret({ name, value: `${name}:${seq}` }, token);
        } catch (e) {
          errors.push(e);
          return;
        }
        states[seq] = step !== 3;
        returned.set(name, seq);
        writes += 1;
      }
    });

    const readers = Array.from({ length: READERS }, async (_, r) => {
      for (let n = 0; !stop && n < 1_000_000; n++) {
        if (n % 3 === 2) {
          const stable = `stable_${n % 4}`;
          try {
            if ((await reader.accessSecret({ name: stable }, token)).value !== `${stable}:1`) stale.push(`${stable}: wrong value`);
            stableReads += 1;
          } catch (e) {
            errors.push(e);
          }
          continue;
        }
        const name = `coherent_${(r + n) % NAMES}`;
        const before = returned.get(name) ?? 0;
        try {
          const result =
            n % 5 === 0
              ? (await reader.resolveSecrets({ names: [name] }, token)).values[name]
              : (await reader.accessSecret({ name }, token)).value;
          const seq = Number(String(result).split(":")[1]);
          if (!(seq >= before)) stale.push(`${name}: read seq ${seq} after write ${before} returned`);
        } catch (e) {
          if (!(e instanceof CallError) || e.code !== status.NOT_FOUND) {
            errors.push(e);
            continue;
          }
          notFoundReads += 1;
          // NOT_FOUND is fresh only if the secret was absent at some state from `before` on.
          const states = exists.get(name) ?? [];
          let absentSince = false;
          for (let s = before; s < states.length + 1 && !absentSince; s++) absentSince = states[s] !== true;
          if (!absentSince) stale.push(`${name}: NOT_FOUND after write ${before} (exists) returned`);
        }
        reads += 1;
      }
    });

    const deadline = Date.now() + MAX_LOAD_MS;
    while (Date.now() < deadline && (reads < TARGET_READS || writes < TARGET_WRITES || stableReads < 150)) {
      await new Promise((r) => setTimeout(r, 50));
    }
    stop = true;
    await Promise.all([...writers, ...readers]);

    expect(errors).toEqual([]);
    expect(stale).toEqual([]);
    expect(writes).toBeGreaterThanOrEqual(TARGET_WRITES);
    expect(reads).toBeGreaterThanOrEqual(TARGET_READS);
    expect(notFoundReads).toBeGreaterThan(0);
    // The reads really went through the cache: the reader replica counted hits.
    expect(stableReads).toBeGreaterThanOrEqual(150);
    expect((await cacheLookups(metricsPorts[1] as number, "hit")) - hitsBefore).toBeGreaterThan(stableReads / 2);
  });
});

/** A replica's own count of cache lookups with this result, from its /metrics. */
async function cacheLookups(port: number, result: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`)).text();
  const m = text.match(new RegExp(`^secrets_cache_lookups_total\\{result="${result}"\\} (\\d+)`, "m"));
  return m ? Number(m[1]) : 0;
}
