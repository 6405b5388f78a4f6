/**
 * The audit table's protections: the append-only trigger, and the per-writer hash
 * chain, which finds an event changed, removed or moved by someone who can bypass
 * the trigger (the table owner, who can disable it). `verifyAuditChains` is called
 * directly, and the built check command (`node dist/audit/audit-verify.js`) is run
 * as a child process against the backend of this run.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdtemp, rename, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";
import { promisify } from "node:util";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { chainHash3Of, chainHashOf, chainHashV1, GENESIS_HASH } from "../../src/audit/chain.js";
import { createAuditLog } from "../../src/audit/audit-log.js";
import { encodeAuditEvent, encodeChainedFields, insertEncodedAuditEvents, listWriterEvents } from "../../src/store/audit-store.js";
import { DbError, type Db } from "../../src/store/db.js";
import { openPglite } from "../../src/store/pglite-db.js";
import { verifyAuditChains, type ChainProblem } from "../../src/audit/audit-verify.js";
import { PROJECT_ROOT } from "../support/server-process.js";
import { copyPgliteTemplate, createTestDb, testDatabaseKind, type TestDb } from "../support/test-db.js";
import { auditEvent, compactEventsOf, newId, withTriggersDisabled, writerNumber } from "./audit-support.js";

const VERIFY = path.join(PROJECT_ROOT, "dist", "audit", "audit-verify.js");

/** Writes a chain of `n` events under a new writer id and returns that id. */
async function writeChain(db: Db, n: number): Promise<string> {
  const writerId = newId("w");
  const log = createAuditLog({ db, writerId });
  const developerId = newId("dev");
  for (let i = 1; i <= n; i++) {
    await log.record(auditEvent({ developerId, secretName: `secret_${i}`, version: i }));
  }
  await log.close();
  return writerId;
}

/**
 * Writes a chain of `n` events as a writer did before format 2 (format 1 hashes),
 * or, with `format2From`, one whose events from that sequence on are hashed in format 2.
 */
async function writeFormat1Chain(db: Db, n: number, format2From = Infinity): Promise<string> {
  const writerId = newId("w");
  const developerId = newId("dev");
  const lines: string[] = [];
  let prev = GENESIS_HASH;
  for (let seq = 1; seq <= n; seq++) {
    const e = { ...auditEvent({ developerId, secretName: `secret_${seq}`, version: seq }), writerId, writerSequence: seq };
    const hash = seq >= format2From ? chainHashOf(prev, e) : chainHashV1(prev, e);
    lines.push(encodeAuditEvent(encodeChainedFields(e), prev, hash));
    prev = hash;
  }
  await insertEncodedAuditEvents(db, lines);
  return writerId;
}

async function idAt(db: Db, writerId: string, sequence: number): Promise<number> {
  const { rows } = await db.query<{ id: number }>(
    "SELECT id FROM audit_events WHERE writer_id = $1 AND writer_sequence = $2",
    [writerId, sequence],
  );
  if (!rows[0]) throw new Error(`no event ${sequence} of ${writerId}`);
  return rows[0].id;
}

/** The partition that holds a compact writer's events. */
async function partitionOf(db: Db, writerId: string): Promise<string> {
  const { rows } = await db.query<{ t: string }>(
    "SELECT DISTINCT tableoid::regclass::text AS t FROM audit_log WHERE writer = $1",
    [await writerNumber(db, writerId)],
  );
  if (rows.length !== 1 || !rows[0]) throw new Error(`writer ${writerId} is not in one partition`);
  return rows[0].t;
}

async function problemsOf(db: Db, writerId: string, options?: { pageSize?: number }): Promise<ChainProblem[]> {
  const result = await verifyAuditChains(db, options);
  return result.problems.filter((p) => p.writerId === writerId);
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error("expected a rejection");
    },
    (e: unknown) => e,
  );
}

