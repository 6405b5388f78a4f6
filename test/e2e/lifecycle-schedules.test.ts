import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { durationFromMs, timestampDate, timestampFromMs } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import { expectCallError, startTestService, type TestService } from "../support/fixtures.js";
import { startServicePair, type ServicePair } from "../support/service-pair.js";

// Expiry and rotation schedules over real gRPC, with an injected clock that the tests
// move instead of sleeping. On Postgres (DATABASE_URL) two services in this process
// share the database, each with its own pool and, with REDIS_URL, one cache; on the
// embedded database one service plays both parts (two in-process caches over one
// PGlite would not be one deployment). The lifecycle job runs only when a test says
// so, often three passes at once, to show that every change is made, and audited,
// exactly once.

const HOUR_MS = 3_600_000;
const DAY_MS = 24 * HOUR_MS;

describe("expiry and rotation schedules", () => {
  let a: TestService;
  let b: TestService;
  let pair: ServicePair | undefined;
  const clock = { now: Date.parse("2026-12-06T00:00:00Z") };
  const now = () => new Date(clock.now);
  const manual = { clock: now, lifecycleJobs: "manual" as const };
  const env = { SECRETS_WRITE_RATE: "0", SECRETS_READ_RATE: "0", SECRETS_RECOVERY_WINDOW_DAYS: "2" };

  beforeAll(async () => {
    pair = await startServicePair(env, manual);
    ({ a, b } = pair);
  });

  afterAll(async () => {
    await pair?.stop();
  });

  const developer = () => `life-${randomUUID()}`;
  const at = (ms: number) => timestampFromMs(ms);
  /** Both replicas' passes at once, summed. */
  const runBoth = async () => {
    const counts = await Promise.all([a.service.runLifecycleJobs(), b.service.runLifecycleJobs(), a.service.runLifecycleJobs()]);
    return {
      expired: counts.reduce((n, c) => n + c.expired, 0),
      rotationsDue: counts.reduce((n, c) => n + c.rotationsDue, 0),
      purged: counts.reduce((n, c) => n + c.purged, 0),
    };
  };
  const eventsOf = async (developerId: string, action: string) => {
    const operator = await a.token("ops", { scopes: ["secrets:operator"] });
    return (await a.audit.listAuditEvents({ developerId, action, pageSize: 500 }, operator)).events;
  };

  it("an expiry set by time or by ttl shows on the secret, filters the listing, and moves it to the bin once", async () => {
    const dev = developer();
    const t = await a.token(dev);
    const byTime = (await a.secrets.createSecret({ name: "by_time", value: "v", expiration: { case: "expireTime", value: at(clock.now + HOUR_MS) } }, t)).secret!;
    const byTtl = (await a.secrets.createSecret({ name: "by_ttl", value: "v", expiration: { case: "ttl", value: durationFromMs(2 * HOUR_MS) } }, t)).secret!;
    await a.secrets.createSecret({ name: "forever", value: "stays" }, t);
    expect(timestampDate(byTime.expireTime!).getTime()).toBe(clock.now + HOUR_MS);
    expect(timestampDate(byTtl.expireTime!).getTime()).toBe(clock.now + 2 * HOUR_MS);
    expect((await b.secrets.getSecret({ name: "by_ttl" }, t)).secret!.expireTime).toEqual(byTtl.expireTime);

    const expiringBefore = async (ms: number) =>
      (await b.secrets.listSecrets({ expiresBefore: at(ms) }, t)).secrets.map((s) => s.name);
    expect(await expiringBefore(clock.now + HOUR_MS)).toEqual([]);
    expect(await expiringBefore(clock.now + HOUR_MS + 1)).toEqual(["by_time"]);
    expect(await expiringBefore(clock.now + 3 * HOUR_MS)).toEqual(["by_time", "by_ttl"]);

    // Warm both replicas' view of the value, then let it expire.
    expect((await b.secrets.accessSecret({ name: "by_time" }, t)).value).toBe("v");
    clock.now += HOUR_MS - 1;
    expect((await runBoth()).expired).toBe(0);
    clock.now += 1;
    expect((await runBoth()).expired).toBe(1);
    for (const s of [a, b]) {
      expect((await expectCallError(() => s.secrets.accessSecret({ name: "by_time" }, t))).code).toBe(status.NOT_FOUND);
      expect((await expectCallError(() => s.secrets.resolveSecrets({ names: ["by_time"] }, t))).code).toBe(status.NOT_FOUND);
    }
    const [binned] = (await a.secrets.listSecrets({ showDeleted: true }, t)).secrets;
    expect(binned).toMatchObject({ id: byTime.id, name: "by_time" });
    expect(timestampDate(binned!.deleteTime!).getTime()).toBe(clock.now);
    expect(timestampDate(binned!.purgeTime!).getTime()).toBe(clock.now + 2 * DAY_MS); // SECRETS_RECOVERY_WINDOW_DAYS

    clock.now += HOUR_MS;
    expect((await runBoth()).expired).toBe(1);
    expect((await a.secrets.listSecrets({}, t)).secrets.map((s) => s.name)).toEqual(["forever"]);
    await vi.waitFor(async () => expect(await eventsOf(dev, "ExpireSecret")).toHaveLength(2), { timeout: 5_000 });
    const events = await eventsOf(dev, "ExpireSecret");
    expect(events.map((e) => e.secretName).sort()).toEqual(["by_time", "by_ttl"]);
    expect(new Set(events.map((e) => e.callerSubject))).toEqual(new Set(["(expiry)"]));

    // A restore brings it back without the expiry that has passed.
    const restored = (await b.secrets.restoreSecret({ name: "by_time" }, t)).secret!;
    expect(restored.expireTime).toBeUndefined();
    expect((await a.secrets.accessSecret({ name: "by_time" }, t)).value).toBe("v");
    expect((await runBoth()).expired).toBe(0);
  });

  it("an update sets, moves and clears an expiry; bad times fail INVALID_ARGUMENT and change nothing", async () => {
    const t = await a.token(developer());
    await a.secrets.createSecret({ name: "k", value: "v", expiration: { case: "ttl", value: durationFromMs(HOUR_MS) } }, t);
    const moved = (await a.secrets.updateSecret({ name: "k", expiration: { case: "expireTime", value: at(clock.now + DAY_MS) } }, t)).secret!;
    expect(timestampDate(moved.expireTime!).getTime()).toBe(clock.now + DAY_MS);
    expect(moved.version).toBe(1);

    const refused: [Record<string, unknown>, string][] = [
      [{ expiration: { case: "expireTime", value: at(clock.now) } }, "expire_time"],
      [{ expiration: { case: "expireTime", value: at(clock.now + 36_501 * DAY_MS) } }, "expire_time"],
      [{ expiration: { case: "ttl", value: durationFromMs(999) } }, "ttl"],
      [{ expiration: { case: "ttl", value: durationFromMs(-HOUR_MS) } }, "ttl"],
      [{ expiration: { case: "clearExpiration", value: false } }, "clear_expiration"],
      [{ rotationChange: { case: "rotation", value: { rotationPeriod: durationFromMs(HOUR_MS - 1000) } } }, "rotation.rotation_period"],
      [{ rotationChange: { case: "rotation", value: { rotationPeriod: durationFromMs(HOUR_MS + 500) } } }, "rotation.rotation_period"],
      [{ rotationChange: { case: "rotation", value: {} } }, "rotation.rotation_period"],
      [
        { rotationChange: { case: "rotation", value: { rotationPeriod: durationFromMs(HOUR_MS), nextRotationTime: at(clock.now - 1) } } },
        "rotation.next_rotation_time",
      ],
    ];
    for (const [change, field] of refused) {
      const e = await expectCallError(() => a.secrets.updateSecret({ name: "k", ...change }, t));
      expect([e.code, e.reason, e.errorInfo?.metadata["field"]]).toEqual([status.INVALID_ARGUMENT, "INVALID_ARGUMENT", field]);
    }
    const unchanged = (await a.secrets.getSecret({ name: "k" }, t)).secret!;
    expect([unchanged.expireTime, unchanged.rotation]).toEqual([moved.expireTime, undefined]);
    const e = await expectCallError(() =>
      a.secrets.createSecret({ name: "late", value: "v", expiration: { case: "expireTime", value: at(clock.now - DAY_MS) } }, t),
    );
    expect(e.code).toBe(status.INVALID_ARGUMENT);
    expect((await expectCallError(() => a.secrets.getSecret({ name: "late" }, t))).code).toBe(status.NOT_FOUND);

    const cleared = (await b.secrets.updateSecret({ name: "k", expiration: { case: "clearExpiration", value: true } }, t)).secret!;
    expect(cleared.expireTime).toBeUndefined();
    clock.now += 2 * DAY_MS;
    await runBoth();
    expect((await a.secrets.accessSecret({ name: "k" }, t)).value).toBe("v");
  });

  it("a rotation schedule records one RotationDue per period, stays due until a new value, and catches up once", async () => {
    const dev = developer();
    const t = await a.token(dev);
    const start = clock.now;
    const created = (await a.secrets.createSecret({ name: "api_key", value: "v1", rotation: { rotationPeriod: durationFromMs(HOUR_MS) } }, t)).secret!;
    expect(timestampDate(created.rotation!.nextRotationTime!).getTime()).toBe(start + HOUR_MS);
    expect(created.rotation!.rotationPeriod?.seconds).toBe(3600n);
    expect(created.rotation!.dueTime).toBeUndefined();
    await a.secrets.createSecret({ name: "other", value: "v" }, t);
    const due = async () => (await b.secrets.listSecrets({ rotationDue: true }, t)).secrets.map((s) => s.name);
    expect(await due()).toEqual([]);

    clock.now = start + HOUR_MS;
    // Due by its time before any job has run.
    expect(await due()).toEqual(["api_key"]);
    expect((await runBoth()).rotationsDue).toBe(1);
    expect((await runBoth()).rotationsDue).toBe(0);
    let rotation = (await a.secrets.getSecret({ name: "api_key" }, t)).secret!.rotation!;
    expect(timestampDate(rotation.dueTime!).getTime()).toBe(start + HOUR_MS);
    expect(timestampDate(rotation.nextRotationTime!).getTime()).toBe(start + 2 * HOUR_MS);

    clock.now = start + 2 * HOUR_MS + 1;
    expect((await runBoth()).rotationsDue).toBe(1);
    rotation = (await a.secrets.getSecret({ name: "api_key" }, t)).secret!.rotation!;
    expect(timestampDate(rotation.dueTime!).getTime()).toBe(start + HOUR_MS); // still the first unanswered one
    expect(await due()).toEqual(["api_key"]);

    // A new value answers it; the schedule keeps its times.
    const rotated = (await b.secrets.updateSecret({ name: "api_key", value: "v2" }, t)).secret!;
    expect(rotated.rotation!.dueTime).toBeUndefined();
    expect(timestampDate(rotated.rotation!.nextRotationTime!).getTime()).toBe(start + 3 * HOUR_MS);
    expect(await due()).toEqual([]);

    // Five periods pass unattended: one event, and the next time is the first one ahead.
    clock.now = start + 7 * HOUR_MS + 30 * 60_000;
    expect((await runBoth()).rotationsDue).toBe(1);
    rotation = (await a.secrets.getSecret({ name: "api_key" }, t)).secret!.rotation!;
    expect(timestampDate(rotation.nextRotationTime!).getTime()).toBe(start + 8 * HOUR_MS);
    expect(timestampDate(rotation.dueTime!).getTime()).toBe(start + 3 * HOUR_MS);

    await vi.waitFor(async () => expect(await eventsOf(dev, "RotationDue")).toHaveLength(3), { timeout: 5_000 });
    const events = await eventsOf(dev, "RotationDue");
    expect(new Set(events.map((e) => `${e.secretName}/${e.callerSubject}`))).toEqual(new Set(["api_key/(rotation)"]));

    // Replacing the schedule starts its due state afresh; clearing it removes it.
    const replaced = (
      await a.secrets.updateSecret(
        { name: "api_key", rotationChange: { case: "rotation", value: { rotationPeriod: durationFromMs(DAY_MS), nextRotationTime: at(clock.now + HOUR_MS) } } },
        t,
      )
    ).secret!;
    expect([replaced.rotation!.dueTime, replaced.rotation!.rotationPeriod?.seconds]).toEqual([undefined, 86_400n]);
    expect(timestampDate(replaced.rotation!.nextRotationTime!).getTime()).toBe(clock.now + HOUR_MS);
    const cleared = (await a.secrets.updateSecret({ name: "api_key", rotationChange: { case: "clearRotation", value: true } }, t)).secret!;
    expect(cleared.rotation).toBeUndefined();
    clock.now += 3 * DAY_MS;
    expect((await runBoth()).rotationsDue).toBe(0);
  });

  it("expiry, rotation and purge while the developer writes: each secret expires once and is purged once", async () => {
    const dev = developer();
    const t = await a.token(dev);
    const names = Array.from({ length: 30 }, (_, i) => `w${i}`);
    for (const name of names) {
      await a.secrets.createSecret(
        { name, value: "v0", expiration: { case: "ttl", value: durationFromMs(HOUR_MS) }, rotation: { rotationPeriod: durationFromMs(HOUR_MS), nextRotationTime: at(clock.now + HOUR_MS - 1) } },
        t,
      );
    }
    clock.now += HOUR_MS - 1;
    // Writers on both replicas race the jobs: rotations are due now, expiries one
    // millisecond later. A row a write holds is skipped and changed by a later pass.
    const writing = async <T>(run: () => Promise<T>): Promise<T> => {
      let stop = false;
      const writer = async (s: TestService, seed: number) => {
        const outcomes: string[] = [];
        for (let i = seed; !stop; i++) {
          const name = names[i % names.length]!;
          outcomes.push(await s.secrets.updateSecret({ name, value: `v${i}` }, t).then(() => "ok", (e: { reason?: string }) => e.reason ?? "error"));
        }
        return outcomes;
      };
      const writers = [writer(a, 0), writer(b, 7)];
      try {
        return await run();
      } finally {
        stop = true;
        const outcomes = (await Promise.all(writers)).flat();
        expect(outcomes.filter((o) => o !== "ok" && o !== "SECRET_NOT_FOUND")).toEqual([]);
      }
    };
    let rotations = (await writing(runBoth)).rotationsDue;
    rotations += (await runBoth()).rotationsDue;
    expect(rotations).toBe(30);
    clock.now += 1;
    let expired = (await writing(runBoth)).expired;
    expired += (await runBoth()).expired;
    expect(expired).toBe(30);
    expect((await a.secrets.listSecrets({}, t)).secrets).toEqual([]);
    expect((await b.secrets.listSecrets({ showDeleted: true, pageSize: 100 }, t)).secrets).toHaveLength(30);

    clock.now += 2 * DAY_MS;
    expect((await runBoth()).purged).toBe(30);
    expect((await a.secrets.listSecrets({ showDeleted: true }, t)).secrets).toEqual([]);
    await vi.waitFor(async () => expect(await eventsOf(dev, "PurgeSecret")).toHaveLength(30), { timeout: 5_000 });
    expect(await eventsOf(dev, "ExpireSecret")).toHaveLength(30);
    expect(await eventsOf(dev, "RotationDue")).toHaveLength(30);
  });
});

describe("the lifecycle job's timer", () => {
  let svc: TestService;

  beforeAll(async () => {
    svc = await startTestService({ SECRETS_WRITE_RATE: "0" });
  });

  afterAll(async () => {
    await svc?.stop();
  });

  it("expires a secret when its time comes, not at the next minute's pass", async () => {
    const t = await svc.token(developer());
    await svc.secrets.createSecret({ name: "short", value: "v", expiration: { case: "ttl", value: durationFromMs(1_000) } }, t);
    expect((await svc.secrets.accessSecret({ name: "short" }, t)).value).toBe("v");
    await vi.waitFor(
      async () => expect((await expectCallError(() => svc.secrets.accessSecret({ name: "short" }, t))).code).toBe(status.NOT_FOUND),
      { timeout: 10_000, interval: 100 },
    );
    expect((await svc.secrets.listSecrets({ showDeleted: true }, t)).secrets.map((s) => s.name)).toEqual(["short"]);
  });

  function developer() {
    return `timer-${randomUUID()}`;
  }
});
