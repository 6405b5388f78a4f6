import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SecretsClient } from "@secrets-service/client";
import { startTestService, type TestService } from "../support/fixtures.js";
import { all, callsOf, expectSecretsError, randomValue } from "./client-fixtures.js";

// The SDK's lifecycle calls over real gRPC against the real service: the recovery
// bin (delete, force, list deleted, restore by name and by id), expiry and rotation
// schedules (create, update, clear, list filters), and the inputs the SDK refuses
// before sending. Each test acts as its own developer.

const DAY_MS = 86_400_000;
const HOUR_MS = 3_600_000;

let svc: TestService;
/** How far the service's clock runs ahead of the real one; tests move it instead of sleeping. */
let clockOffsetMs = 0;
const now = () => Date.now() + clockOffsetMs;

beforeAll(async () => {
  svc = await startTestService({}, { clock: () => new Date(now()), lifecycleJobs: "manual" });
});

afterAll(async () => {
  await svc?.stop();
});

describe("the recovery bin", () => {
  it("delete bins a secret: its name is free at once, list({ deleted }) shows it, restore brings it back whole", async () => {
    const client = await svc.connectClient("sdk-bin");
    const v1 = randomValue("bin1");
    const v2 = randomValue("bin2");
    const original = await client.secrets.create({ name: "api_key", value: v1, description: "old" });
    await client.secrets.update("api_key", { value: v2 });
    const before = Date.now();
    await client.secrets.delete("api_key", { recoveryWindowDays: 3 });

    expect(await expectSecretsError(() => client.secrets.get("api_key"))).toMatchObject({ code: status.NOT_FOUND, reason: "SECRET_NOT_FOUND" });
    expect(await all(client.secrets.list())).toEqual([]);
    const [binned, ...more] = await all(client.secrets.list({ deleted: true }));
    expect(more).toEqual([]);
    expect(binned).toMatchObject({ id: original.id, name: "api_key", version: 2, description: "old" });
    expect(binned?.deleteTime?.getTime()).toBeGreaterThanOrEqual(before - 5_000);
    expect((binned?.purgeTime?.getTime() ?? 0) - (binned?.deleteTime?.getTime() ?? 0)).toBe(3 * DAY_MS);
    expect(JSON.stringify(binned)).not.toContain(v2);

    // The name is free: a new secret at version 1, and restoring by name is refused while it lives.
    const newer = await client.secrets.create({ name: "api_key", value: randomValue("new") });
    expect(newer).toMatchObject({ version: 1 });
    expect(newer.id).not.toBe(original.id);
    const taken = await expectSecretsError(() => client.secrets.restore({ name: "api_key" }));
    expect(taken).toMatchObject({ code: status.ALREADY_EXISTS, reason: "RESTORE_NAME_TAKEN" });
    const takenById = await expectSecretsError(() => client.secrets.restore({ id: original.id }));
    expect(takenById).toMatchObject({ code: status.ALREADY_EXISTS, reason: "RESTORE_NAME_TAKEN" });

    // Once the newer one is gone for good, the original comes back by id with its versions and values.
    await client.secrets.delete("api_key", { force: true });
    const restored = await client.secrets.restore({ id: original.id });
    expect(restored).toMatchObject({ id: original.id, name: "api_key", version: 2, description: "old" });
    expect(restored.deleteTime).toBeUndefined();
    expect(restored.purgeTime).toBeUndefined();
    expect(await client.secrets.access("api_key")).toEqual({ name: "api_key", version: 2, value: v2 });
    expect(await client.secrets.access("api_key", { version: 1 })).toEqual({ name: "api_key", version: 1, value: v1 });
    expect(await all(client.secrets.list({ deleted: true }))).toEqual([]);
  });

  it("restore by name takes the most recently deleted secret of that name", async () => {
    const client = await svc.connectClient("sdk-bin-latest");
    const first = await client.secrets.create({ name: "token", value: randomValue("first") });
    await client.secrets.delete("token");
    const second = await client.secrets.create({ name: "token", value: randomValue("second") });
    await client.secrets.delete("token");
    expect((await all(client.secrets.list({ deleted: true }))).map((s) => s.id).sort()).toEqual([first.id, second.id].sort());

    expect(await client.secrets.restore({ name: "token" })).toMatchObject({ id: second.id, name: "token" });
    expect((await all(client.secrets.list({ deleted: true }))).map((s) => s.id)).toEqual([first.id]);
  });

  it("force deletes at once, and force with a window is refused with nothing deleted", async () => {
    const client = await svc.connectClient("sdk-force");
    await client.secrets.create({ name: "leaked", value: randomValue("leaked") });

    const both = await expectSecretsError(() => client.secrets.delete("leaked", { force: true, recoveryWindowDays: 2 }));
    expect(both).toMatchObject({ code: status.INVALID_ARGUMENT, reason: "INVALID_ARGUMENT", metadata: { field: "force" } });
    expect(await client.secrets.get("leaked")).toMatchObject({ name: "leaked" });

    await client.secrets.delete("leaked", { force: true });
    expect(await all(client.secrets.list({ deleted: true }))).toEqual([]);
    const gone = await expectSecretsError(() => client.secrets.restore({ name: "leaked" }));
    expect(gone).toMatchObject({ code: status.NOT_FOUND, reason: "SECRET_NOT_FOUND" });
  });

  it("restore with a cache: the restored value is read at once, not an older one cached under the name", async () => {
    const client = await svc.connectClient("sdk-bin-cache", { cache: { ttlMs: 60_000 } });
    const other = await svc.connectClient("sdk-bin-cache");
    const kept = randomValue("kept");
    const original = await client.secrets.create({ name: "db_url", value: kept });
    await client.secrets.delete("db_url");
    // Another client re-creates the name; this one caches that secret's value, then it is deleted for good.
    await other.secrets.create({ name: "db_url", value: randomValue("interim") });
    await client.secrets.access("db_url");
    await other.secrets.delete("db_url", { force: true });

    await client.secrets.restore({ id: original.id });
    expect(await client.secrets.access("db_url")).toMatchObject({ value: kept });
  });
});

