import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { toJsonString, type MessageInitShape } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WatchEventType, WatchSecretsRequestSchema, WatchSecretsResponseSchema, type WatchSecretsResponse } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { expectCallError, startTestService, type TestService } from "../support/fixtures.js";
import { startServicePair, type ServicePair } from "../support/service-pair.js";
import { openWatch, type WatchStream } from "../support/watch-stream.js";

// WatchSecrets over real gRPC. On Postgres (DATABASE_URL) the watcher and the writer
// are two services in this process, each with its own pool, so an event reaches the
// watcher only through the database's LISTEN/NOTIFY; on the embedded database one
// service plays both parts (PGlite's own notifications).

const T = WatchEventType;
const HOUR_MS = 3_600_000;

describe("WatchSecrets", () => {
  let writer: TestService;
  let watcher: TestService;
  let pair: ServicePair | undefined;
  const clock = { now: Date.now() };
  const options = { clock: () => new Date(clock.now), lifecycleJobs: "manual" as const };
  const env = {
    SECRETS_WRITE_RATE: "0",
    SECRETS_READ_RATE: "0",
    SECRETS_WATCH_MAX_PER_DEVELOPER: "3",
    SECRETS_WATCH_RETENTION_HOURS: "1",
    SECRETS_WATCH_PROGRESS_SECONDS: "1",
  };

  beforeAll(async () => {
    pair = await startServicePair(env, options);
    ({ a: writer, b: watcher } = pair);
  });

  afterAll(async () => {
    await pair?.stop();
  });

  const developer = () => `watch-${randomUUID()}`;
  /** The next response that carries events, skipping progress responses. */
  const nextEvents = async (w: WatchStream) => {
    for (;;) {
      const r = await w.next();
      if (r.events.length > 0) return r;
    }
  };
  const brief = (r: WatchSecretsResponse) => r.events.map((e) => [T[e.type], e.name, e.version]);

  it("starts with a snapshot, then sends each change on another replica in order, never a value", async () => {
    const t = await writer.token(developer());
    await writer.secrets.createSecret({ name: "db_password", value: "VALUE-MARKER-1" }, t);
    const w = openWatch(watcher.secrets, { names: ["db_password", "api_key"] }, t);
    const first = await w.next();
    expect(first.snapshot?.secrets.map((s) => [s.name, s.version])).toEqual([["db_password", 1]]);
    const start = first.revision;
    expect(start).toBe(1n);
    // The first response states the progress interval (SECRETS_WATCH_PROGRESS_SECONDS); later ones do not.
    expect(first.progressInterval?.seconds).toBe(1n);

    await writer.secrets.updateSecret({ name: "db_password", value: "VALUE-MARKER-2" }, t);
    await writer.secrets.createSecret({ name: "unwatched", value: "VALUE-MARKER-3" }, t);
    await writer.secrets.createSecret({ name: "api_key", value: "VALUE-MARKER-4" }, t);
    await writer.secrets.updateSecret({ name: "db_password", value: "VALUE-MARKER-5" }, t);
    await writer.secrets.destroySecretVersion({ name: "db_password", version: 1 }, t);
    await writer.secrets.deleteSecret({ name: "api_key" }, t);
    await writer.secrets.restoreSecret({ name: "api_key" }, t);
    await writer.secrets.updateSecret({ name: "db_password", description: "attributes only: no event" }, t);

    const seen: WatchSecretsResponse[] = [];
    while (seen.flatMap((r) => r.events).length < 6) seen.push(await nextEvents(w));
    const events = seen.flatMap((r) => r.events);
    expect(seen.filter((r) => r.progressInterval !== undefined)).toEqual([]);
    expect(events.map((e) => [T[e.type], e.name, e.version])).toEqual([
      ["UPDATED", "db_password", 2],
      ["CREATED", "api_key", 1],
      ["UPDATED", "db_password", 3],
      ["VERSION_DESTROYED", "db_password", 1],
      ["DELETED", "api_key", 1],
      ["CREATED", "api_key", 1],
    ]);
    // Revisions count every change of the developer, in order: the unwatched create is the gap.
    expect(events.map((e) => e.revision)).toEqual([2n, 4n, 5n, 6n, 7n, 8n].map((n) => n + start - 1n));
    for (const r of seen) expect(toJsonString(WatchSecretsResponseSchema, r)).not.toContain("VALUE-MARKER");
    w.cancel();
    expect(await w.ended).toBeUndefined();
  });

  it("tells of an expiry (DELETED) and a due rotation (ROTATION_DUE) the lifecycle job makes", async () => {
    const t = await writer.token(developer());
    await writer.secrets.createSecret({ name: "short", value: "v", expiration: { case: "ttl", value: durationFromMs(HOUR_MS) } }, t);
    await writer.secrets.createSecret({ name: "rotated", value: "v", rotation: { rotationPeriod: durationFromMs(HOUR_MS) } }, t);
    const w = openWatch(watcher.secrets, {}, t);
    await w.next();
    clock.now += HOUR_MS;
    await writer.service.runLifecycleJobs();
    const events = [...(await nextEvents(w)).events];
    while (events.length < 2) events.push(...(await nextEvents(w)).events);
    expect(events.map((e) => [T[e.type], e.name]).sort()).toEqual([
      ["DELETED", "short"],
      ["ROTATION_DUE", "rotated"],
    ]);
    w.cancel();
  });

  it("resumes after a revision with what the log holds, and refuses one it no longer holds or never had", async () => {
    const t = await writer.token(developer());
    await writer.secrets.createSecret({ name: "a_one", value: "v" }, t);
    const w = openWatch(watcher.secrets, { namePrefix: "a_" }, t);
    const at = (await w.next()).revision;
    w.cancel();
    await writer.secrets.createSecret({ name: "a_two", value: "v" }, t);
    await writer.secrets.createSecret({ name: "b_other", value: "v" }, t);
    await writer.secrets.updateSecret({ name: "a_one", value: "v2" }, t);

    const resumed = openWatch(watcher.secrets, { namePrefix: "a_", startRevision: at }, t);
    const replay = await nextEvents(resumed);
    expect(replay.snapshot).toBeUndefined();
    expect(brief(replay)).toEqual([
      ["CREATED", "a_two", 1],
      ["UPDATED", "a_one", 2],
    ]);
    expect(replay.revision).toBe(at + 3n);
    resumed.cancel();

    const ahead = openWatch(watcher.secrets, { startRevision: at + 100n }, t);
    expect(await ahead.ended).toMatchObject({ code: status.FAILED_PRECONDITION, reason: "REVISION_UNAVAILABLE" });

    // Past SECRETS_WATCH_RETENTION_HOURS the job trims the log; an open watch that fell behind ends too.
    clock.now += 2 * HOUR_MS;
    const trimmed = await writer.service.runLifecycleJobs();
    expect(trimmed.changesTrimmed).toBeGreaterThanOrEqual(4);
    const old = openWatch(watcher.secrets, { namePrefix: "a_", startRevision: at }, t);
    const refused = await old.ended;
    expect(refused).toMatchObject({ code: status.FAILED_PRECONDITION, reason: "REVISION_UNAVAILABLE" });
    expect(refused?.errorInfo?.metadata["compacted_revision"]).toBe(String(at + 3n));
    // From the last revision it is fine: nothing to replay, and then live.
    const fresh = openWatch(watcher.secrets, { namePrefix: "a_", startRevision: at + 3n }, t);
    await writer.secrets.createSecret({ name: "a_three", value: "v" }, t);
    expect(brief(await nextEvents(fresh))).toEqual([["CREATED", "a_three", 1]]);
    fresh.cancel();
  });

  it("never skips or reorders a change: concurrent writers on both replicas, one gap-free sequence", async () => {
    const t = await writer.token(developer());
    const w = openWatch(watcher.secrets, {}, t);
    const start = (await w.next()).revision;
    const perWriter = 25;
    const write = async (s: TestService, tag: string) => {
      for (let i = 0; i < perWriter; i++) {
        const name = `${tag}_${i % 5}`;
        if (i < 5) await s.secrets.createSecret({ name, value: "v" }, t);
        else await s.secrets.updateSecret({ name, value: `v${i}` }, t);
      }
    };
    await Promise.all([write(writer, "x"), write(watcher, "y"), write(writer, "z")]);
    const events = [];
    while (events.length < 3 * perWriter) events.push(...(await nextEvents(w)).events);
    expect(events.map((e) => e.revision)).toEqual(Array.from({ length: 3 * perWriter }, (_, i) => start + BigInt(i + 1)));
    // Per name, versions arrive in order.
    const versions = new Map<string, number[]>();
    for (const e of events) versions.set(e.name, [...(versions.get(e.name) ?? []), e.version]);
    for (const [, vs] of versions) expect(vs).toEqual(vs.map((_, i) => i + 1));
    w.cancel();
  });

  it("applies the allowlist and the scope, refuses bad requests, and sends progress when idle", async () => {
    const dev = developer();
    const narrow = await writer.token(dev, { allowlist: ["ok_one"] });
    const full = await writer.token(dev);
    expect((await expectCallError(() => openWatch(watcher.secrets, { names: ["ok_two"] }, narrow).ended.then((e) => Promise.reject(e)))).reason).toBe(
      "NOT_ALLOWLISTED",
    );
    const w = openWatch(watcher.secrets, { namePrefix: "ok_" }, narrow);
    const first = await w.next();
    await writer.secrets.createSecret({ name: "ok_two", value: "v" }, full);
    await writer.secrets.createSecret({ name: "ok_one", value: "v" }, full);
    expect(brief(await nextEvents(w))).toEqual([["CREATED", "ok_one", 1]]);
    // Idle: a progress response (no events) within the progress interval, at the latest revision.
    const progress = await w.next(5_000);
    expect(progress.events).toEqual([]);
    expect(progress.revision).toBe(first.revision + 2n);
    w.cancel();

    const noScope = await writer.token(dev, { scopes: ["secrets:access"] });
    const refused: [MessageInitShape<typeof WatchSecretsRequestSchema>, string, string][] = [
      [{}, noScope, "SCOPE_MISSING"],
      [{ names: ["a"], namePrefix: "a" }, full, "INVALID_ARGUMENT"],
      [{ names: ["bad name"] }, full, "INVALID_NAME"],
      [{ startRevision: -1n }, full, "INVALID_ARGUMENT"],
    ];
    for (const [request, token, reason] of refused) {
      const ended = await openWatch(watcher.secrets, request, token).ended;
      expect(ended?.reason).toBe(reason);
    }
  });

  it("limits the watches a developer holds on a replica (RESOURCE_EXHAUSTED) and frees them when they end", async () => {
    const t = await writer.token(developer());
    const open = [1, 2, 3].map(() => openWatch(watcher.secrets, {}, t));
    for (const w of open) await w.next();
    const fourth = await openWatch(watcher.secrets, {}, t).ended;
    expect(fourth).toMatchObject({ code: status.RESOURCE_EXHAUSTED, reason: "TOO_MANY_WATCHES" });
    open[0]!.cancel();
    await open[0]!.ended;
    await expect.poll(async () => {
      const again = openWatch(watcher.secrets, {}, t);
      const r = await again.next().then(() => "ok", (e: { reason?: string }) => e.reason);
      again.cancel();
      return r;
    }).toBe("ok");
    for (const w of open) w.cancel();
  });

  it("a shred ends the developer's watches with REVISION_UNAVAILABLE, so clients start over", async () => {
    const dev = developer();
    const t = await writer.token(dev);
    await writer.secrets.createSecret({ name: "doomed", value: "v" }, t);
    const w = openWatch(watcher.secrets, {}, t);
    await w.next();
    const operator = await writer.token("ops", { scopes: ["secrets:operator"] });
    await writer.keys.shredDeveloper({ developerId: dev, confirmDeveloperId: dev }, operator);
    expect(await w.ended).toMatchObject({ code: status.FAILED_PRECONDITION, reason: "REVISION_UNAVAILABLE" });
    const again = openWatch(watcher.secrets, {}, t);
    expect((await again.next()).snapshot?.secrets ?? []).toEqual([]);
    again.cancel();
  });
});

