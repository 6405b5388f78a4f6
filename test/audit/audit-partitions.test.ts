/**
 * Audit partitions of a configurable size (SECRETS_AUDIT_PARTITION_HOURS, migration
 * 15) and the export before a drop (SECRETS_AUDIT_EXPORT_DIR): retention drops
 * partitions of hours by their own bounds while the chains still verify; after a
 * change of size the partitions made before stay and new ones fill the time after
 * them; an exported partition's file verifies on its own and matches its checkpoint;
 * a failed export keeps the partition.
 */
import { mkdir, mkdtemp, readFile, readdir, rm, writeFile } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createAuditLog } from "../../src/audit/audit-log.js";
import { createAuditRetention } from "../../src/audit/audit-retention.js";
import { main as verifyMain, verifyAuditChains, verifyAuditFile } from "../../src/audit/audit-verify.js";
import { auditPartitionName, createAuditPartitions, listAuditPartitions, listCheckpoints } from "../../src/store/audit-store.js";
import type { Db } from "../../src/store/db.js";
import { createTestDb, testDatabaseKind, type TestDb } from "../support/test-db.js";
import { auditEvent, newId, withTriggersDisabled, writerNumber } from "./audit-support.js";

const HOUR = 3_600_000;
const DAY = 24 * HOUR;

async function writeEvents(db: Db, writerId: string, developerId: string, times: readonly number[], partitionHours = 24): Promise<void> {
  const log = createAuditLog({ db, writerId, intervalMs: 1, partitionHours });
  for (const t of times) await log.record(auditEvent({ developerId, time: new Date(t) }));
  await log.close();
}

async function partitionsBetween(db: Db, from: number, to: number): Promise<{ name: string; start: number; end: number }[]> {
  return (await listAuditPartitions(db)).filter((p) => p.start >= from && p.start < to);
}

async function problemsOf(db: Db, writers: readonly string[]) {
  return (await verifyAuditChains(db, { pageSize: 5 })).problems.filter((p) => writers.includes(p.writerId));
}

