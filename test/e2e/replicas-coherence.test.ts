import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { runCoherenceLoad, valueOf } from "../support/coherence.js";
import { masterKey, startReplicaCluster, type ReplicaCluster, type TestClient } from "../support/fixtures.js";
import { cacheLookups } from "../support/metrics-scrape.js";

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
  let cluster: ReplicaCluster;
  const clients: TestClient<typeof SecretService>[] = [];
  const metricsPorts: number[] = [];
  let token: string;

  beforeAll(async () => {
    cluster = await startReplicaCluster({ redis: true });
    const keyring = [masterKey("k1")];
    for (let i = 0; i < 2; i++) {
      const replica = await cluster.start(keyring, { SECRETS_METRICS_ADDR: "127.0.0.1:0" });
      clients.push(replica.secrets);
      metricsPorts.push(replica.metricsPort as number);
    }
    token = await cluster.token(`replica-dev-${randomUUID()}`);
  });

  afterAll(async () => {
    await cluster?.stop();
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
