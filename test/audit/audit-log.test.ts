/**
 * The audit writer on a real database (Postgres with DATABASE_URL, else PGlite):
 * batching, chain order, back-pressure with the database down, durability, flush
 * and close. Each test writes with its own writer id and developers, and checks
 * only its own rows.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { GENESIS_HASH, chainHash3Of } from "../../src/audit/chain.js";
import { auditSecretName } from "../../src/audit/audit-event.js";
import { exportAuditPartition } from "../../src/audit/audit-export.js";
import { AuditDownError, createAuditLog } from "../../src/audit/audit-log.js";
import {
  findCompactWriterHashes,
  listAuditPartitions,
  listWriterEvents,
  type AuditPartition,
} from "../../src/store/audit-store.js";
import { verifyAuditChains, verifyAuditFile } from "../../src/audit/audit-verify.js";
import { backendUnavailable, type Db } from "../../src/store/db.js";
import { openPostgres } from "../../src/store/pg-db.js";
import { PROJECT_ROOT } from "../support/server-process.js";
import { createTestDb, testDatabaseKind, type TestDb } from "../support/test-db.js";
import { auditEvent, compactEventsOf, countingDb, failingDb, heldDb, isPending, newId, rowsOf, wrapDb, writerNumber } from "./audit-support.js";

/** Checks one writer's chain directly: contiguous from 1, linked, each hash recomputed (format 3). */
async function expectIntactChain(db: Db, writerId: string, events: number): Promise<void> {
  const rows = await compactEventsOf(db, writerId);
  expect(rows.map((r) => r.writerSequence)).toEqual(Array.from({ length: events }, (_, i) => i + 1));
  let prev = GENESIS_HASH;
  for (const r of rows) {
    expect(chainHash3Of(prev, writerId, r)).toBe(r.hash);
    prev = r.hash;
  }
  const { chains, problems } = await verifyAuditChains(db);
  expect(problems.filter((p) => p.writerId === writerId)).toEqual([]);
  expect(chains.find((c) => c.writerId === writerId)).toMatchObject({ events, lastSequence: events, format: 3, problems: 0 });
}