describe("WatchSecrets resumed with nothing to replay", () => {
  it("says at once that it has caught up, long before its first progress tick", async () => {
    // No progress tick within the test: only the caught-up response can arrive.
    const svc = await startTestService({ SECRETS_WATCH_PROGRESS_SECONDS: "3600" });
    try {
      const t = await svc.token(`caught-up-${randomUUID()}`);
      await svc.secrets.createSecret({ name: "only", value: "v" }, t);
      const w = openWatch(svc.secrets, { startRevision: 1n }, t);
      const first = await w.next(5_000);
      expect([first.snapshot, first.events, first.revision]).toEqual([undefined, [], 1n]);
      w.cancel();
    } finally {
      await svc.stop();
    }
  });
});

describe("WatchSecrets on shutdown", () => {
  it("ends open watches with UNAVAILABLE (SHUTTING_DOWN) when the server stops", async () => {
    const svc = await startTestService({});
    try {
      const t = await svc.token(`stop-${randomUUID()}`);
      const w = openWatch(svc.secrets, {}, t);
      await w.next();
      const stopped = svc.service.stop();
      expect(await w.ended).toMatchObject({ code: status.UNAVAILABLE, reason: "SHUTTING_DOWN" });
      await stopped;
    } finally {
      await svc.stop();
    }
  });
});
