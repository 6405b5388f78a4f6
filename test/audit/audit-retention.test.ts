/**
 * Retention of the compact audit trail (day partitions; audit-partitions.test.ts has
 * partitions of hours): the job drops whole day partitions (never
 * rows) while writers write, records the head of each dropped segment, and
 * audit:verify then verifies what remains, names what was archived, and still finds
 * any remaining event removed or changed.
 */
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createAuditLog, type AuditLog } from "../../src/audit/audit-log.js";
import { createAuditRetention } from "../../src/audit/audit-retention.js";
import { verifyAuditChains, type ChainProblem } from "../../src/audit/audit-verify.js";
import { AUDIT_PARTITION_LOCK_KEY, auditPartitionName, listAuditPartitions } from "../../src/store/audit-store.js";
import type { Db } from "../../src/store/db.js";
import { openPostgres } from "../../src/store/pg-db.js";
import { createTestDb, testDatabaseKind, type TestDb } from "../support/test-db.js";
import { auditEvent, newId, withTriggersDisabled } from "./audit-support.js";

const DAY = 86_400_000;
/** Four days far from today, so that no other test's partitions are involved. */
const D0 = Date.UTC(2030, 2, 1);
const at = (day: number, ms = 0) => new Date(D0 + day * DAY + ms);

async function problemsOf(db: Db, writers: readonly string[]): Promise<ChainProblem[]> {
  return (await verifyAuditChains(db, { pageSize: 7 })).problems.filter((p) => writers.includes(p.writerId));
}

async function idAt(db: Db, writerId: string, sequence: number): Promise<number> {
  const { rows } = await db.query<{ id: number }>("SELECT id FROM audit_events WHERE writer_id = $1 AND writer_sequence = $2", [writerId, sequence]);
  if (!rows[0]) throw new Error(`no event ${sequence} of ${writerId}`);
  return rows[0].id;
}

