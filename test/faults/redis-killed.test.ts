import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { masterKey, NO_RATE_LIMITS, type Replica, type ReplicaCluster, startReplicaCluster } from "../support/fixtures.js";
import { startPrivateRedis, type PrivateRedis } from "../support/redis-server.js";
import { outcomeOf, tracedCall, type TracedResult } from "../support/traced-call.js";

// The process-level variant of cache.test.ts's "Redis killed under load": a
// production-mode server process, its private redis-server SIGKILLed under mixed
// load and started again (empty). No read fails; writes fail UNAVAILABLE
// (BACKEND_UNAVAILABLE) and commit nothing while it is down; the server recovers by
// itself; no read is stale; one warning per outage. Bounded: a few seconds.

const WRITERS = 4;
const READERS = 8;
const PAUSE_MS = 5;
const BEFORE_MS = 1_000;
const DOWN_MS = 2_000;
const AFTER_MS = 1_500;
const RECOVERY_LIMIT_MS = 10_000;

type Result = TracedResult<keyof (typeof SecretService)["method"]> & { name: string; staleAgainst?: number };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.runIf(process.env["DATABASE_URL"])("Redis killed under load (server process, private Redis)", () => {
  let redis: PrivateRedis;
  let cluster: ReplicaCluster;
  let replica: Replica;
  let token: string;
  const developer = `redis-kill-${randomUUID()}`;

  beforeAll(async () => {
    [cluster, redis] = await Promise.all([startReplicaCluster(), startPrivateRedis()]);
    replica = await cluster.start([masterKey("k1")], { REDIS_URL: redis.url, ...NO_RATE_LIMITS });
    token = await cluster.token(developer, ["secrets:read", "secrets:write", "secrets:access"]);
  });

  afterAll(async () => {
    await cluster?.stop();
    await redis?.dispose();
  });

  it("reads never fail, writes fail UNAVAILABLE and commit nothing while it is down, and the service recovers by itself", async () => {
    const client = replica.secrets;
    for (let w = 0; w < WRITERS; w++) await client.createSecret({ name: `acc_${w}`, value: `acc_${w}:1` }, token);
    /** Per name: the sequence number of the last update that returned OK (1: the create). */
    const acked = new Map<string, number>(Array.from({ length: WRITERS }, (_, w) => [`acc_${w}`, 1]));
    const ackedUpdates = new Map<string, number>(Array.from({ length: WRITERS }, (_, w) => [`acc_${w}`, 0]));
    const results: Result[] = [];
    let stop = false;

    const writers = Array.from({ length: WRITERS }, async (_, w) => {
      const name = `acc_${w}`;
      for (let n = 0; !stop && n < 100_000; n++) {
        // The value carries the writer's sequence number, so a read can tell which write it saw.
        const r: Result = { ...(await tracedCall(client, "updateSecret", { name, value: `${name}:${n + 2}` }, token)), name };
        if (r.ok) {
          acked.set(name, n + 2);
          ackedUpdates.set(name, (ackedUpdates.get(name) ?? 0) + 1);
        }
        results.push(r);
        await sleep(r.ok ? PAUSE_MS : 4 * PAUSE_MS);
      }
    });
    const readers = Array.from({ length: READERS }, async (_, reader) => {
      for (let n = 0; !stop && n < 100_000; n++) {
        const name = `acc_${(reader + n) % WRITERS}`;
        const staleAgainst = acked.get(name) ?? 0;
        const r: Result =
          n % 4 === 0
            ? { ...(await tracedCall(client, "resolveSecrets", { names: [name] }, token)), name, staleAgainst }
            : { ...(await tracedCall(client, "accessSecret", { name }, token)), name, staleAgainst };
        results.push(r);
        await sleep(PAUSE_MS);
      }
    });

    const load = Promise.all([...writers, ...readers]);
    let killed = 0;
    let restartBegan = 0;
    let restarted = 0;
    let recovered = 0;
    try {
      await sleep(BEFORE_MS);
      await redis.stop(); // SIGKILL
      killed = Date.now();
      await sleep(DOWN_MS);
      restartBegan = Date.now();
      await redis.start();
      restarted = Date.now();
      for (let k = 0; Date.now() - restarted < RECOVERY_LIMIT_MS; k++) {
        if ((await tracedCall(client, "createSecret", { name: `probe_${k}`, value: "probe" }, token, 5_000)).ok) {
          recovered = Date.now();
          break;
        }
        await sleep(100);
      }
      await sleep(AFTER_MS);
    } finally {
      stop = true;
      await load;
    }
    expect(recovered, "writes did not work again after Redis came back").toBeGreaterThan(0);

    const reads = results.filter((r) => r.method !== "updateSecret");
    const writes = results.filter((r) => r.method === "updateSecret");
    // Redis down never fails a read.
    expect(reads.filter((r) => !r.ok).map((r) => `${r.name}: ${outcomeOf(r)}`)).toEqual([]);
    expect(reads.filter((r) => r.startedAt >= killed && r.endedAt <= restartBegan).length).toBeGreaterThan(20);
    // Writes: OK or UNAVAILABLE (BACKEND_UNAVAILABLE), and never OK while it is down.
    const badWrites = writes.filter((r) => !r.ok && !(r.error.code === status.UNAVAILABLE && r.error.reason === "BACKEND_UNAVAILABLE"));
    expect(badWrites.map((r) => `${r.name}: ${outcomeOf(r)}`)).toEqual([]);
    const downWrites = writes.filter((r) => r.startedAt >= killed && r.endedAt <= restartBegan);
    expect(downWrites.length).toBeGreaterThanOrEqual(WRITERS);
    expect(downWrites.filter((r) => r.ok).length, "a write succeeded with Redis down").toBe(0);
    expect(writes.filter((r) => r.startedAt >= recovered + 500 && !r.ok).map(outcomeOf)).toEqual([]);
    expect(writes.filter((r) => r.startedAt >= recovered + 500).length).toBeGreaterThan(0);

    // No stale read.
    const seqRead = (r: Result) => {
      if (!r.ok) return -1;
      const value = r.method === "resolveSecrets" ? (r.response as { values: Record<string, string> }).values[r.name] : (r.response as { value: string }).value;
      return Number(String(value).split(":")[1]);
    };
    const stale = reads.filter((r) => r.ok && !(seqRead(r) >= (r.staleAgainst ?? 0)));
    expect(stale.map((r) => `${r.name}: read write ${seqRead(r)} after write ${r.staleAgainst} returned`)).toEqual([]);

    // A failed write committed nothing: each secret has exactly one version per acknowledged update.
    const { rows } = await cluster.db.query<{ name: string; current_version: number }>(
      "SELECT name, current_version FROM secrets WHERE developer_id = $1 AND name LIKE 'acc\\_%'",
      [developer],
    );
    expect(Object.fromEntries(rows.map((r) => [r.name, Number(r.current_version)]))).toEqual(
      Object.fromEntries([...ackedUpdates].map(([name, n]) => [name, 1 + n])),
    );

    // One warning for the outage, and word that it ended.
    const out = replica.process.stdout();
    expect(out.match(/"msg":"redis unreachable/g)?.length).toBe(1);
    expect(out).toMatch(/"msg":"redis reachable again"/);
    expect(replica.process.child.exitCode).toBeNull();
    console.info(
      `redis killed: ${results.length} calls, ${reads.length} reads (0 failed), ${downWrites.length} writes refused while down, ` +
        `recovered ${recovered - restarted} ms after Redis was back`,
    );
  }, 60_000);
});
