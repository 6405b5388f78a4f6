import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { timestampDate } from "@bufbuild/protobuf/wkt";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectCallError, startTestService, type TestService } from "../support/fixtures.js";

// The recovery bin over real gRPC, on Postgres when DATABASE_URL is set, else PGlite:
// a delete bins the secret (gone by name, name free at once), RestoreSecret brings it
// back, `force` erases at once. The clock is the service's injected one, moved by hand.

const DAY_MS = 86_400_000;

describe("the recovery bin", () => {
  let svc: TestService;
  const clock = { now: Date.parse("2026-12-06T00:00:00Z") };

  beforeAll(async () => {
    const env = { SECRETS_RECOVERY_WINDOW_DAYS: "3", SECRETS_WRITE_RATE: "0", SECRETS_MAX_SECRETS_PER_DEVELOPER: "3" };
    svc = await startTestService(env, { clock: () => new Date(clock.now) });
  });

  afterAll(async () => {
    await svc?.stop();
  });

  const client = () => svc.secrets;
  const developer = async () => svc.token(`bin-${randomUUID()}`);
  const binOf = async (t: string) => (await client().listSecrets({ showDeleted: true }, t)).secrets;
  const valueOf = async (name: string, t: string) => (await client().accessSecret({ name }, t)).value;

  it("a deleted secret is gone by name, its name is free at once, and a restore brings back every version", async () => {
    const t = await developer();
    const created = (await client().createSecret({ name: "db_password", value: "v1" }, t)).secret!;
    await client().updateSecret({ name: "db_password", value: "v2" }, t);
    await client().deleteSecret({ name: "db_password" }, t);

    for (const call of [
      () => client().getSecret({ name: "db_password" }, t),
      () => client().accessSecret({ name: "db_password" }, t),
      () => client().accessSecret({ name: "db_password", version: 1 }, t),
      () => client().resolveSecrets({ names: ["db_password"] }, t),
      () => client().listSecretVersions({ name: "db_password" }, t),
    ]) {
      expect((await expectCallError(call)).reason).toBe("SECRET_NOT_FOUND");
    }
    expect((await client().listSecrets({}, t)).secrets).toEqual([]);

    const [binned] = await binOf(t);
    expect(binned).toMatchObject({ id: created.id, name: "db_password", version: 2 });
    expect(timestampDate(binned!.deleteTime!).getTime()).toBe(clock.now);
    expect(timestampDate(binned!.purgeTime!).getTime()).toBe(clock.now + 3 * DAY_MS); // SECRETS_RECOVERY_WINDOW_DAYS

    const reborn = (await client().createSecret({ name: "db_password", value: "new" }, t)).secret!;
    expect(reborn.version).toBe(1);
    expect(reborn.id).not.toBe(created.id);
    await client().deleteSecret({ name: "db_password", force: true }, t);

    const restored = (await client().restoreSecret({ name: "db_password" }, t)).secret!;
    expect(restored).toMatchObject({ id: created.id, version: 2 });
    expect(restored.deleteTime).toBeUndefined();
    expect(await valueOf("db_password", t)).toBe("v2");
    expect((await client().accessSecret({ name: "db_password", version: 1 }, t)).value).toBe("v1");
    expect(await binOf(t)).toEqual([]);
  });

  it("refuses a restore while a live secret holds the name (RESTORE_NAME_TAKEN), by name or by id, and changes nothing", async () => {
    const t = await developer();
    const old = (await client().createSecret({ name: "api_key", value: "old" }, t)).secret!;
    await client().deleteSecret({ name: "api_key", recoveryWindowDays: 30 }, t);
    await client().createSecret({ name: "api_key", value: "current" }, t);

    for (const request of [{ name: "api_key" }, { id: old.id }]) {
      const err = await expectCallError(() => client().restoreSecret(request, t));
      expect([err.code, err.reason]).toEqual([status.ALREADY_EXISTS, "RESTORE_NAME_TAKEN"]);
    }
    expect(await valueOf("api_key", t)).toBe("current");
    expect((await binOf(t)).map((s) => s.id)).toEqual([old.id]);

    // Once the name is free, the old secret comes back by its id.
    await client().deleteSecret({ name: "api_key" }, t);
    clock.now += DAY_MS;
    expect((await client().restoreSecret({ id: old.id }, t)).secret?.id).toBe(old.id);
    expect(await valueOf("api_key", t)).toBe("old");
    expect((await binOf(t)).map((s) => s.name)).toEqual(["api_key"]); // the "current" one, binned above
  });

  it("by name restores the most recently deleted secret of that name", async () => {
    const t = await developer();
    for (const value of ["first", "second"]) {
      await client().createSecret({ name: "token", value }, t);
      await client().deleteSecret({ name: "token" }, t);
      clock.now += 1_000;
    }
    expect(await binOf(t)).toHaveLength(2);
    await client().restoreSecret({ name: "token" }, t);
    expect(await valueOf("token", t)).toBe("second");
  });

  it("binned secrets leave the quota; a restore that would exceed it is QUOTA_EXCEEDED and changes nothing", async () => {
    const t = await developer();
    for (const name of ["q1", "q2", "q3"]) await client().createSecret({ name, value: name }, t);
    await client().deleteSecret({ name: "q1" }, t);
    await client().createSecret({ name: "q4", value: "q4" }, t); // room again: 3 live, 1 binned
    const err = await expectCallError(() => client().restoreSecret({ name: "q1" }, t));
    expect([err.code, err.reason]).toEqual([status.RESOURCE_EXHAUSTED, "QUOTA_EXCEEDED"]);
    expect((await binOf(t)).map((s) => s.name)).toEqual(["q1"]);
    expect((await expectCallError(() => client().getSecret({ name: "q1" }, t))).reason).toBe("SECRET_NOT_FOUND");
    await client().deleteSecret({ name: "q4", force: true }, t);
    await client().restoreSecret({ name: "q1" }, t);
    expect(await valueOf("q1", t)).toBe("q1");
  });

  it("force deletes at once: no bin entry, no rows, nothing to restore", async () => {
    const t = await developer();
    const s = (await client().createSecret({ name: "leaked", value: "v" }, t)).secret!;
    await client().deleteSecret({ name: "leaked", force: true }, t);
    expect(await binOf(t)).toEqual([]);
    const rows = await svc.db.query<{ n: number }>("SELECT count(*) AS n FROM secret_versions WHERE secret_id = $1", [s.id]);
    expect(rows.rows).toEqual([{ n: 0 }]);
    expect((await expectCallError(() => client().restoreSecret({ id: s.id }, t))).reason).toBe("SECRET_NOT_FOUND");
    expect((await expectCallError(() => client().restoreSecret({ name: "leaked" }, t))).reason).toBe("SECRET_NOT_FOUND");
  });

  it("refuses bad input with INVALID_ARGUMENT and changes nothing", async () => {
    const t = await developer();
    await client().createSecret({ name: "kept", value: "v" }, t);
    const bad = [
      () => client().deleteSecret({ name: "kept", recoveryWindowDays: -1 }, t),
      () => client().deleteSecret({ name: "kept", recoveryWindowDays: 366 }, t),
      () => client().deleteSecret({ name: "kept", recoveryWindowDays: 5, force: true }, t),
      () => client().restoreSecret({}, t),
      () => client().restoreSecret({ name: "kept", id: randomUUID() }, t),
      () => client().restoreSecret({ id: "not-a-uuid" }, t),
      () => client().restoreSecret({ name: "1bad" }, t),
    ];
    for (const call of bad) expect((await expectCallError(call)).code).toBe(status.INVALID_ARGUMENT);
    expect(await valueOf("kept", t)).toBe("v");
    expect(await binOf(t)).toEqual([]);
  });

  it("RestoreSecret needs secrets:write, and another developer's binned secret is NOT_FOUND", async () => {
    const t = await developer();
    const s = (await client().createSecret({ name: "mine", value: "v" }, t)).secret!;
    await client().deleteSecret({ name: "mine" }, t);
    const reader = await svc.token(`reader-${randomUUID()}`, { scopes: ["secrets:read"] });
    expect((await expectCallError(() => client().restoreSecret({ name: "mine" }, reader))).reason).toBe("SCOPE_MISSING");
    const other = await developer();
    expect((await expectCallError(() => client().restoreSecret({ id: s.id }, other))).reason).toBe("SECRET_NOT_FOUND");
    expect(await binOf(other)).toEqual([]);
    expect((await binOf(t)).map((x) => x.id)).toEqual([s.id]);
  });

  it("pages through the bin, which may hold several secrets of one name", async () => {
    const t = await developer();
    for (let i = 0; i < 3; i++) {
      await client().createSecret({ name: "dup", value: `v${i}` }, t);
      await client().deleteSecret({ name: "dup" }, t);
    }
    const first = await client().listSecrets({ showDeleted: true, pageSize: 2 }, t);
    expect(first.secrets).toHaveLength(2);
    const second = await client().listSecrets({ showDeleted: true, pageSize: 2, pageToken: first.nextPageToken }, t);
    expect(second.secrets).toHaveLength(1);
    expect(second.nextPageToken).toBe("");
    const ids = new Set([...first.secrets, ...second.secrets].map((s) => s.id));
    expect(ids.size).toBe(3);
    // A bin token is not a live listing's token.
    expect((await expectCallError(() => client().listSecrets({ pageSize: 2, pageToken: first.nextPageToken }, t))).reason).toBe("INVALID_PAGE_TOKEN");
  });

  it("shredding a developer empties their bin", async () => {
    const dev = `shred-bin-${randomUUID()}`;
    const t = await svc.token(dev);
    await client().createSecret({ name: "gone", value: "v" }, t);
    await client().deleteSecret({ name: "gone" }, t);
    const operator = await svc.token("ops", { scopes: ["secrets:operator"] });
    const shred = await svc.keys.shredDeveloper({ developerId: dev, confirmDeveloperId: dev }, operator);
    expect(shred.secretsDeleted).toBe(1n);
    expect(await binOf(t)).toEqual([]);
  });
});