describe(`audit table protections on ${testDatabaseKind()}`, () => {
  let t: TestDb;

  beforeAll(async () => {
    t = await createTestDb();
    await t.db.query("INSERT INTO audit_developers (developer_id) VALUES ('someone-else')");
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  it("rejects UPDATE, DELETE and TRUNCATE with the trigger's error, and the rows stay as written", async () => {
    const writerId = await writeChain(t.db, 3);
    const old = await writeFormat1Chain(t.db, 2, 1);
    const writer = await writerNumber(t.db, writerId);
    const before = await listWriterEvents(t.db, writerId, 0, 10);
    const partition = await partitionOf(t.db, writerId);
    for (const [sql, params] of [
      ["UPDATE audit_events SET outcome = 'OK' WHERE writer_id = $1", [writerId]],
      ["DELETE FROM audit_events WHERE writer_id = $1", [writerId]],
      ["UPDATE audit_log SET outcome = 1 WHERE writer = $1", [writer]],
      ["DELETE FROM audit_log WHERE writer = $1", [writer]],
      [`DELETE FROM ${partition} WHERE writer = $1`, [writer]],
      ["UPDATE audit_events_v1 SET outcome = 'OK' WHERE writer_id = $1", [old]],
      ["DELETE FROM audit_events_v1 WHERE writer_id = $1", [old]],
      ["UPDATE audit_developers SET developer_id = 'someone-else-2' WHERE developer_id = 'someone-else'", []],
      ["DELETE FROM audit_developers WHERE developer_id = 'someone-else'", []],
      ["UPDATE audit_names SET secret_name = 'other' WHERE secret_name = 'secret_1'", []],
      ["DELETE FROM audit_names WHERE secret_name = 'secret_1'", []],
    ] as const) {
      const e = await rejection(t.db.query(sql, params));
      expect(e).toBeInstanceOf(DbError);
      expect(e).toMatchObject({ code: "42501", message: "audit_events is append-only" });
    }
    for (const table of ["audit_log", partition, "audit_events_v1", "audit_checkpoints", "audit_developers", "audit_names"]) {
      const truncate = await rejection(t.db.query(`TRUNCATE ${table}`));
      expect(truncate).toMatchObject({ code: "42501", message: "audit_events is append-only" });
    }
    expect(await listWriterEvents(t.db, writerId, 0, 10)).toEqual(before);
  });

  it("finds intact chains intact", async () => {
    const a = await writeChain(t.db, 5);
    const b = await writeChain(t.db, 1);
    const result = await verifyAuditChains(t.db, { pageSize: 2 });
    expect(result.problems.filter((p) => p.writerId === a || p.writerId === b)).toEqual([]);
    expect(result.chains.find((c) => c.writerId === a)).toMatchObject({ events: 5, lastSequence: 5, problems: 0 });
    expect(result.chains.find((c) => c.writerId === b)).toMatchObject({ events: 1, lastSequence: 1, problems: 0 });
    expect(result.writers).toBe(result.chains.length);
    expect(result.events).toBe(result.chains.reduce((n, c) => n + c.events, 0));
  });

  it.each([
    ["secret_name", "secret_name = 'other_secret'"],
    ["outcome", "outcome = 7"],
    ["outcome by name", "outcome_name = 'OK'"],
    ["developer", "developer = (SELECT developer FROM audit_developers WHERE developer_id = 'someone-else')"],
    ["developer to none", "developer = developer + 1000"],
    ["caller_subject", "caller_subject = 'someone-else'"],
    ["caller_token_id", "caller_token_id = 'jti'"],
    ["version", "version = version + 1"],
    ["action", "action = 4"],
    ["request id", "request_uuid = '00000000-0000-4000-8000-000000000000'"],
    ["peer", "peer = ''"],
    // Since migration 17 the name is a number.
    ["name", "name = (SELECT name FROM audit_names WHERE secret_name <> 'api_key' LIMIT 1)"],
    ["name to none", "name = name + 100000"],
    ["time by a second", "time = time + interval '1 second'"],
    ["time by a microsecond", "time = time + interval '1 microsecond'"],
    ["writer", "writer = writer + 1000"],
    ["hash", "hash = decode(repeat('a', 64), 'hex')"],
  ])("finds one changed field (%s) as a hash problem at that event", async (label, set) => {
    const writerId = await writeChain(t.db, 5);
    const id = await idAt(t.db, writerId, 3);
    await withTriggersDisabled(t.db, () => t.db.query(`UPDATE audit_log SET ${set} WHERE id = $1`, [id]));
    const problems = await problemsOf(t.db, writerId);
    if (label === "writer") {
      // The event moved to another chain: a gap in its own.
      expect(problems).toEqual([expect.objectContaining({ sequence: 4, kind: "sequence" })]);
      return;
    }
    // A changed hash breaks its own link and the next event's, computed from it.
    expect(problems[0]).toMatchObject({ id, sequence: 3, kind: "hash" });
    expect(problems).toHaveLength(label === "hash" ? 2 : 1);
  });

  it.each([
    ["secret_name", "secret_name = 'other_secret'"],
    ["outcome", "outcome = 'PERMISSION_DENIED'"],
    ["time by a microsecond", "time = time + interval '1 microsecond'"],
    ["hash", "hash = repeat('a', 64)"],
  ])("finds one changed field (%s) of a chain written before the compact format", async (label, set) => {
    const writerId = await writeFormat1Chain(t.db, 5, 1);
    const id = await idAt(t.db, writerId, 3);
    await withTriggersDisabled(t.db, () => t.db.query(`UPDATE audit_events_v1 SET ${set} WHERE id = $1`, [id]));
    const problems = await problemsOf(t.db, writerId);
    expect(problems[0]).toMatchObject({ id, sequence: 3, kind: "hash" });
    expect(problems).toHaveLength(label === "hash" ? 2 : 1);
  });

  it("finds an edit whose hash was recomputed at the next event, whose hash no longer follows", async () => {
    const writerId = await writeChain(t.db, 5);
    const [, second, third] = await compactEventsOf(t.db, writerId);
    if (!second || !third) throw new Error("missing event");
    const forged = chainHash3Of(second.hash, writerId, { ...third, outcome: 5 });
    await withTriggersDisabled(t.db, () =>
      t.db.query("UPDATE audit_log SET outcome = 5, hash = decode($2, 'hex') WHERE id = $1", [third.id, forged]),
    );
    expect(await problemsOf(t.db, writerId)).toEqual([
      expect.objectContaining({ id: await idAt(t.db, writerId, 4), sequence: 4, kind: "hash" }),
    ]);
  });

  it("finds a deleted event, across page boundaries", async () => {
    const writerId = await writeChain(t.db, 6);
    const id3 = await idAt(t.db, writerId, 3);
    await withTriggersDisabled(t.db, () =>
      t.db.query("DELETE FROM audit_log WHERE id = $1", [id3]),
    );
    const problems = await problemsOf(t.db, writerId, { pageSize: 2 });
    expect(problems).toEqual([
      expect.objectContaining({ id: await idAt(t.db, writerId, 4), sequence: 4, kind: "sequence" }),
    ]);
    expect(problems[0]?.message).toMatch(/follows 2: 1 events missing/);
  });

  it("finds a deleted first event", async () => {
    const writerId = await writeChain(t.db, 3);
    const id1 = await idAt(t.db, writerId, 1);
    await withTriggersDisabled(t.db, () => t.db.query("DELETE FROM audit_log WHERE id = $1", [id1]));
    const problems = await problemsOf(t.db, writerId);
    expect(problems).toEqual([expect.objectContaining({ sequence: 2, kind: "sequence" })]);
    expect(problems[0]?.message).toMatch(/starts at sequence 2/);
  });

  it("finds two events that swapped places", async () => {
    const writerId = await writeChain(t.db, 5);
    const id2 = await idAt(t.db, writerId, 2);
    const id3 = await idAt(t.db, writerId, 3);
    await withTriggersDisabled(t.db, async () => {
      await t.db.query("UPDATE audit_log SET writer_sequence = -1 WHERE id = $1", [id2]);
      await t.db.query("UPDATE audit_log SET writer_sequence = 2 WHERE id = $1", [id3]);
      await t.db.query("UPDATE audit_log SET writer_sequence = 3 WHERE id = $1", [id2]);
    });
    const problems = await problemsOf(t.db, writerId);
    expect(problems[0]).toMatchObject({ id: id3, sequence: 2, kind: "hash" });
  });

  it("verifies chains written in formats 1 and 2 beside chains written now, and says which is which", async () => {
    const old = await writeFormat1Chain(t.db, 4);
    const format2 = await writeFormat1Chain(t.db, 3, 1);
    const current = await writeChain(t.db, 3);
    const result = await verifyAuditChains(t.db);
    expect(result.problems.filter((p) => [old, format2, current].includes(p.writerId))).toEqual([]);
    expect(result.chains.find((c) => c.writerId === old)).toMatchObject({ events: 4, format: 1, problems: 0 });
    expect(result.chains.find((c) => c.writerId === format2)).toMatchObject({ events: 3, format: 2, problems: 0 });
    expect(result.chains.find((c) => c.writerId === current)).toMatchObject({ events: 3, format: 3, problems: 0 });
  });

  it("finds an edit in a format-1 chain", async () => {
    const writerId = await writeFormat1Chain(t.db, 3);
    const id = await idAt(t.db, writerId, 2);
    await withTriggersDisabled(t.db, () => t.db.query("UPDATE audit_events_v1 SET outcome = 'NOT_FOUND' WHERE id = $1", [id]));
    expect(await problemsOf(t.db, writerId)).toEqual([expect.objectContaining({ id, sequence: 2, kind: "hash" })]);
  });

  it("finds a chain whose events change format, which no writer does", async () => {
    const writerId = await writeFormat1Chain(t.db, 4, 3);
    expect(await problemsOf(t.db, writerId)).toEqual([
      expect.objectContaining({ sequence: 3, kind: "hash" }),
      expect.objectContaining({ sequence: 4, kind: "hash" }),
    ]);
  });

  it("finds an appended event that was not chained by the writer", async () => {
    const writerId = await writeChain(t.db, 2);
    const [, second] = await listWriterEvents(t.db, writerId, 0, 10);
    if (!second) throw new Error("missing event");
    // INSERT is allowed (the table is append-only, not read-only): the chain is what catches this.
    await t.db.query(
      `INSERT INTO audit_log (time, writer, writer_sequence, version, action, outcome, developer_id, caller_token_id,
                              caller_identity, secret_name, request_id, peer, prev_hash, hash)
       VALUES (now(), $1, 3, 0, 1, 0, 'd', '', '', '', 'r', '', decode($2, 'hex'), decode($3, 'hex'))`,
      [await writerNumber(t.db, writerId), second.hash, "f".repeat(64)],
    );
    expect(await problemsOf(t.db, writerId)).toEqual([expect.objectContaining({ sequence: 3, kind: "hash" })]);
  });
});

/**
 * A database the check command can open: on Postgres a test database (by URL); on
 * PGlite a data directory laid out as the service keeps it (`<dir>/pglite`), which
 * must be closed before the command opens it (one process at a time).
 */
interface CliTarget {
  db: Db;
  args: string[];
  env: Record<string, string>;
  /** Release the database to the command (PGlite: close it). */
  handOver(): Promise<void>;
  cleanup(): Promise<void>;
}

async function cliTarget(): Promise<CliTarget> {
  if (testDatabaseKind() === "postgres") {
    const t = await createTestDb();
    return { db: t.db, args: [], env: { DATABASE_URL: t.url as string }, handOver: async () => undefined, cleanup: () => t.cleanup() };
  }
  const dir = await mkdtemp(path.join(os.tmpdir(), "secrets-audit-verify-"));
  await rename(await copyPgliteTemplate(), path.join(dir, "pglite"));
  const db = await openPglite(path.join(dir, "pglite"));
  let open = true;
  const close = async () => {
    if (open) await db.close();
    open = false;
  };
  return {
    db,
    args: ["--data-dir", dir],
    env: {},
    handOver: close,
    async cleanup() {
      await close();
      await rm(dir, { recursive: true, force: true });
    },
  };
}

async function runVerify(target: CliTarget): Promise<{ code: number; stdout: string; stderr: string }> {
  if (!existsSync(VERIFY)) throw new Error(`${VERIFY} is missing: run npm run build (npm test does it first)`);
  const env = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("SECRETS_") && k !== "DATABASE_URL"),
  ) as Record<string, string>;
  try {
    const { stdout, stderr } = await promisify(execFile)(process.execPath, [VERIFY, ...target.args], {
      env: { ...env, ...target.env },
      timeout: 60_000,
    });
    return { code: 0, stdout, stderr };
  } catch (e) {
    const err = e as { code?: unknown; stdout?: string; stderr?: string };
    if (typeof err.code !== "number") throw e;
    return { code: err.code, stdout: err.stdout ?? "", stderr: err.stderr ?? "" };
  }
}