describe(`audit partitions of hours on ${testDatabaseKind()}`, () => {
  let t: TestDb;
  let dir: string;
  beforeAll(async () => {
    t = await createTestDb();
    dir = await mkdtemp(path.join(os.tmpdir(), "secrets-audit-export-"));
  });
  afterAll(async () => {
    await t?.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  it("makes 6-hour partitions ahead and drops them by their bounds while the chains still verify", async () => {
    const d = Date.UTC(2031, 4, 1);
    const make = await createAuditRetention({ db: t.db, retentionDays: 0, partitionHours: 6, daysAhead: 1, now: () => new Date(d + HOUR) }).runOnce();
    expect(make.created.filter((n) => n.startsWith("audit_log_2031"))).toEqual([
      "audit_log_20310501_00",
      "audit_log_20310501_06",
      "audit_log_20310501_12",
      "audit_log_20310501_18",
      "audit_log_20310502_00",
    ]);
    expect(await partitionsBetween(t.db, d, d + DAY)).toEqual([0, 6, 12, 18].map((h) => ({ name: auditPartitionName(d + h * HOUR, 6), start: d + h * HOUR, end: d + (h + 6) * HOUR })));
    const writers = [newId("w6a"), newId("w6b")];
    const developerId = newId("dev");
    // Every 3 hours of the day: two events in each partition, from each writer.
    for (const w of writers) await writeEvents(t.db, w, developerId, [0, 1, 2, 3, 4, 5, 6, 7].map((k) => d + k * 3 * HOUR + k), 6);

    // One day kept, at 07:00 the next day: only the partition that ended at 06:00 is past it.
    const run = await createAuditRetention({ db: t.db, retentionDays: 1, partitionHours: 6, daysAhead: 1, now: () => new Date(d + DAY + 7 * HOUR) }).runOnce();
    expect(run.dropped.filter((p) => p.partition.startsWith("audit_log_2031"))).toEqual([{ partition: "audit_log_20310501_00", events: 4 }]);
    expect((await partitionsBetween(t.db, d, d + DAY)).map((p) => p.name)).toEqual(["audit_log_20310501_06", "audit_log_20310501_12", "audit_log_20310501_18"]);

    const result = await verifyAuditChains(t.db, { pageSize: 5 });
    expect(result.problems.filter((p) => writers.includes(p.writerId))).toEqual([]);
    for (const w of writers) {
      expect(result.chains.find((c) => c.writerId === w)).toMatchObject({ events: 6, lastSequence: 8, archived: { events: 2, partitions: ["audit_log_20310501_00"] } });
    }
    // An event removed from a remaining partition is still found.
    const [a] = writers as [string];
    const { rows } = await t.db.query<{ id: number }>("SELECT id FROM audit_events WHERE writer_id = $1 AND writer_sequence = 5", [a]);
    await withTriggersDisabled(t.db, () => t.db.query("DELETE FROM audit_log WHERE id = $1", [rows[0]?.id]));
    expect(await problemsOf(t.db, writers)).toEqual([expect.objectContaining({ writerId: a, sequence: 6, kind: "sequence" })]);
  });

  it("after a change of size keeps the partitions made before, fills only the gaps, and drops each by its own bounds", async () => {
    const d = Date.UTC(2032, 6, 1);
    // Days made with the default size...
    await createAuditRetention({ db: t.db, retentionDays: 0, daysAhead: 1, now: () => new Date(d) }).runOnce();
    // ...then 6 hours: the days that exist stay whole, the time after them gets 6-hour partitions.
    await createAuditRetention({ db: t.db, retentionDays: 0, partitionHours: 6, daysAhead: 1, now: () => new Date(d + DAY + HOUR) }).runOnce();
    expect((await partitionsBetween(t.db, d, d + 3 * DAY)).map((p) => p.name)).toEqual(["audit_log_20320701", "audit_log_20320702", "audit_log_20320703_00"]);
    // 8 hours over 6: the slot [00:00, 08:00) is partly taken, so only its gap is made.
    await createAuditPartitions(t.db, [d + 2 * DAY + HOUR], 8);
    expect((await partitionsBetween(t.db, d + 2 * DAY, d + 3 * DAY)).map((p) => [p.name, (p.end - p.start) / HOUR])).toEqual([
      ["audit_log_20320703_00", 6],
      ["audit_log_20320703_06", 2],
    ]);

    const writerId = newId("wmix");
    // The last event's slot has no partition yet: the writer covers the 6-hour slots of its batch, gaps only.
    await writeEvents(t.db, writerId, newId("dev"), [d + HOUR, d + DAY + 20 * HOUR, d + 2 * DAY + HOUR, d + 2 * DAY + 7 * HOUR, d + 2 * DAY + 13 * HOUR], 6);
    expect((await partitionsBetween(t.db, d + 2 * DAY, d + 3 * DAY)).map((p) => p.name)).toEqual([
      "audit_log_20320703_00",
      "audit_log_20320703_06",
      "audit_log_20320703_08",
      "audit_log_20320703_12",
    ]);
    // At 07:00 on the fourth day, one day kept: what ended by 07:00 on the third day goes, days and hours alike.
    const run = await createAuditRetention({ db: t.db, retentionDays: 1, partitionHours: 6, daysAhead: 0, now: () => new Date(d + 3 * DAY + 7 * HOUR) }).runOnce();
    expect(run.dropped.filter((p) => p.partition.startsWith("audit_log_2032"))).toEqual([
      { partition: "audit_log_20320701", events: 1 },
      { partition: "audit_log_20320702", events: 1 },
      { partition: "audit_log_20320703_00", events: 1 },
    ]);
    expect(await problemsOf(t.db, [writerId])).toEqual([]);
    expect((await verifyAuditChains(t.db)).chains.find((c) => c.writerId === writerId)).toMatchObject({ events: 2, archived: { events: 3, segments: 3 } });
  });

  it("exports a partition before dropping it: the file verifies on its own and matches the partition's checkpoint", async () => {
    // Its own database: every older partition is exported too, and the tests above left a chain broken.
    const own = await createTestDb();
    try {
      await exportThenDrop(own.db, dir);
    } finally {
      await own.cleanup();
    }
  });
});

async function exportThenDrop(db: Db, dir: string): Promise<void> {
  const d = Date.UTC(2033, 8, 1);
  const exportDir = path.join(dir, "exports");
  const writers = [newId("wxa"), newId("wxb")];
  const developerId = newId("dev");
  for (const w of writers) await writeEvents(db, w, developerId, [d + 1, d + HOUR, d + 2 * HOUR, d + DAY + 1, d + DAY + 2]);
  const retention = (now: number) => createAuditRetention({ db: db, retentionDays: 1, exportDir, daysAhead: 0, now: () => new Date(now) });

  // The directory is missing: the export fails and nothing is dropped.
  const failed = await retention(d + 2 * DAY + HOUR).runOnce();
  expect(failed.exportFailed).toBeDefined();
  expect(failed.dropped).toEqual([]);
  expect((await partitionsBetween(db, d, d + 2 * DAY)).map((p) => p.name)).toEqual(["audit_log_20330901", "audit_log_20330902"]);

  await mkdir(exportDir);
  const run = await retention(d + 2 * DAY + HOUR).runOnce();
  expect(run.exportFailed).toBeUndefined();
  expect(run.dropped.filter((p) => p.partition.startsWith("audit_log_2033"))).toEqual([{ partition: "audit_log_20330901", events: 6 }]);
  expect((await readdir(exportDir)).filter((f) => f.includes("2033"))).toEqual(["audit_log_20330901.jsonl"]);

  const file = path.join(exportDir, "audit_log_20330901.jsonl");
  const verified = await verifyAuditFile(file);
  expect(verified.problems).toEqual([]);
  for (const w of writers) {
    const chain = verified.chains.find((c) => c.writerId === w);
    const [checkpoint] = await listCheckpoints(db, await writerNumber(db, w));
    expect(chain).toMatchObject({ firstSequence: 1, lastSequence: 3, events: 3 });
    expect(checkpoint).toMatchObject({ partitionName: "audit_log_20330901", firstSequence: 1, lastSequence: 3, events: 3, lastHash: chain?.headHash });
  }
  // What remains in the database still verifies, joined to the archived segment.
  expect(await problemsOf(db, writers)).toEqual([]);
  expect(await verifyMain(["node", "audit-verify", "--file", file])).toBe(0);

  // A changed line, or one removed, is found in the file.
  const text = await readFile(file, "utf8");
  const lines = text.split("\n").filter(Boolean);
  const altered = path.join(dir, "altered.jsonl");
  await writeFile(altered, `${[lines[0], (lines[1] as string).replace(`"version":0`, `"version":7`), ...lines.slice(2)].join("\n")}\n`);
  expect((await verifyAuditFile(altered)).problems).toEqual([expect.objectContaining({ line: 2, kind: "hash" })]);
  const removed = path.join(dir, "removed.jsonl");
  await writeFile(removed, `${[lines[0], ...lines.slice(2)].join("\n")}\n`);
  expect((await verifyAuditFile(removed)).problems).toEqual([expect.objectContaining({ line: 2, kind: "sequence" })]);
  expect(await verifyMain(["node", "audit-verify", "--file", removed])).toBe(1);
}
