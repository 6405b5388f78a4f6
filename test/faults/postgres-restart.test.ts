import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { masterKey, NO_RATE_LIMITS, processCluster, type ProcessCluster, type Replica, type TestClient } from "../support/fixtures.js";
import { startPrivatePostgres, type PrivatePostgres } from "../support/private-postgres.js";
import { startPrivateRedis, type PrivateRedis } from "../support/redis-server.js";
import { outcomeOf, tracedCall, type TracedResult } from "../support/traced-call.js";

// Postgres stopped (pg_ctl stop -m fast) and restarted under load, on a private
// Postgres this test starts itself, with a production-mode server process and a
// private Redis. While it is down: writes fail UNAVAILABLE (BACKEND_UNAVAILABLE),
// reads of cached values still succeed, no read is stale. After it is back the
// service recovers by itself, and every write that was acknowledged is there with
// its value. Bounded: a few seconds of load in each phase.

const WRITERS = 6;
const READERS = 6;
const STABLE = 4;
const PAUSE_MS = 10;
const PAUSE_AFTER_FAILURE_MS = 40;
const BEFORE_MS = 1_500;
const DOWN_MS = 3_000;
/** After recovery the load goes on until this many calls began past it (bounded by AFTER_LIMIT_MS). */
const AFTER_CALLS = 40;
const AFTER_LIMIT_MS = 20_000;
const RECOVERY_LIMIT_MS = 15_000;

type Kind = "create" | "update" | "stable-read" | "stable-resolve" | "read";
type Result = TracedResult<keyof (typeof SecretService)["method"]> & { kind: Kind; name: string; value?: string; staleAgainst?: number };

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

