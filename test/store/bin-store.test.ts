import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { binSecret, findBinned, purgeDue, restoreBinned } from "../../src/store/bin-store.js";
import type { Queryable } from "../../src/store/db.js";
import { migrate } from "../../src/store/migrate.js";
import { openPostgres } from "../../src/store/pg-db.js";
import { MIGRATIONS } from "../../src/store/schema.js";
import { findSecret } from "../../src/store/secret-store.js";
import { createTestDb, type TestDb } from "../support/test-db.js";

// The recovery bin's SQL (schema migration 10) on the run's backend: what a migration
// does to secrets stored before it, the name rule between live and binned rows, the
// live count, and the purge's claim of rows another transaction holds.

async function insertLive(q: Queryable, developerId: string, name: string): Promise<string> {
  const id = randomUUID();
  await q.query(
    `INSERT INTO secrets (id, developer_id, name, current_version, created_at, updated_at, created_by, updated_by)
     VALUES ($1, $2, $3, 1, now(), now(), 'tester', 'tester')`,
    [id, developerId, name],
  );
  return id;
}

async function liveCount(q: Queryable, developerId: string): Promise<number | undefined> {
  const { rows } = await q.query<{ secrets: number }>("SELECT secrets FROM developer_secret_counts WHERE developer_id = $1", [developerId]);
  return rows[0]?.secrets;
}

describe("the recovery bin's SQL", () => {
  let t: TestDb;
  const dev = `bin-store-${randomUUID()}`;

  beforeAll(async () => {
    // Secrets stored before migration 10 must come out of it live, named and counted.
    t = await createTestDb({ migrate: false });
    await migrate(t.db, MIGRATIONS.filter((m) => m.version < 10));
    await insertLive(t.db, dev, "before");
    expect(await migrate(t.db)).toEqual({ applied: MIGRATIONS.filter((m) => m.version >= 10).map((m) => m.version) });
  });

  afterAll(async () => {
    await t?.cleanup();
  });

  it("keeps the secrets stored before it live and counted", async () => {
    expect((await findSecret(t.db, dev, "before"))?.deleteTime).toBeNull();
    expect(await liveCount(t.db, dev)).toBe(1);
  });

  it("lets binned rows share a name, one live row hold it, and counts live rows only", async () => {
    const at = new Date("2026-12-06T00:00:00Z");
    const later = new Date("2026-12-13T00:00:00Z");
    const first = await insertLive(t.db, dev, "shared");
    await binSecret(t.db, dev, first, at, later);
    const second = await insertLive(t.db, dev, "shared");
    await binSecret(t.db, dev, second, new Date(at.getTime() + 1), later);
    const live = await insertLive(t.db, dev, "shared");
    await expect(insertLive(t.db, dev, "shared")).rejects.toMatchObject({ code: "23505" });
    expect(await findSecret(t.db, dev, "shared")).toMatchObject({ id: live });
    expect(await findBinned(t.db, dev, { name: "shared" })).toMatchObject({ id: second });
    expect(await liveCount(t.db, dev)).toBe(2); // "before" and the live "shared"

    await expect(t.db.transaction((tx) => restoreBinned(tx, dev, first, at))).rejects.toMatchObject({ reason: "RESTORE_NAME_TAKEN" });
    await t.db.query("DELETE FROM secrets WHERE id = $1", [live]);
    expect(await liveCount(t.db, dev)).toBe(1);
    await t.db.transaction((tx) => restoreBinned(tx, dev, first, at));
    expect(await liveCount(t.db, dev)).toBe(2);
    expect(await findSecret(t.db, dev, "shared")).toMatchObject({ id: first, deleteTime: null, purgeTime: null });

    // Purging the remaining binned row leaves the live count as it is.
    expect(await t.db.transaction((tx) => purgeDue(tx, later, 100))).toEqual([{ developerId: dev, secretId: second, name: "shared", version: 1 }]);
    expect(await liveCount(t.db, dev)).toBe(2);
  });

  it.runIf(process.env["DATABASE_URL"])("skips a binned row another transaction holds, and purges it once released", async () => {
    const at = new Date("2026-12-06T00:00:00Z");
    const id = await insertLive(t.db, dev, "held");
    await binSecret(t.db, dev, id, at, at);
    const other = await openPostgres(t.url as string, { maxConnections: 1 });
    try {
      let release!: () => void;
      const released = new Promise<void>((r) => (release = r));
      let locked!: () => void;
      const isLocked = new Promise<void>((r) => (locked = r));
      const holder = other.transaction(async (tx) => {
        await findBinned(tx, dev, { id }, true);
        locked();
        await released;
      });
      await isLocked;
      expect(await t.db.transaction((tx) => purgeDue(tx, at, 100))).toEqual([]);
      release();
      await holder;
      expect((await t.db.transaction((tx) => purgeDue(tx, at, 100))).map((r) => r.secretId)).toEqual([id]);
    } finally {
      await other.close();
    }
  });
});