describe("expiry", () => {
  it("create with ttlSeconds or expireTime, update to another or to none; get and list show it, expiresBefore filters", async () => {
    const client = await svc.connectClient("sdk-expiry");
    const before = now();
    const short = await client.secrets.create({ name: "short", value: randomValue("short"), ttlSeconds: 3_600 });
    const after = now();
    expect(short.expireTime?.getTime()).toBeGreaterThanOrEqual(before + HOUR_MS);
    expect(short.expireTime?.getTime()).toBeLessThanOrEqual(after + HOUR_MS);
    const at = new Date(now() + 10 * DAY_MS);
    expect((await client.secrets.create({ name: "long", value: randomValue("long"), expireTime: at })).expireTime).toEqual(at);
    const never = await client.secrets.create({ name: "never", value: randomValue("never") });
    expect(never.expireTime).toBeUndefined();
    expect("expireTime" in never).toBe(false);
    expect(await client.secrets.get("short")).toEqual(short);

    const names = async (filter: { expiresBefore: Date }) => (await all(client.secrets.list(filter))).map((s) => s.name);
    expect(await names({ expiresBefore: new Date(now() + DAY_MS) })).toEqual(["short"]);
    expect(await names({ expiresBefore: new Date(now() + 30 * DAY_MS) })).toEqual(["long", "short"]);

    expect((await client.secrets.update("long", { expireTime: null })).expireTime).toBeUndefined();
    const later = await client.secrets.update("never", { ttlSeconds: 60 });
    expect(later.expireTime?.getTime()).toBeGreaterThan(now());
    expect(later.version).toBe(1);
    expect(await names({ expiresBefore: new Date(now() + 30 * DAY_MS) })).toEqual(["never", "short"]);
  });

  it("the service refuses an expiry in the past, a ttl under a second and one beyond 36,500 days, naming the field", async () => {
    const client = await svc.connectClient("sdk-expiry-bad");
    const cases: [() => Promise<unknown>, string][] = [
      [() => client.secrets.create({ name: "x", value: "v", expireTime: new Date(now() - 1_000) }), "expire_time"],
      [() => client.secrets.create({ name: "x", value: "v", expireTime: new Date(now() + 36_501 * DAY_MS) }), "expire_time"],
      [() => client.secrets.create({ name: "x", value: "v", ttlSeconds: 0 }), "ttl"],
      [() => client.secrets.create({ name: "x", value: "v", ttlSeconds: 36_501 * 86_400 }), "ttl"],
    ];
    for (const [call, field] of cases) {
      expect(await expectSecretsError(call)).toMatchObject({ code: status.INVALID_ARGUMENT, reason: "INVALID_ARGUMENT", metadata: { field } });
    }
    expect(await all(client.secrets.list())).toEqual([]);
  });

  it("at its expiry a secret goes to the recovery bin, and restore brings it back", async () => {
    const client = await svc.connectClient("sdk-expired");
    const value = randomValue("expiring");
    const created = await client.secrets.create({ name: "expiring", value, ttlSeconds: 60 });
    clockOffsetMs += 61_000;
    await svc.service.runLifecycleJobs();

    expect(await expectSecretsError(() => client.secrets.get("expiring"))).toMatchObject({ reason: "SECRET_NOT_FOUND" });
    const [binned] = await all(client.secrets.list({ deleted: true }));
    expect(binned).toMatchObject({ id: created.id, name: "expiring" });
    expect(binned?.deleteTime?.getTime()).toBeGreaterThanOrEqual(created.expireTime?.getTime() ?? Number.NaN);

    const restored = await client.secrets.restore({ id: created.id });
    expect(restored).toMatchObject({ id: created.id, version: 1 });
    // Its expiry has passed, so the restored secret no longer expires (else the next pass would bin it again).
    expect(restored.expireTime).toBeUndefined();
    expect(await client.secrets.access("expiring")).toMatchObject({ value });
    await svc.service.runLifecycleJobs();
    expect(await client.secrets.get("expiring")).toMatchObject({ id: created.id });
  });
});

