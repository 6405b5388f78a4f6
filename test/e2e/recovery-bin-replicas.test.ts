import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { Db } from "../../src/store/db.js";
import { openPostgres } from "../../src/store/pg-db.js";
import { CallError, masterKey, startReplicaCluster, startTestService, type Replica, type ReplicaCluster, type TestService } from "../support/fixtures.js";

// The recovery bin across replicas. Two services in this process share one database
// (Postgres when DATABASE_URL is set, its own pool each; else one PGlite) and one
// injected clock, which the tests move past the recovery window instead of sleeping.
// Then two server processes on Postgres and Redis check that a bin move and a restore
// are never read stale on the other replica.

const DAY_MS = 86_400_000;

describe("purging the recovery bin from two replicas", () => {
  let a: TestService;
  let b: TestService;
  let extraPool: Db | undefined;
  const clock = { now: Date.parse("2026-12-06T00:00:00Z") };
  const now = () => new Date(clock.now);
  // Only the test's own passes of the lifecycle job run.
  const manual = { clock: now, lifecycleJobs: "manual" as const };

  beforeAll(async () => {
    a = await startTestService({ SECRETS_WRITE_RATE: "0" }, manual);
    if (a.dbUrl) extraPool = await openPostgres(a.dbUrl, { maxConnections: 4 });
    b = await startTestService(
      { SECRETS_WRITE_RATE: "0" },
      { ...manual, database: { db: extraPool ?? a.db, url: a.dbUrl ?? "" }, masterKeys: a.masterKeys, jwtSecret: a.jwtSecret },
    );
  });

  afterAll(async () => {
    await b?.stop();
    await extraPool?.close();
    await a?.stop();
  });

  const purgePass = async (s: TestService) => (await s.service.runLifecycleJobs()).purged;
  const purgeEvents = async (developerId: string) => {
    const operator = await a.token("ops", { scopes: ["secrets:operator"] });
    return (await a.audit.listAuditEvents({ developerId, action: "PurgeSecret", pageSize: 500 }, operator)).events;
  };

  it("purges each secret exactly once after its window, with one audit event each, while both replicas run the job", async () => {
    const dev = `purge-${randomUUID()}`;
    const t = await a.token(dev);
    const names = Array.from({ length: 40 }, (_, i) => `s${i}`);
    for (const name of names) {
      await a.secrets.createSecret({ name, value: "v" }, t);
      await a.secrets.deleteSecret({ name }, t); // the default window, 7 days
    }
    await b.secrets.createSecret({ name: "live", value: "stays" }, t);

    clock.now += 7 * DAY_MS - 1;
    expect(await Promise.all([purgePass(a), purgePass(b)])).toEqual([0, 0]);
    expect((await a.secrets.listSecrets({ showDeleted: true, pageSize: 500 }, t)).secrets).toHaveLength(40);

    clock.now += 1;
    const counts = await Promise.all([purgePass(a), purgePass(b), purgePass(a)]);
    expect(counts.reduce((x, y) => x + y, 0)).toBe(40);
    expect((await a.secrets.listSecrets({ showDeleted: true }, t)).secrets).toEqual([]);
    const left = await a.db.query<{ n: number }>("SELECT count(*) AS n FROM secret_versions WHERE developer_id = $1", [dev]);
    expect(left.rows).toEqual([{ n: 1 }]); // the live secret's only version
    expect((await b.secrets.accessSecret({ name: "live" }, t)).value).toBe("stays");

    await vi.waitFor(async () => expect(await purgeEvents(dev)).toHaveLength(40), { timeout: 5_000 });
    const events = await purgeEvents(dev);
    expect(events.map((e) => e.secretName).sort()).toEqual([...names].sort());
    expect(new Set(events.map((e) => e.outcome))).toEqual(new Set(["OK"]));
  });

  it("a restore racing the purge: exactly one wins, the other fails cleanly", async () => {
    const dev = `race-${randomUUID()}`;
    const t = await a.token(dev);
    const rounds = 12;
    let restores = 0;
    let purged = 0;
    for (let i = 0; i < rounds; i++) {
      // One secret due at a time, so that the purge's count is about this one.
      await a.secrets.createSecret({ name: `r${i}`, value: `v${i}` }, t);
      await a.secrets.deleteSecret({ name: `r${i}`, recoveryWindowDays: 1 }, t);
      clock.now += DAY_MS;
      const [restore, purge] = await Promise.allSettled([a.secrets.restoreSecret({ name: `r${i}` }, t), purgePass(b)]);
      expect(purge.status).toBe("fulfilled");
      const n = (purge as PromiseFulfilledResult<number>).value;
      if (restore.status === "fulfilled") {
        expect(n).toBe(0);
        expect((await b.secrets.accessSecret({ name: `r${i}` }, t)).value).toBe(`v${i}`);
        restores += 1;
      } else {
        expect(n).toBe(1);
        expect((restore.reason as CallError).code).toBe(status.NOT_FOUND);
        expect((restore.reason as CallError).reason).toBe("SECRET_NOT_FOUND");
        purged += 1;
      }
      expect((await a.secrets.listSecrets({ showDeleted: true }, t)).secrets.filter((s) => s.name === `r${i}`)).toEqual([]);
    }
    expect(restores + purged).toBe(rounds);
  });
});