describe(`audit log on ${testDatabaseKind()}`, () => {
  let t: TestDb;

  beforeAll(async () => {
    t = await createTestDb();
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  it("writes 2,500 events in three INSERT statements, in chain order", async () => {
    const counted = countingDb(t.db);
    const writerId = newId("w");
    const log = createAuditLog({ db: counted.db, writerId, intervalMs: 60_000 });
    const developers = Array.from({ length: 5 }, () => newId("dev"));
    const requestIds: string[] = [];
    for (let i = 0; i < 2500; i++) {
      const e = auditEvent({ developerId: developers[i % 5] as string, secretName: `name_${i}` });
      requestIds.push(e.requestId);
      await log.record(e);
    }
    // Two full batches went at once, without waiting for the (long) interval.
    await expect.poll(() => counted.inserts(), { timeout: 10_000 }).toBe(2);
    await log.flush();
    expect(counted.inserts()).toBe(3);
    expect(log.queueDepth).toBe(0);

    const rows = await rowsOf(t.db, writerId);
    expect(rows.map((r) => r.request_id)).toEqual(requestIds);
    expect(rows.map((r) => r.writer_sequence)).toEqual(requestIds.map((_, i) => i + 1));
    await expectIntactChain(t.db, writerId, 2500);
    await log.close();
  });

  it("writes a trickle of events within the interval, without a flush, as one batch", async () => {
    const counted = countingDb(t.db);
    const writerId = newId("w");
    const log = createAuditLog({ db: counted.db, writerId, intervalMs: 50 });
    for (let i = 0; i < 3; i++) await log.record(auditEvent({ developerId: newId("dev") }));
    expect(counted.inserts()).toBe(0);
    await expect.poll(async () => (await rowsOf(t.db, writerId)).length, { timeout: 5_000 }).toBe(3);
    expect(counted.inserts()).toBe(1);
    await log.close();
  });

  it("stores every field as given, and the chain starts at the genesis hash", async () => {
    const writerId = newId("w");
    const log = createAuditLog({ db: t.db, writerId });
    const e = auditEvent({
      time: new Date("2030-05-06T07:08:09.123Z"),
      developerId: newId("dev"),
      callerSubject: "ops@example.com",
      callerTokenId: "jti-1",
      callerIdentity: "spiffe://cluster/ns/agents/sa/runner",
      action: "ResolveSecrets",
      secretName: "a_key,b_key",
      version: 7,
      outcome: "NOT_FOUND",
      peer: "ipv6:[::1]:5000",
    });
    await log.recordDurable(e);
    const [row] = await listWriterEvents(t.db, writerId, 0, 10);
    expect(row).toMatchObject({ ...e, writerId, writerSequence: 1, prevHash: "" });
    expect(row?.time.getTime()).toBe(e.time.getTime());
    await log.close();
  });

  it("makes text storable before hashing it: U+0000 and lone surrogates become U+FFFD and the chain holds", async () => {
    const writerId = newId("w");
    const log = createAuditLog({ db: t.db, writerId });
    await log.recordDurable(auditEvent({ developerId: newId("dev"), callerIdentity: "a\u0000b\uD800c" }));
    const rows = await rowsOf(t.db, writerId);
    expect(rows[0]?.caller_identity).toBe("a\uFFFDb\uFFFDc");
    await expectIntactChain(t.db, writerId, 1);
    await log.close();
  });

  it("stores text exactly, whatever JSON, SQL or COPY would make of it", async () => {
    const writerId = newId("w");
    const log = createAuditLog({ db: t.db, writerId });
    const awkward = ['"quoted" \\back\\slash', "line\nbreak\ttab\u0001", "\\u0041 not an escape", "dév 🙂 𝄞", "'); DROP TABLE audit_events; --", "[1,2]", "{\"a\":1}", "\\N", "\\.", "carriage\rreturn\r\n", "\t"];
    for (const [i, text] of awkward.entries()) {
      await log.record(auditEvent({ developerId: newId("dev"), secretName: text, peer: text, version: i === 0 ? -(2 ** 31) : 2 ** 31 - 1 }));
    }
    await log.flush();
    const rows = await rowsOf(t.db, writerId);
    expect(rows.map((r) => [r.secret_name, r.peer])).toEqual(awkward.map((a) => [a, a]));
    expect(rows[0]?.version).toBe(-(2 ** 31));
    await expectIntactChain(t.db, writerId, awkward.length);
    await log.close();
  });

  it("counts back-pressure by the developer id as stored, so an unstorable one is not stuck", async () => {
    const writerId = newId("w");
    const log = createAuditLog({ db: t.db, writerId, intervalMs: 1, perDeveloperLimit: 1 });
    const developerId = `${newId("dev")}\u0000x`;
    for (let i = 0; i < 3; i++) await log.record(auditEvent({ developerId }));
    await log.flush();
    expect((await rowsOf(t.db, writerId)).map((r) => r.developer_id)).toEqual(Array(3).fill(developerId.replace("\u0000", "\uFFFD")));
    await log.close();
  });

  it("stores an unstorable time as the clock's", async () => {
    const writerId = newId("w");
    const now = new Date("2031-01-01T00:00:00.000Z");
    const log = createAuditLog({ db: t.db, writerId, now: () => now });
    await log.recordDurable(auditEvent({ developerId: newId("dev"), time: new Date(Number.NaN) }));
    expect((await rowsOf(t.db, writerId))[0]?.time.getTime()).toBe(now.getTime());
    await expectIntactChain(t.db, writerId, 1);
    await log.close();
  });

  it("with the database down, makes only the developer over the limit wait, and loses nothing once it is back", async () => {
    const down = failingDb(t.db);
    const writerId = newId("w");
    const errors: { e: unknown; pending: number }[] = [];
    const log = createAuditLog({
      db: down.db,
      writerId,
      intervalMs: 5,
      perDeveloperLimit: 5,
      maxRetryDelayMs: 20,
      onError: (e, pending) => errors.push({ e, pending }),
    });
    const alice = newId("alice");
    const bob = newId("bob");
    const order: string[] = [];
    const rec = (developerId: string) => {
      const e = auditEvent({ developerId });
      const p = log.record(e).then(() => order.push(e.requestId));
      return { requestId: e.requestId, p };
    };

    const aliceFirst = Array.from({ length: 5 }, () => rec(alice));
    for (const r of aliceFirst) expect(await isPending(r.p, 0)).toBe(false);
    const aliceOver = [rec(alice), rec(alice)];
    const bobs = [rec(bob), rec(bob)];
    for (const r of bobs) expect(await isPending(r.p, 0)).toBe(false);
    // Inserts keep failing and being retried; alice's extra events still wait.
    await expect.poll(() => down.attempts(), { timeout: 5_000 }).toBeGreaterThanOrEqual(3);
    for (const r of aliceOver) expect(await isPending(r.p, 50)).toBe(true);
    expect(log.queueDepth).toBe(9);
    expect(errors.length).toBeGreaterThanOrEqual(2);
    expect(errors[0]?.e).toMatchObject({ reason: "BACKEND_UNAVAILABLE" });
    expect(errors.at(-1)?.pending).toBe(9);
    expect(await rowsOf(t.db, writerId)).toEqual([]);

    down.release();
    await Promise.all(aliceOver.map((r) => r.p));
    await log.flush();
    expect(log.queueDepth).toBe(0);

    const rows = await rowsOf(t.db, writerId);
    // Everything, once, in chain order: the waiting events were chained when admitted.
    expect(rows.map((r) => r.request_id)).toEqual([
      ...aliceFirst.map((r) => r.requestId),
      ...bobs.map((r) => r.requestId),
      ...aliceOver.map((r) => r.requestId),
    ]);
    expect(order.slice(-2)).toEqual(aliceOver.map((r) => r.requestId));
    await expectIntactChain(t.db, writerId, 9);
    await log.close();
  });

  it("admits a developer's waiting events in the order they were recorded", async () => {
    const held = heldDb(t.db);
    const writerId = newId("w");
    const log = createAuditLog({ db: held.db, writerId, intervalMs: 5, perDeveloperLimit: 2, batchSize: 2 });
    const dev = newId("dev");
    const events = Array.from({ length: 7 }, () => auditEvent({ developerId: dev }));
    const recorded = events.map((e) => log.record(e));
    expect(await isPending(recorded[2] as Promise<void>)).toBe(true);
    held.release();
    await Promise.all(recorded);
    await log.flush();
    expect((await rowsOf(t.db, writerId)).map((r) => r.request_id)).toEqual(events.map((e) => e.requestId));
    await expectIntactChain(t.db, writerId, 7);
    await log.close();
  });

  it("recordDurable resolves only once its row is committed, without waiting for the interval", async () => {
    const held = heldDb(t.db);
    const writerId = newId("w");
    const log = createAuditLog({ db: held.db, writerId, intervalMs: 60_000 });
    const e = auditEvent({ developerId: newId("dev") });
    const durable = log.recordDurable(e);
    await expect.poll(() => held.waiting(), { timeout: 5_000 }).toBe(1);
    expect(await isPending(durable, 50)).toBe(true);
    expect(await rowsOf(t.db, writerId)).toEqual([]);

    held.release();
    const started = Date.now();
    await durable;
    expect(Date.now() - started).toBeLessThan(5_000);
    expect((await rowsOf(t.db, writerId)).map((r) => r.request_id)).toEqual([e.requestId]);
    await log.close();
  });

  it("recordDurable waits for every earlier event too, and plain records alongside it resolve at once", async () => {
    const writerId = newId("w");
    const log = createAuditLog({ db: t.db, writerId, intervalMs: 60_000 });
    const dev = newId("dev");
    const before = [auditEvent({ developerId: dev }), auditEvent({ developerId: dev })];
    for (const e of before) await log.record(e);
    const e = auditEvent({ developerId: dev, action: "AccessSecret" });
    await log.recordDurable(e);
    expect((await rowsOf(t.db, writerId)).map((r) => r.request_id)).toEqual([...before, e].map((x) => x.requestId));
    await log.close();
  });

  it("refuses recordDurable at once while the database is down, and commits everything once it is back", async () => {
    const down = failingDb(t.db);
    const writerId = newId("w");
    const log = createAuditLog({ db: down.db, writerId, intervalMs: 60_000, maxRetryDelayMs: 20 });
    const dev = newId("dev");
    const waiting = log.recordDurable(auditEvent({ developerId: dev }));
    // The event waiting when its write failed is refused; it stays queued.
    await expect(waiting).rejects.toMatchObject({ name: "AuditDownError", what: "database" });
    expect(log.down).toBe("database");
    await expect(log.recordDurable(auditEvent({ developerId: dev }))).rejects.toBeInstanceOf(AuditDownError);
    // Refused before it was queued: only the first event waits for the database.
    expect(log.queueDepth).toBe(1);

    down.release();
    await expect.poll(() => log.down, { timeout: 5_000 }).toBeUndefined();
    const e = auditEvent({ developerId: dev });
    await log.recordDurable(e);
    expect(await rowsOf(t.db, writerId)).toHaveLength(2);
    await log.close();
    await expectIntactChain(t.db, writerId, 2);
  });

  it("treats an INSERT that committed but lost its acknowledgement as written, without duplicates", async () => {
    let lost = false;
    const db = wrapDb(t.db, async (run) => {
      const result = await run();
      if (!lost) {
        lost = true;
        throw backendUnavailable(new Error("connection reset after commit (test)"));
      }
      return result;
    });
    const writerId = newId("w");
    const errors: unknown[] = [];
    const log = createAuditLog({ db, writerId, intervalMs: 5, maxRetryDelayMs: 20, onError: (e) => errors.push(e) });
    const events = [auditEvent({ developerId: newId("dev") }), auditEvent({ developerId: newId("dev") })];
    for (const e of events) await log.record(e);
    await log.flush();
    expect(errors).toHaveLength(1);
    expect((await rowsOf(t.db, writerId)).map((r) => r.request_id)).toEqual(events.map((e) => e.requestId));
    await log.close();
  });

  it("reports another process writing under the same writer id instead of merging the chains", async () => {
    const writerId = newId("w");
    const first = createAuditLog({ db: t.db, writerId });
    await first.recordDurable(auditEvent({ developerId: newId("dev") }));
    await first.close();

    let stop = false;
    const errors: unknown[] = [];
    const db = wrapDb(t.db, (run) => (stop ? Promise.reject(backendUnavailable(new Error("stopped (test)"))) : run()));
    const second = createAuditLog({ db, writerId, intervalMs: 5, maxRetryDelayMs: 20, onError: (e) => errors.push(e) });
    void second.record(auditEvent({ developerId: newId("dev"), requestId: "clash" }));
    await expect.poll(() => errors.length, { timeout: 5_000 }).toBeGreaterThanOrEqual(1);
    stop = true;
    expect(String(errors[0])).toMatch(/used by another process/);
    expect((await rowsOf(t.db, writerId)).map((r) => r.request_id)).not.toContain("clash");
  });

  it("flush writes everything queued so far, and the log keeps working after it", async () => {
    const writerId = newId("w");
    const log = createAuditLog({ db: t.db, writerId, intervalMs: 60_000 });
    const dev = newId("dev");
    for (let i = 0; i < 4; i++) await log.record(auditEvent({ developerId: dev }));
    expect(log.queueDepth).toBe(4);
    await log.flush();
    expect(await rowsOf(t.db, writerId)).toHaveLength(4);
    await log.record(auditEvent({ developerId: dev }));
    await log.flush();
    await expectIntactChain(t.db, writerId, 5);
    await log.close();
  });

  it("flush also waits for events held back by back-pressure", async () => {
    const held = heldDb(t.db);
    const writerId = newId("w");
    const log = createAuditLog({ db: held.db, writerId, intervalMs: 60_000, perDeveloperLimit: 2 });
    const dev = newId("dev");
    const recorded = Array.from({ length: 5 }, () => log.record(auditEvent({ developerId: dev })));
    const flushed = log.flush();
    held.release();
    await flushed;
    await Promise.all(recorded);
    expect(await rowsOf(t.db, writerId)).toHaveLength(5);
    await log.close();
  });

  it("tryRecord queues while the developer has room, and queues nothing once they have not", async () => {
    const writerId = newId("w");
    const log = createAuditLog({ db: t.db, writerId, intervalMs: 60_000, perDeveloperLimit: 2 });
    const [dev, other] = [newId("dev"), newId("dev")];
    expect(log.tryRecord(auditEvent({ developerId: dev }))).toBe(true);
    expect(log.tryRecord(auditEvent({ developerId: dev }))).toBe(true);
    expect(log.tryRecord(auditEvent({ developerId: dev }))).toBe(false); // full: the caller must wait with record()
    expect(log.queueDepth).toBe(2);
    expect(log.tryRecord(auditEvent({ developerId: other }))).toBe(true); // another developer is not held back
    const waited = log.record(auditEvent({ developerId: dev }));
    await log.flush();
    await waited;
    await expectIntactChain(t.db, writerId, 4);
    await log.close();
    expect(() => log.tryRecord(auditEvent({ developerId: dev }))).toThrow(/closed/);
  });

  it("close writes the queue, then refuses new events", async () => {
    const writerId = newId("w");
    const log = createAuditLog({ db: t.db, writerId, intervalMs: 60_000 });
    const dev = newId("dev");
    for (let i = 0; i < 3; i++) await log.record(auditEvent({ developerId: dev }));
    expect(await rowsOf(t.db, writerId)).toEqual([]);
    await log.close();
    expect(await rowsOf(t.db, writerId)).toHaveLength(3);
    await expect(log.record(auditEvent({ developerId: dev }))).rejects.toThrow(/closed/);
    await expect(log.recordDurable(auditEvent({ developerId: dev }))).rejects.toThrow(/closed/);
    expect(await rowsOf(t.db, writerId)).toHaveLength(3);
  });
});

describe.runIf(testDatabaseKind() === "postgres")("audit log as the role docs/design.md recommends", () => {
  let t: TestDb;
  const role = newId("audit_writer").replaceAll("-", "_");

  beforeAll(async () => {
    t = await createTestDb();
    // Only INSERT and SELECT on the tables, USAGE on the id sequence and EXECUTE on the
    // partition maker (docs/operations.md, Audit retention).
    await t.db.query(`CREATE ROLE ${role} LOGIN`);
    await t.db.query(`GRANT INSERT, SELECT ON audit_log, audit_writers, audit_developers, audit_names TO ${role}`);
    await t.db.query(`GRANT SELECT ON audit_events TO ${role}`);
    await t.db.query(`GRANT USAGE ON SEQUENCE audit_events_id_seq TO ${role}`);
    await t.db.query(`GRANT EXECUTE ON FUNCTION audit_log_cover(timestamptz, timestamptz) TO ${role}`);
  });
  afterAll(async () => {
    await t?.db.query(`REVOKE ALL ON audit_log, audit_writers, audit_developers, audit_names, audit_events FROM ${role}`).catch(() => undefined);
    await t?.db.query(`REVOKE ALL ON SEQUENCE audit_events_id_seq FROM ${role}`).catch(() => undefined);
    await t?.db.query(`REVOKE ALL ON FUNCTION audit_log_cover(timestamptz, timestamptz) FROM ${role}`).catch(() => undefined);
    await t?.cleanup();
    // A role belongs to the cluster, not the test database.
    const admin = await openPostgres(process.env.DATABASE_URL as string);
    await admin.query(`DROP ROLE IF EXISTS ${role}`).finally(() => admin.close());
  });

  it("writes and reconciles its batches, and can change nothing already written", async () => {
    const url = new URL(t.url as string);
    url.username = role;
    const db = await openPostgres(url.toString());
    try {
      const writerId = newId("w");
      const log = createAuditLog({ db, writerId });
      const dev = newId("dev");
      // A day with no partition yet: the writer has it made.
      await log.record(auditEvent({ developerId: dev, time: new Date("2001-02-03T04:05:06.007Z") }));
      for (let i = 0; i < 2; i++) await log.record(auditEvent({ developerId: dev }));
      await log.recordDurable(auditEvent({ developerId: dev }));
      await log.close();
      await expectIntactChain(t.db, writerId, 4);
      // The writer's reconciliation read (after a lost commit acknowledgement) needs only SELECT.
      expect(await findCompactWriterHashes(db, await writerNumber(db, writerId), [1, 4], new Date("2001-01-01"), new Date())).toHaveProperty("size", 2);
      await expect(db.query("UPDATE audit_log SET outcome = 0")).rejects.toMatchObject({ code: "42501" });
      await expect(db.query("DELETE FROM audit_log")).rejects.toMatchObject({ code: "42501" });
      // The export before a drop reads the partition through audit_log: SELECT is enough.
      const [partition] = (await listAuditPartitions(db)).filter((p) => p.name === "audit_log_20010203");
      const exportDir = await mkdtemp(path.join(os.tmpdir(), "secrets-audit-export-"));
      try {
        expect(await db.transaction((tx) => exportAuditPartition(tx, partition as AuditPartition, exportDir))).toMatchObject({ events: 1 });
        expect((await verifyAuditFile(path.join(exportDir, "audit_log_20010203.jsonl"))).problems).toEqual([]);
      } finally {
        await rm(exportDir, { recursive: true, force: true });
      }
      // Dropping a day is the retention job's, run as the owner: not granted here.
      await expect(db.query("SELECT audit_log_drop_partition('audit_log_20010203')")).rejects.toMatchObject({ code: "42501" });
    } finally {
      await db.close();
    }
  });
});

describe("audit log timers", () => {
  it("never keep a process alive: pending events and failing retries do not stop it from exiting", async () => {
    const built = path.join(PROJECT_ROOT, "dist", "audit", "audit-log.js");
    if (!existsSync(built)) throw new Error(`${built} is missing: run npm run build (npm test does it first)`);
    // One log waits for its (long) interval, the other retries an INSERT that always fails.
    const script = `
      import { createAuditLog } from ${JSON.stringify(pathToFileURL(built).href)};
      const db = { kind: "pglite", query: () => Promise.reject(new Error("down")), transaction() {}, session() {}, close() {} };
      const event = { time: new Date(), developerId: "d", callerSubject: "d", callerTokenId: "", callerIdentity: "",
        action: "GetSecret", secretName: "", version: 0, outcome: "OK", requestId: "r", peer: "" };
      const idle = createAuditLog({ db, writerId: "a", intervalMs: 600000 });
      const failing = createAuditLog({ db, writerId: "b", intervalMs: 1, onError: () => process.stdout.write("retry ") });
      await idle.record(event);
      await failing.record(event);
      setTimeout(() => process.stdout.write("done"), 200);
    `;
    const started = Date.now();
    const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script], { timeout: 20_000 });
    // The process exited (execFile resolved) with retries still failing. "done" need not
    // be last: on a loaded machine a retry timer can expire in the same timers phase.
    expect(stdout).toMatch(/retry .*done/);
    expect(Date.now() - started).toBeLessThan(15_000);
  });
});

describe("auditSecretName", () => {
  it("joins valid names and replaces an invalid one by its length and hash, never the text", () => {
    expect(auditSecretName(["api_key", "db_password"])).toBe("api_key,db_password");
    const pasted = "sk-live-123,456";
    const name = auditSecretName(["api_key", pasted]);
    expect(name).not.toContain("sk-live");
    expect(name).toMatch(/^api_key,<invalid:length=15:sha256=[0-9a-f]{12}>$/);
    expect(auditSecretName([])).toBe("");
  });
});