describe("rotation schedules", () => {
  it("create and update set a schedule, null removes it; a passed time is due until a new value is written", async () => {
    const client = await svc.connectClient("sdk-rotation");
    const before = now();
    const daily = await client.secrets.create({ name: "daily", value: randomValue("daily"), rotation: { periodSeconds: 86_400 } });
    const after = now();
    expect(daily.rotation?.periodSeconds).toBe(86_400);
    expect(daily.rotation?.nextRotationTime.getTime()).toBeGreaterThanOrEqual(before + DAY_MS);
    expect(daily.rotation?.nextRotationTime.getTime()).toBeLessThanOrEqual(after + DAY_MS);
    expect(daily.rotation?.dueTime).toBeUndefined();
    const first = new Date(now() + HOUR_MS);
    const hourly = await client.secrets.create({ name: "hourly", value: randomValue("h1"), rotation: { periodSeconds: 7_200, nextRotationTime: first } });
    expect(hourly.rotation).toEqual({ periodSeconds: 7_200, nextRotationTime: first });

    const due = async () => (await all(client.secrets.list({ rotationDue: true }))).map((s) => s.name);
    expect(await due()).toEqual([]);

    clockOffsetMs += HOUR_MS + 1_000;
    expect(await due()).toEqual(["hourly"]);
    await svc.service.runLifecycleJobs();
    const reminded = await client.secrets.get("hourly");
    expect(reminded.rotation?.dueTime?.getTime()).toBeGreaterThanOrEqual(first.getTime());
    expect(reminded.rotation?.nextRotationTime).toEqual(new Date(first.getTime() + 7_200_000));
    expect(await due()).toEqual(["hourly"]);

    const rotated = await client.secrets.update("hourly", { value: randomValue("h2") });
    expect(rotated.rotation?.dueTime).toBeUndefined();
    expect(rotated.rotation?.nextRotationTime).toEqual(reminded.rotation?.nextRotationTime);
    expect(await due()).toEqual([]);

    expect((await client.secrets.update("daily", { rotation: null })).rotation).toBeUndefined();
    const replaced = await client.secrets.update("hourly", { rotation: { periodSeconds: 3_600 } });
    expect(replaced.rotation?.periodSeconds).toBe(3_600);
  });

  it("the service refuses a period under an hour or in fractions of a second, and a first time in the past", async () => {
    const client = await svc.connectClient("sdk-rotation-bad");
    const cases: [() => Promise<unknown>, string][] = [
      [() => client.secrets.create({ name: "x", value: "v", rotation: { periodSeconds: 3_599 } }), "rotation.rotation_period"],
      [() => client.secrets.create({ name: "x", value: "v", rotation: { periodSeconds: 3_600.5 } }), "rotation.rotation_period"],
      [() => client.secrets.create({ name: "x", value: "v", rotation: { periodSeconds: 3_600, nextRotationTime: new Date(now() - 1_000) } }), "rotation.next_rotation_time"],
    ];
    for (const [call, field] of cases) {
      expect(await expectSecretsError(call)).toMatchObject({ code: status.INVALID_ARGUMENT, reason: "INVALID_ARGUMENT", metadata: { field } });
    }
  });
});

describe("inputs the SDK refuses before sending", () => {
  it("an expiry given twice, or an invalid Date, is INVALID_ARGUMENT (REQUEST_UNENCODABLE) and never reaches the service", async () => {
    const developer = "sdk-refused";
    const client: SecretsClient = await svc.connectClient(developer);
    const soon = new Date(Date.now() + DAY_MS);
    const refused = [
      () => client.secrets.create({ name: "x", value: "v", expireTime: soon, ttlSeconds: 60 }),
      () => client.secrets.create({ name: "x", value: "v", expireTime: new Date(Number.NaN) }),
      () => client.secrets.create({ name: "x", value: "v", rotation: { periodSeconds: Number.POSITIVE_INFINITY } }),
      () => client.secrets.update("x", { expireTime: null, ttlSeconds: 60 }),
      () => client.secrets.update("x", { rotation: { periodSeconds: 7_200, nextRotationTime: new Date("not a date") } }),
      () => all(client.secrets.list({ expiresBefore: new Date(Number.NaN) })),
    ];
    for (const call of refused) {
      const e = await expectSecretsError(call);
      expect(e).toMatchObject({ code: status.INVALID_ARGUMENT, reason: "REQUEST_UNENCODABLE" });
    }
    expect(["CreateSecret", "UpdateSecret", "ListSecrets"].flatMap((m) => callsOf(svc.logs, m, developer))).toEqual([]);
  });
});