describe.runIf(process.env["DATABASE_URL"])("no stale read on another replica after a bin move, a restore or an expiry", () => {
  let cluster: ReplicaCluster;
  let writer: Replica;
  let reader: Replica;

  beforeAll(async () => {
    cluster = await startReplicaCluster({ redis: true });
    const keyring = [masterKey("k1")];
    writer = await cluster.start(keyring);
    reader = await cluster.start(keyring);
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  it("reads on the other replica see the delete and the restore as soon as each returns", async () => {
    const t = await cluster.token(`stale-${randomUUID()}`);
    await writer.secrets.createSecret({ name: "cached", value: "v1" }, t);
    for (let round = 0; round < 3; round++) {
      // Warm the reader's cache, then bin the secret on the writer.
      expect((await reader.secrets.accessSecret({ name: "cached" }, t)).value).toBe("v1");
      expect((await reader.secrets.resolveSecrets({ names: ["cached"] }, t)).values).toEqual({ cached: "v1" });
      await writer.secrets.deleteSecret({ name: "cached" }, t);
      expect((await reader.secrets.accessSecret({ name: "cached" }, t).catch((e: CallError) => e)) as CallError).toMatchObject({
        code: status.NOT_FOUND,
      });
      // "Not found" is cached now; the restore must replace it at once.
      expect((await reader.secrets.resolveSecrets({ names: ["cached"] }, t).catch((e: CallError) => e)) as CallError).toMatchObject({
        code: status.NOT_FOUND,
      });
      await writer.secrets.restoreSecret({ name: "cached" }, t);
      expect((await reader.secrets.accessSecret({ name: "cached" }, t)).value).toBe("v1");
    }
  });

  it("an expiry, made by whichever replica's job comes first, is seen on the other as soon as it is made", async () => {
    const t = await cluster.token(`expiry-${randomUUID()}`);
    const ttl = { case: "ttl" as const, value: durationFromMs(1_500) };
    await writer.secrets.createSecret({ name: "short_lived", value: "v1", expiration: ttl }, t);
    // The reader's cache holds the value (a hit would otherwise serve it for 30 s).
    expect((await reader.secrets.accessSecret({ name: "short_lived" }, t)).value).toBe("v1");
    expect((await reader.secrets.resolveSecrets({ names: ["short_lived"] }, t)).values).toEqual({ short_lived: "v1" });
    const binned = async () => (await writer.secrets.listSecrets({ showDeleted: true }, t)).secrets.length === 1;
    await vi.waitFor(async () => expect(await binned()).toBe(true), { timeout: 10_000, interval: 50 });
    for (const call of [
      () => reader.secrets.accessSecret({ name: "short_lived" }, t),
      () => reader.secrets.resolveSecrets({ names: ["short_lived"] }, t),
    ]) {
      expect((await call().catch((e: CallError) => e)) as CallError).toMatchObject({ code: status.NOT_FOUND });
    }
  });
});