describe(`audit retention on ${testDatabaseKind()}`, () => {
  let t: TestDb;
  const writers = [newId("wa"), newId("wb")];
  let logs: AuditLog[];
  const developerId = newId("dev");

  beforeAll(async () => {
    t = await createTestDb();
    logs = writers.map((writerId) => createAuditLog({ db: t.db, writerId, intervalMs: 5 }));
    // Days 0 to 2: five events a day from each writer.
    for (let day = 0; day < 3; day++) {
      for (let i = 0; i < 5; i++) for (const log of logs) await log.record(auditEvent({ developerId, time: at(day, i) }));
    }
    for (const log of logs) await log.flush();
    // Day 3 (today for the job below) and the days ahead exist before the writers get there:
    // a writer making a partition holds the partition lock, and the job would skip its run.
    expect(await createAuditRetention({ db: t.db, retentionDays: 0, now: () => at(3) }).runOnce()).toMatchObject({ ran: true, dropped: [] });
  });
  afterAll(async () => {
    for (const log of logs ?? []) await log.close();
    await t?.cleanup();
  });

  it("drops the days past the retention while two writers write, and every chain still verifies", async () => {
    const retention = createAuditRetention({ db: t.db, retentionDays: 2, now: () => at(3, 12 * 3_600_000) });
    // Both writers keep writing (day 3) while the job runs.
    let writing = true;
    const writes = logs.map(async (log) => {
      let n = 0;
      while (writing || n < 20) {
        await log.record(auditEvent({ developerId, time: at(3, n) }));
        n += 1;
        if (n % 5 === 0) await new Promise((r) => setTimeout(r, 1));
      }
    });
    await new Promise((r) => setTimeout(r, 20));
    const run = await retention.runOnce();
    writing = false;
    await Promise.all(writes);
    for (const log of logs) await log.flush();

    expect(run.ran).toBe(true);
    // Day 0 ends more than two days before "now"; day 1 does not.
    // (The partitions made for the real today and days ahead are empty and older still.)
    expect(run.dropped.filter((d) => d.events > 0)).toEqual([{ partition: auditPartitionName(at(0).getTime()), events: 10 }]);
    const names = (await listAuditPartitions(t.db)).map((p) => p.name);
    expect(names).not.toContain(auditPartitionName(at(0).getTime()));
    for (const day of [1, 2, 3, 4, 5, 6]) expect(names).toContain(auditPartitionName(at(day).getTime()));

    const result = await verifyAuditChains(t.db, { pageSize: 7 });
    expect(result.problems.filter((p) => writers.includes(p.writerId))).toEqual([]);
    for (const writerId of writers) {
      const chain = result.chains.find((c) => c.writerId === writerId);
      expect(chain).toMatchObject({
        format: 3,
        problems: 0,
        archived: { events: 5, segments: 1, partitions: [auditPartitionName(at(0).getTime())] },
      });
      expect(chain?.events).toBe((chain?.lastSequence ?? 0) - 5);
    }
    // Rows are still refused UPDATE and DELETE; the remaining days are all there.
    const ofDeveloper = "developer = (SELECT developer FROM audit_developers WHERE developer_id = $1)";
    await expect(t.db.query(`DELETE FROM audit_log WHERE ${ofDeveloper}`, [developerId])).rejects.toThrow(/append-only/);
    await expect(t.db.query(`UPDATE audit_log SET version = 1 WHERE ${ofDeveloper}`, [developerId])).rejects.toThrow(/append-only/);
    const { rows } = await t.db.query<{ n: number }>("SELECT count(*)::int8 AS n FROM audit_events WHERE developer_id = $1 AND time < $2", [developerId, at(3)]);
    expect(rows[0]?.n).toBe(20);
  });

  it("a second run finds nothing more to drop, and a run while another holds the lock does nothing", async () => {
    const retention = createAuditRetention({ db: t.db, retentionDays: 2, now: () => at(3, 12 * 3_600_000) });
    expect(await retention.runOnce()).toMatchObject({ ran: true, dropped: [] });
    if (t.db.kind !== "postgres") return; // PGlite is one session: nothing else can hold the lock.
    const other = await openPostgres(t.url as string);
    try {
      await other.transaction(async (tx) => {
        await tx.query(`SELECT pg_advisory_xact_lock(${AUDIT_PARTITION_LOCK_KEY})`);
        const later = createAuditRetention({ db: t.db, retentionDays: 1, now: () => at(3, 12 * 3_600_000) });
        expect(await later.runOnce()).toEqual({ ran: false, created: [], dropped: [] });
      });
    } finally {
      await other.close();
    }
  });

  it("finds the first remaining event of a trimmed chain removed", async () => {
    const [a] = writers as [string];
    const id = await idAt(t.db, a, 6); // the first event of day 1, which carries day 0's last hash
    expect((await t.db.query<{ p: string }>("SELECT prev_hash AS p FROM audit_events WHERE id = $1", [id])).rows[0]?.p).toMatch(/^[0-9a-f]{64}$/);
    const { rows } = await t.db.query<Record<string, unknown>>("SELECT * FROM audit_log WHERE id = $1", [id]);
    await withTriggersDisabled(t.db, () => t.db.query("DELETE FROM audit_log WHERE id = $1", [id]));
    expect(await problemsOf(t.db, writers)).toEqual([expect.objectContaining({ writerId: a, sequence: 7, kind: "sequence" })]);
    await restore(t.db, rows[0] as Record<string, unknown>);
    expect(await problemsOf(t.db, writers)).toEqual([]);
  });

  it("finds any remaining event removed or changed, in every remaining day", async () => {
    const [, b] = writers as [string, string];
    for (const sequence of [6, 8, 10, 11, 15, 16, 20]) {
      const id = await idAt(t.db, b, sequence);
      const { rows } = await t.db.query<Record<string, unknown>>("SELECT * FROM audit_log WHERE id = $1", [id]);
      await withTriggersDisabled(t.db, () => t.db.query("UPDATE audit_log SET version = version + 1 WHERE id = $1", [id]));
      expect(await problemsOf(t.db, writers)).toEqual([expect.objectContaining({ writerId: b, id, sequence, kind: "hash" })]);
      await withTriggersDisabled(t.db, () => t.db.query("DELETE FROM audit_log WHERE id = $1", [id]));
      expect(await problemsOf(t.db, writers)).toEqual([expect.objectContaining({ writerId: b, kind: "sequence" })]);
      await restore(t.db, rows[0] as Record<string, unknown>);
      expect(await problemsOf(t.db, writers)).toEqual([]);
    }
  });

  it("finds a checkpoint removed or changed", async () => {
    const [a] = writers as [string];
    const { rows } = await t.db.query<Record<string, unknown>>(
      "SELECT c.* FROM audit_checkpoints c JOIN audit_writers w USING (writer) WHERE w.writer_id = $1",
      [a],
    );
    await t.db.query("ALTER TABLE audit_checkpoints DISABLE TRIGGER USER");
    try {
      await t.db.query("UPDATE audit_checkpoints SET last_hash = decode(repeat('b', 64), 'hex') WHERE writer = $1", [rows[0]?.writer]);
      expect(await problemsOf(t.db, writers)).toEqual([expect.objectContaining({ writerId: a, sequence: 6, kind: "prev_hash" })]);
      await t.db.query("DELETE FROM audit_checkpoints WHERE writer = $1", [rows[0]?.writer]);
      const problems = await problemsOf(t.db, writers);
      expect(problems).toEqual([expect.objectContaining({ writerId: a, sequence: 6, kind: "sequence" })]);
      expect(problems[0]?.message).toMatch(/starts at sequence 6, not 1/);
    } finally {
      await t.db.query(
        "INSERT INTO audit_checkpoints SELECT * FROM json_populate_record(NULL::audit_checkpoints, $1::json)",
        [JSON.stringify({ ...rows[0], last_hash: `\\x${(rows[0]?.last_hash as Buffer).toString("hex")}` })],
      );
      await t.db.query("ALTER TABLE audit_checkpoints ENABLE TRIGGER USER");
    }
    expect(await problemsOf(t.db, writers)).toEqual([]);
  });

  it("stores an event timed before its writer's current hour at that hour's start, keeping each partition whole segments", async () => {
    const writerId = newId("wc");
    const log = createAuditLog({ db: t.db, writerId });
    const hour = 3_600_000;
    await log.record(auditEvent({ developerId, time: at(2, 2 * hour + 5) }));
    await log.record(auditEvent({ developerId, time: at(2, hour + 7) }));
    await log.record(auditEvent({ developerId, time: at(1, 7) }));
    await log.close();
    const { rows } = await t.db.query<{ time: Date }>("SELECT time FROM audit_events WHERE writer_id = $1 ORDER BY writer_sequence", [writerId]);
    expect(rows.map((r) => r.time.getTime())).toEqual([at(2, 2 * hour + 5).getTime(), at(2, 2 * hour).getTime(), at(2, 2 * hour).getTime()]);
    expect(await problemsOf(t.db, [writerId])).toEqual([]);
  });
});

/** Puts a row of audit_log back as it was (the triggers do not stop INSERT). */
async function restore(db: Db, row: Record<string, unknown>): Promise<void> {
  const hex = (b: unknown) => (b instanceof Uint8Array ? `\\x${Buffer.from(b).toString("hex")}` : b);
  const json = JSON.stringify({ ...row, prev_hash: hex(row["prev_hash"]), hash: hex(row["hash"]) });
  await db.query("INSERT INTO audit_log SELECT * FROM json_populate_record(NULL::audit_log, $1::json)", [json]);
}
