/**
 * Secret names by number (migration 17): new rows store a name as a number, readers
 * see the text as before, and the chain covers the text, so rows written before the
 * migration (and by a pod of the release before it during a rolling update) and rows
 * in the new form verify side by side. An empty name, or one too long to index (the
 * names of one call, joined), stays text.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { exportAuditPartition } from "../../src/audit/audit-export.js";
import { createAuditLog } from "../../src/audit/audit-log.js";
import { verifyAuditChains, verifyAuditFile } from "../../src/audit/audit-verify.js";
import { listAuditPartitions } from "../../src/store/audit-store.js";
import { migrate } from "../../src/store/migrate.js";
import { MIGRATIONS } from "../../src/store/schema.js";
import { createTestDb, testDatabaseKind, type TestDb } from "../support/test-db.js";
import { auditEvent, listed, migration13Writer, newId, writerNumber } from "./audit-support.js";

/** Many names of one call, joined: longer than a name stored by number may be. */
const MANY_NAMES = Array.from({ length: 40 }, (_, i) => `database_password_${i}`).join(",");

/** What each new event names, and the row form it must take. */
const NEW_EVENTS = [
  { secretName: "new_1", numbered: true },
  { secretName: "", numbered: false },
  { secretName: MANY_NAMES, numbered: false },
  { secretName: "new_1", numbered: true },
  { secretName: "new_2", numbered: true },
];

describe(`audit secret names on ${testDatabaseKind()}`, () => {
  let t: TestDb;
  const developerId = newId("dev");
  const oldWriterId = newId("w-16");
  const newWriterId = newId("w-17");

  beforeAll(async () => {
    t = await createTestDb({ migrate: false });
    await migrate(t.db, MIGRATIONS.filter((m) => m.version <= 16));
    const writeOld = migration13Writer(t.db, oldWriterId);
    await writeOld([auditEvent({ developerId, secretName: "old_1" })]);
    await migrate(t.db);
    // A pod of the release before keeps writing names as text after the migration.
    await writeOld([auditEvent({ developerId, secretName: "old_2" })]);
    const log = createAuditLog({ db: t.db, writerId: newWriterId });
    for (const e of NEW_EVENTS) await log.record(auditEvent({ developerId, secretName: e.secretName }));
    await log.close();
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  it("reads every event back with its name as written, through the listing", async () => {
    const events = (await listed(t.db, developerId)).reverse();
    expect(events.map((e) => e.secretName)).toEqual(["old_1", "old_2", ...NEW_EVENTS.map((e) => e.secretName)]);
  });

  it("stores a name once, by number, and an empty or very long one as text", async () => {
    const { rows } = await t.db.query<{ name: number | null; secret_name: string | null }>(
      "SELECT name, secret_name FROM audit_log WHERE writer = $1 ORDER BY writer_sequence",
      [await writerNumber(t.db, newWriterId)],
    );
    expect(rows.map((r) => [r.name !== null, r.secret_name === null])).toEqual(NEW_EVENTS.map((e) => [e.numbered, e.numbered]));
    expect(rows[3]?.name).toBe(rows[0]?.name);
    const names = await t.db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_names WHERE secret_name = 'new_1'");
    expect(names.rows).toEqual([{ n: 1 }]);
  });

  it("verifies chains of both row forms, and exports them as written", async () => {
    const result = await verifyAuditChains(t.db);
    expect(result.problems.filter((p) => p.writerId === oldWriterId || p.writerId === newWriterId)).toEqual([]);
    expect(result.chains.filter((c) => c.writerId === oldWriterId || c.writerId === newWriterId).map((c) => c.events)).toEqual([2, NEW_EVENTS.length]);

    const dir = await mkdtemp(path.join(os.tmpdir(), "secrets-audit-names-"));
    try {
      const lines: { writer_id: string; secret_name: string }[] = [];
      for (const p of await listAuditPartitions(t.db)) {
        const { file, events } = await t.db.transaction((tx) => exportAuditPartition(tx, p, dir));
        if (events === 0) continue;
        expect((await verifyAuditFile(file)).problems).toEqual([]);
        for (const text of (await readFile(file, "utf8")).split("\n").filter(Boolean)) lines.push(JSON.parse(text) as (typeof lines)[number]);
      }
      expect(lines.filter((l) => l.writer_id === newWriterId).map((l) => l.secret_name)).toEqual(NEW_EVENTS.map((e) => e.secretName));
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