describe.runIf(process.env["DATABASE_URL"])("Postgres stopped and restarted under load (private instance)", () => {
  let postgres: PrivatePostgres;
  let redis: PrivateRedis;
  let cluster: ProcessCluster;
  let replica: Replica;
  let token: string;
  let probeToken: string;

  beforeAll(async () => {
    [postgres, redis] = await Promise.all([startPrivatePostgres(), startPrivateRedis()]);
    const dbUrl = await postgres.createDatabase("secrets_faults");
    cluster = processCluster(dbUrl);
    // Every version keeps its ciphertext, so each acknowledged value can be read back.
    replica = await cluster.start([masterKey("k1")], { REDIS_URL: redis.url, SECRETS_MAX_VERSIONS: "10000", ...NO_RATE_LIMITS });
    const scopes = ["secrets:read", "secrets:write", "secrets:access"] as const;
    token = await cluster.token(`pg-fault-${randomUUID()}`, [...scopes]);
    // The recovery probe acts for another developer, so the main developer's audit
    // back-pressure (events queue while Postgres is down) cannot delay it.
    probeToken = await cluster.token(`pg-fault-probe-${randomUUID()}`, [...scopes]);
  });

  afterAll(async () => {
    await cluster?.stopAll();
    await redis?.dispose();
    await postgres?.dispose();
  });

  it("fails UNAVAILABLE while down, serves cached reads, recovers by itself, and keeps every acknowledged write", async () => {
    const client: TestClient<typeof SecretService> = replica.secrets;
    const stable = Array.from({ length: STABLE }, (_, i) => `stable_${i}`);
    for (const name of stable) await client.createSecret({ name, value: `stable-value-${name}` }, token);
    for (let w = 0; w < WRITERS; w++) await client.createSecret({ name: `acc_${w}`, value: `u-${w}-init` }, token);
    // Warm the cache: the first read misses and fills (off the response path), the next one hits.
    for (const name of stable) await client.accessSecret({ name }, token);
    await sleep(200);
    for (const name of stable) expect((await client.accessSecret({ name }, token)).value).toBe(`stable-value-${name}`);

    const results: Result[] = [];
    /** Per acc_ name: the highest version whose update was acknowledged, and each acknowledged version's value. */
    const ackedVersion = new Map<string, number>();
    const ackedValues = new Map<string, Map<number, string>>();
    for (let w = 0; w < WRITERS; w++) {
      ackedVersion.set(`acc_${w}`, 1);
      ackedValues.set(`acc_${w}`, new Map([[1, `u-${w}-init`]]));
    }
    let stop = false;

    const writers = Array.from({ length: WRITERS }, async (_, w) => {
      for (let n = 0; !stop && n < 100_000; n++) {
        let r: Result;
        if (n % 2 === 0) {
          const name = `w${w}_${n}`;
          const value = `c-${w}-${n}`;
          r = { ...(await tracedCall(client, "createSecret", { name, value }, token)), kind: "create", name, value };
        } else {
          const name = `acc_${w}`;
          const value = `u-${w}-${n}`;
          r = { ...(await tracedCall(client, "updateSecret", { name, value }, token)), kind: "update", name, value };
          if (r.ok) {
            const version = (r.response as { secret?: { version: number } }).secret?.version ?? -1;
            ackedValues.get(name)?.set(version, value);
            ackedVersion.set(name, Math.max(ackedVersion.get(name) ?? 0, version));
          }
        }
        results.push(r);
        await sleep(r.ok ? PAUSE_MS : PAUSE_AFTER_FAILURE_MS);
      }
    });

    const readers = Array.from({ length: READERS }, async (_, reader) => {
      for (let n = 0; !stop && n < 100_000; n++) {
        let r: Result;
        if (n % 3 === 0) {
          const name = stable[n % STABLE] as string;
          r = { ...(await tracedCall(client, "accessSecret", { name }, token)), kind: "stable-read", name };
          if (r.ok && (r.response as { value: string }).value !== `stable-value-${name}`) throw new Error(`${name}: wrong value`);
        } else if (n % 3 === 1) {
          const names = [stable[n % STABLE] as string, stable[(n + 1) % STABLE] as string];
          r = { ...(await tracedCall(client, "resolveSecrets", { names }, token)), kind: "stable-resolve", name: names.join(",") };
          if (r.ok) {
            const values = (r.response as { values: Record<string, string> }).values;
            for (const name of names) if (values[name] !== `stable-value-${name}`) throw new Error(`${name}: wrong value in resolve`);
          }
        } else {
          const name = `acc_${(reader + n) % WRITERS}`;
          const before = ackedVersion.get(name) ?? 0;
          r = { ...(await tracedCall(client, "accessSecret", { name }, token)), kind: "read", name, staleAgainst: before };
        }
        results.push(r);
        await sleep(r.ok ? PAUSE_MS : PAUSE_AFTER_FAILURE_MS);
      }
    });

    const load = Promise.all([...writers, ...readers]);
    let stopBegan = 0;
    let down = 0;
    let upBegan = 0;
    let up = 0;
    let recovered = 0;
    try {
      await sleep(BEFORE_MS);
      stopBegan = Date.now();
      await postgres.stop("fast");
      down = Date.now();
      await sleep(DOWN_MS);
      upBegan = Date.now();
      await postgres.start();
      up = Date.now();
      // The service must recover by itself: no restart, no action but waiting.
      for (let k = 0; Date.now() - up < RECOVERY_LIMIT_MS; k++) {
        const probe = await tracedCall(client, "createSecret", { name: `probe_${k}`, value: "probe" }, probeToken, 5_000);
        if (probe.ok) {
          recovered = Date.now();
          break;
        }
        await sleep(100);
      }
      // A count, not a fixed time: on a busy machine calls in flight during the outage
      // can still be finishing for a while after recovery.
      const afterDeadline = Date.now() + AFTER_LIMIT_MS;
      while (recovered > 0 && Date.now() < afterDeadline && results.filter((r) => r.startedAt >= recovered + 500).length < AFTER_CALLS) {
        await sleep(50);
      }
    } finally {
      stop = true;
      await load;
    }
    expect(recovered, `the service did not recover within ${RECOVERY_LIMIT_MS} ms of Postgres being back`).toBeGreaterThan(0);

    // Only OK or UNAVAILABLE (BACKEND_UNAVAILABLE), whatever the phase.
    const unexpected = results.filter((r) => !r.ok && !(r.error.code === status.UNAVAILABLE && r.error.reason === "BACKEND_UNAVAILABLE"));
    expect(unexpected.map((r) => `${r.kind} ${r.name}: ${outcomeOf(r)} ${r.ok ? "" : r.error.details}`)).toEqual([]);

    // Healthy before the stop.
    const before = results.filter((r) => r.endedAt < stopBegan);
    expect(before.length).toBeGreaterThan(50);
    expect(before.filter((r) => !r.ok).map(outcomeOf)).toEqual([]);

    // While down (calls that began after the stop completed and ended before the restart began).
    const whileDown = results.filter((r) => r.startedAt >= down && r.endedAt <= upBegan);
    const downWrites = whileDown.filter((r) => r.kind === "create" || r.kind === "update");
    expect(downWrites.length).toBeGreaterThanOrEqual(10);
    expect(downWrites.filter((r) => r.ok).map((r) => r.name), "a write succeeded with Postgres down").toEqual([]);
    const downCachedReads = whileDown.filter((r) => r.kind === "stable-read" || r.kind === "stable-resolve");
    expect(downCachedReads.length).toBeGreaterThanOrEqual(10);
    expect(downCachedReads.filter((r) => !r.ok).map(outcomeOf), "a cached read failed with Postgres down").toEqual([]);

    // No read of an updated secret older than an update that had returned when it began.
    const versionRead = (r: Result) => (r.ok ? (r.response as { version: number }).version : -1);
    const stale = results.filter((r) => r.kind === "read" && r.ok && versionRead(r) < (r.staleAgainst ?? 0));
    expect(stale.map((r) => `${r.name}: v${versionRead(r)} < v${r.staleAgainst}`)).toEqual([]);
    for (const r of results) {
      if (r.kind !== "read" || !r.ok) continue;
      const { version, value } = r.response as { version: number; value: string };
      const known = ackedValues.get(r.name)?.get(version);
      // An update whose answer was lost may have committed: its value is unknown here, but it is that writer's.
      if (known !== undefined) expect(value, `${r.name} v${version}`).toBe(known);
      else expect(value).toMatch(new RegExp(`^u-${r.name.slice(4)}-\\d+$`));
    }

    // Recovered: calls that began a little after the first good probe all succeed.
    const after = results.filter((r) => r.startedAt >= recovered + 500);
    expect(after.length).toBeGreaterThan(20);
    expect(after.filter((r) => !r.ok).map(outcomeOf)).toEqual([]);

    // Every acknowledged write is present, with its value.
    const ackedCreates = results.filter((r) => r.kind === "create" && r.ok);
    expect(ackedCreates.length).toBeGreaterThan(20);
    await inBatches(ackedCreates, 16, async (r) => {
      const got = await client.accessSecret({ name: r.name, version: 1 }, token);
      expect(got.value, r.name).toBe(r.value);
    });
    let ackedUpdates = 0;
    for (const [name, versions] of ackedValues) {
      await inBatches([...versions], 16, async ([version, value]) => {
        expect((await client.accessSecret({ name, version }, token)).value, `${name} v${version}`).toBe(value);
        ackedUpdates += 1;
      });
      // The history has no gaps: 1..current, newest first.
      const listed = (await client.listSecretVersions({ name, pageSize: 1000 }, token)).versions.map((v) => v.version);
      const current = (await client.getSecret({ name }, token)).secret?.version ?? 0;
      expect(listed).toEqual(Array.from({ length: current }, (_, i) => current - i));
      expect(current).toBeGreaterThanOrEqual(ackedVersion.get(name) ?? 0);
    }
    expect(ackedUpdates).toBeGreaterThan(20 + WRITERS);

    // The process never restarted, and it still stops cleanly.
    expect(replica.process.child.exitCode).toBeNull();
    expect(await replica.stop("SIGTERM")).toBe(0);
    console.info(
      `postgres restart: ${results.length} calls; ${whileDown.length} while down (${downWrites.length} writes failed, ` +
        `${downCachedReads.length} cached reads served); recovered ${recovered - up} ms after Postgres was back; ` +
        `${ackedCreates.length} acknowledged creates and ${ackedUpdates} versions verified`,
    );
  }, 90_000);
});

async function inBatches<T>(items: T[], size: number, fn: (item: T) => Promise<void>): Promise<void> {
  for (let i = 0; i < items.length; i += size) await Promise.all(items.slice(i, i + size).map(fn));
}
