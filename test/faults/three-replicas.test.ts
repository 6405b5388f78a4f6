import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { runCoherenceLoad, valueOf } from "../support/coherence.js";
import { cacheLookups, metricValue } from "../support/metrics-scrape.js";
import { masterKey, NO_RATE_LIMITS, type Replica, type ReplicaCluster, startReplicaCluster } from "../support/fixtures.js";

// Three server processes on one Postgres and one Redis (the machine's when
// REDIS_URL is set, else a private one) under mixed load: every name's creates,
// updates and deletes rotate across the three replicas, and reads and resolves go
// to all three. Zero stale reads, with the definition of replicas-coherence.test.ts
// (test/support/coherence.ts). Bounded in count and time.

const REPLICAS = 3;
const NAMES = 9;
const READERS = 24;
const TARGET_WRITES = 150;
const TARGET_READS = 2_000;
const TARGET_STABLE_READS = 300;
const MAX_LOAD_MS = 25_000;

const METHODS = ["CreateSecret", "UpdateSecret", "DeleteSecret", "AccessSecret", "ResolveSecrets"];

describe.runIf(process.env["DATABASE_URL"])("three replicas on one Postgres and one Redis under mixed load", () => {
  let cluster: ReplicaCluster;
  const replicas: Replica[] = [];
  const metricsPorts: number[] = [];
  let token: string;

  beforeAll(async () => {
    cluster = await startReplicaCluster({ redis: true });
    const keyring = [masterKey("k1")];
    // Started together, as a rolling deploy would: migrations run once under the advisory lock.
    replicas.push(
      ...(await Promise.all(
        Array.from({ length: REPLICAS }, () => cluster.start(keyring, { SECRETS_METRICS_ADDR: "127.0.0.1:0", ...NO_RATE_LIMITS })),
      )),
    );
    for (const r of replicas) metricsPorts.push(r.metricsPort as number);
    token = await cluster.token(`three-replicas-${randomUUID()}`, ["secrets:read", "secrets:write", "secrets:access"]);
  });

  afterAll(async () => {
    await Promise.all(replicas.map((r) => r.stop("SIGTERM")));
    await cluster?.stop();
  });

  it("zero stale reads with creates, updates, deletes, reads and resolves spread across all three", async () => {
    const clients = replicas.map((r) => r.secrets);
    expect(new Set(replicas.map((r) => r.replicaId)).size).toBe(REPLICAS);
    const stableNames = Array.from({ length: 6 }, (_, i) => `stable_${i}`);
    for (const [i, name] of stableNames.entries()) await clients[i % REPLICAS]?.createSecret({ name, value: valueOf(name, 1) }, token);
    const hitsBefore = await Promise.all(metricsPorts.map((p) => cacheLookups(p, "hit")));

    const r = await runCoherenceLoad({
      token,
      prefix: "mixed",
      names: NAMES,
      // Consecutive writes of one name land on different replicas.
      writerFor: (i, seq) => clients[(i + seq) % REPLICAS] as (typeof clients)[number],
      readers: READERS,
      readerFor: (reader, n) => clients[(reader + n) % REPLICAS] as (typeof clients)[number],
      stableNames,
      targetWrites: TARGET_WRITES,
      targetReads: TARGET_READS,
      targetStableReads: TARGET_STABLE_READS,
      maxLoadMs: MAX_LOAD_MS,
    });

    expect(r.errors).toEqual([]);
    expect(r.stale).toEqual([]);
    // Enough load to mean something even on a busy shared machine (the targets are where it stops early).
    expect(r.writes).toBeGreaterThanOrEqual(TARGET_WRITES / 2);
    expect(r.reads).toBeGreaterThanOrEqual(TARGET_READS / 2);
    expect(r.stableReads).toBeGreaterThanOrEqual(TARGET_STABLE_READS / 2);
    expect(r.notFoundReads).toBeGreaterThan(0);
    expect(r.deletes).toBeGreaterThan(NAMES);
    expect(r.resolves).toBeGreaterThan(0);

    // Every replica served every kind of call, and its reads went through the shared cache.
    for (const [i, port] of metricsPorts.entries()) {
      for (const method of METHODS) {
        const n = await metricValue(port, `secrets_grpc_calls_total{method="/secrets.v1.SecretService/${method}",code="OK"}`);
        expect(n, `replica ${i}: ${method} OK calls`).toBeGreaterThan(0);
      }
      expect((await cacheLookups(port, "hit")) - (hitsBefore[i] as number), `replica ${i}: cache hits`).toBeGreaterThan(0);
    }
    console.info(
      `three replicas: ${r.writes} writes (${r.creates} creates, ${r.updates} updates, ${r.deletes} deletes), ` +
        `${r.reads} reads (${r.resolves} resolves, ${r.notFoundReads} not found), ${r.stableReads} stable reads, 0 stale`,
    );
  }, 90_000);
});