describe(`npm run audit:verify on ${testDatabaseKind()}`, () => {
  it("exits 0 with one line per writer when every chain holds", async () => {
    const target = await cliTarget();
    try {
      const a = await writeChain(target.db, 4);
      const b = await writeChain(target.db, 2);
      await target.handOver();
      const { code, stdout } = await runVerify(target);
      expect(code).toBe(0);
      expect(stdout).toMatch(new RegExp(`writer "${a}": 4 events, last sequence 4, head [0-9a-f]{64}, format 3: ok`));
      expect(stdout).toContain(`writer "${b}": 2 events, last sequence 2`);
      expect(stdout).toMatch(/audit chains intact: 2 writers, 6 events/);
    } finally {
      await target.cleanup();
    }
  });

  it("exits 1 naming the first broken event, and prints none of its fields", async () => {
    const target = await cliTarget();
    try {
      const writerId = await writeChain(target.db, 5);
      const id = await idAt(target.db, writerId, 3);
      await withTriggersDisabled(target.db, () =>
        target.db.query("UPDATE audit_log SET secret_name = 'tampered_name' WHERE id = $1", [id]),
      );
      const { rows } = await target.db.query<{ request_id: string }>("SELECT request_id FROM audit_events WHERE id = $1", [id]);
      await target.handOver();
      const { code, stdout, stderr } = await runVerify(target);
      expect(code).toBe(1);
      expect(stdout).toContain(`audit chain broken: event id ${id}, writer "${writerId}", sequence 3: hash does not match`);
      expect(stdout).toContain("BROKEN (1 problem)");
      for (const content of ["tampered_name", "secret_3", rows[0]?.request_id as string]) {
        expect(stdout + stderr).not.toContain(content);
      }
    } finally {
      await target.cleanup();
    }
  });

  it("exits 1 for a deleted event", async () => {
    const target = await cliTarget();
    try {
      const writerId = await writeChain(target.db, 4);
      const id = await idAt(target.db, writerId, 2);
      await withTriggersDisabled(target.db, () => target.db.query("DELETE FROM audit_log WHERE id = $1", [id]));
      await target.handOver();
      const { code, stdout } = await runVerify(target);
      expect(code).toBe(1);
      expect(stdout).toMatch(/sequence 3: sequence 3 follows 1: 1 events missing/);
    } finally {
      await target.cleanup();
    }
  });

  it.runIf(testDatabaseKind() === "postgres")("exits 2 for a database the service never migrated, and leaves it unmigrated", async () => {
    const t = await createTestDb({ migrate: false });
    try {
      const { code, stderr } = await runVerify({ db: t.db, args: [], env: { DATABASE_URL: t.url as string }, handOver: async () => undefined, cleanup: async () => undefined });
      expect(code).toBe(2);
      expect(stderr).toMatch(/has no audit_events table/);
      expect(stderr).not.toContain(t.url as string);
      const { rows } = await t.db.query<{ t: string | null }>("SELECT to_regclass('schema_migrations')::text AS t");
      expect(rows[0]?.t).toBeNull();
    } finally {
      await t.cleanup();
    }
  });

  it("exits 2 without a database to open", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "secrets-audit-verify-empty-"));
    try {
      const { code, stderr } = await runVerify({ db: undefined as never, args: ["--data-dir", dir], env: {}, handOver: async () => undefined, cleanup: async () => undefined });
      expect(code).toBe(2);
      expect(stderr).toMatch(/no embedded database/);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
