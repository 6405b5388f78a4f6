/**
 * Developer numbers (migration 14): events name their developer by a number that
 * audit_developers resolves, readers see the developer id as before, and the chain
 * covers the developer id, so chains written in migration 13's row form (before the
 * migration, and by a pod of the release before it during a rolling update) and
 * chains in the new form verify side by side.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { AuditEventInput } from "../../src/audit/audit-event.js";
import { createAuditLog } from "../../src/audit/audit-log.js";
import { verifyAuditChains } from "../../src/audit/audit-verify.js";
import { migrate } from "../../src/store/migrate.js";
import { MIGRATIONS } from "../../src/store/schema.js";
import { createTestDb, testDatabaseKind, type TestDb } from "../support/test-db.js";
import { auditEvent, listed, migration13Writer, newId, withTriggersDisabled, writerNumber } from "./audit-support.js";

describe(`audit developer numbers on ${testDatabaseKind()}`, () => {
  let t: TestDb;
  const shared = newId("dev-shared");
  const fresh = newId("dev-fresh");
  const oldWriterId = newId("w-13");
  const newWriterId = newId("w-14");
  let writeOld: (events: readonly AuditEventInput[]) => Promise<void>;

  beforeAll(async () => {
    t = await createTestDb({ migrate: false });
    await migrate(t.db, MIGRATIONS.filter((m) => m.version <= 13));
    writeOld = migration13Writer(t.db, oldWriterId);
    await writeOld([auditEvent({ developerId: shared, secretName: "old_1" }), auditEvent({ developerId: shared, secretName: "old_2" })]);
    await migrate(t.db);
    // A pod of the release before keeps writing its chain in the old row form after the migration.
    await writeOld([auditEvent({ developerId: shared, secretName: "old_3" })]);
    const log = createAuditLog({ db: t.db, writerId: newWriterId });
    await log.record(auditEvent({ developerId: shared, secretName: "new_1" }));
    await log.record(auditEvent({ developerId: fresh, secretName: "new_2", callerSubject: "operator-1" }));
    await log.record(auditEvent({ developerId: fresh, secretName: "new_3" }));
    await log.close();
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  it("reads a new developer's events back under their developer id, through the listing and the view", async () => {
    const events = await listed(t.db, fresh);
    expect(events.map((e) => [e.developerId, e.secretName, e.callerSubject])).toEqual([
      [fresh, "new_3", fresh],
      [fresh, "new_2", "operator-1"],
    ]);
    const { rows } = await t.db.query<{ developer_id: string; secret_name: string }>(
      "SELECT developer_id, secret_name FROM audit_events WHERE writer_id = $1 ORDER BY id",
      [newWriterId],
    );
    expect(rows).toEqual([
      { developer_id: shared, secret_name: "new_1" },
      { developer_id: fresh, secret_name: "new_2" },
      { developer_id: fresh, secret_name: "new_3" },
    ]);
  });

  it("stores the number, not the id, in new rows, and lists both row forms of one developer in id order", async () => {
    const stored = await t.db.query<{ developer_id: string | null; named: string | null }>(
      `SELECT l.developer_id, d.developer_id AS named FROM audit_log l LEFT JOIN audit_developers d ON d.developer = l.developer
       WHERE l.writer = $1 ORDER BY l.id`,
      [await writerNumber(t.db, newWriterId)],
    );
    expect(stored.rows).toEqual([
      { developer_id: null, named: shared },
      { developer_id: null, named: fresh },
      { developer_id: null, named: fresh },
    ]);
    const events = await listed(t.db, shared);
    expect(events.map((e) => [e.developerId, e.secretName])).toEqual([
      [shared, "new_1"],
      [shared, "old_3"],
      [shared, "old_2"],
      [shared, "old_1"],
    ]);
  });

  it("verifies chains of both row forms, and finds a new row moved to another developer", async () => {
    const mine = (r: { chains: { writerId: string }[] }) => r.chains.filter((c) => c.writerId === oldWriterId || c.writerId === newWriterId);
    const before = await verifyAuditChains(t.db);
    expect(before.problems).toEqual([]);
    expect(mine(before)).toEqual([
      expect.objectContaining({ writerId: oldWriterId, events: 3, format: 3, problems: 0 }),
      expect.objectContaining({ writerId: newWriterId, events: 3, format: 3, problems: 0 }),
    ]);

    const { rows } = await t.db.query<{ id: number }>(
      "SELECT id FROM audit_events WHERE writer_id = $1 AND writer_sequence = 1",
      [newWriterId],
    );
    await withTriggersDisabled(t.db, () =>
      t.db.query(
        "UPDATE audit_log SET developer = (SELECT developer FROM audit_developers WHERE developer_id = $2) WHERE id = $1",
        [rows[0]?.id, fresh],
      ),
    );
    const after = await verifyAuditChains(t.db);
    expect(after.problems).toEqual([expect.objectContaining({ writerId: newWriterId, sequence: 1, kind: "hash" })]);
  });

  it("gives two writers that meet a new developer at once the same number", async () => {
    const developerId = newId("dev-both");
    const logs = [0, 1].map(() => createAuditLog({ db: t.db, writerId: newId("w-both") }));
    await Promise.all(logs.map((log) => log.recordDurable(auditEvent({ developerId }))));
    await Promise.all(logs.map((log) => log.close()));
    const { rows } = await t.db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_developers WHERE developer_id = $1", [developerId]);
    expect(rows).toEqual([{ n: 1 }]);
    expect((await listed(t.db, developerId)).map((e) => e.developerId)).toEqual([developerId, developerId]);
  });
});
