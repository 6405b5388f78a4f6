/**
 * Helpers shared by the audit tests: Db wrappers that count or hold back the audit
 * writes, an event factory, and direct reads of the table.
 */
import { randomBytes, randomUUID } from "node:crypto";

import { backendUnavailable, type Db, type Queryable } from "../../src/store/db.js";
import type { AuditEventInput } from "../../src/audit/audit-event.js";
import { GENESIS_HASH, chainHash3, chainHashOf, compactOf } from "../../src/audit/chain.js";
import {
  encodeAuditEvent,
  encodeChainedFields,
  encodeCompactEvent,
  encodeCompactFields,
  listAuditEvents,
  insertEncodedAuditEvents,
  listAuditPartitions,
  readPartitionEvents,
  type PartitionChainRow,
  type RawEvent,
} from "../../src/store/audit-store.js";

export const newId = (prefix: string) => `${prefix}-${randomBytes(6).toString("hex")}`;

/** A Db that forwards everything to `db` and lets `intercept` see (or replace) each write of audit rows (a COPY). */
export function wrapDb(db: Db, intercept: <T>(run: () => Promise<T>) => Promise<T>): Db {
  return {
    kind: db.kind,
    query: (text, params) => db.query(text, params),
    copyIn(table, columns, rows) {
      const run = () => db.copyIn(table, columns, rows);
      return table === "audit_log" || table === "audit_events_v1" ? intercept(run) : run();
    },
    transaction: (fn) => db.transaction(fn),
    session: (fn) => db.session(fn),
    listen: (channel, handlers) => db.listen(channel, handlers),
    close: () => db.close(),
    poolStats: () => db.poolStats(),
  };
}

/** Counts the audit writes (COPY statements) sent. */
export function countingDb(db: Db): { db: Db; inserts: () => number } {
  let n = 0;
  return {
    db: wrapDb(db, (run) => {
      n += 1;
      return run();
    }),
    inserts: () => n,
  };
}

/**
 * The database "down" for audit writes: each one fails BACKEND_UNAVAILABLE (as the
 * adapters report a lost database) until `release()`.
 */
export function failingDb(db: Db): { db: Db; attempts: () => number; release: () => void } {
  let down = true;
  let attempts = 0;
  return {
    db: wrapDb(db, (run) => {
      attempts += 1;
      return down ? Promise.reject(backendUnavailable(new Error("connection refused (test)"))) : run();
    }),
    attempts: () => attempts,
    release: () => {
      down = false;
    },
  };
}

/** Audit writes wait until `release()`, then run. */
export function heldDb(db: Db): { db: Db; release: () => void; waiting: () => number } {
  let open = false;
  let waiters: (() => void)[] = [];
  return {
    db: wrapDb(db, async (run) => {
      if (!open) await new Promise<void>((resolve) => waiters.push(resolve));
      return run();
    }),
    release: () => {
      open = true;
      for (const w of waiters) w();
      waiters = [];
    },
    waiting: () => waiters.length,
  };
}

export function auditEvent(overrides: Partial<AuditEventInput> = {}): AuditEventInput {
  return {
    time: new Date(),
    developerId: "dev-default",
    callerSubject: overrides.developerId ?? "dev-default",
    callerTokenId: "",
    callerIdentity: "",
    action: "AccessSecret",
    secretName: "api_key",
    version: 0,
    outcome: "OK",
    requestId: randomUUID(),
    peer: "127.0.0.1:40000",
    ...overrides,
  };
}

/** A stored row, columns as named in the table. */
export type RawAuditRow = RawEvent;

/** A writer's rows in id order. */
export async function rowsOf(q: Queryable, writerId: string): Promise<RawAuditRow[]> {
  const { rows } = await q.query<RawAuditRow>("SELECT * FROM audit_events WHERE writer_id = $1 ORDER BY id", [writerId]);
  return rows;
}

/** Whether `p` is still pending after the event loop has had `ms` to run. */
export async function isPending(p: Promise<unknown>, ms = 20): Promise<boolean> {
  let settled = false;
  p.then(
    () => (settled = true),
    () => (settled = true),
  );
  await new Promise((r) => setTimeout(r, ms));
  return !settled;
}

/** Runs `fn` with the append-only triggers of both audit tables disabled, as their owner can; re-enables them after. */
export async function withTriggersDisabled<T>(db: Db, fn: () => Promise<T>): Promise<T> {
  await db.query("ALTER TABLE audit_events_v1 DISABLE TRIGGER USER; ALTER TABLE audit_log DISABLE TRIGGER USER");
  try {
    return await fn();
  } finally {
    await db.query("ALTER TABLE audit_events_v1 ENABLE TRIGGER USER; ALTER TABLE audit_log ENABLE TRIGGER USER");
  }
}

/** A writer's number in audit_writers (its compact events carry it). */
export async function writerNumber(q: Queryable, writerId: string): Promise<number> {
  const { rows } = await q.query<{ writer: number }>("SELECT writer FROM audit_writers WHERE writer_id = $1", [writerId]);
  const writer = rows[0]?.writer;
  if (writer === undefined) throw new Error(`no writer ${writerId}`);
  return writer;
}

/** One writer's compact events in chain order, read as the verifier reads them: a partition at a time. */
export async function compactEventsOf(db: Db, writerId: string): Promise<PartitionChainRow[]> {
  const writer = await writerNumber(db, writerId);
  const rows: PartitionChainRow[] = [];
  for (const p of await listAuditPartitions(db)) {
    await db.transaction((tx) => readPartitionEvents(tx, p, 1000, (page) => void rows.push(...page.filter((r) => r.writer === writer))));
  }
  return rows;
}

/**
 * Writes `events` as a writer of the release before the compact format did: one
 * format-2 chain in audit_events_v1. Returns its writer id.
 */
export async function writeOldFormatChain(db: Db, events: readonly AuditEventInput[]): Promise<string> {
  const writerId = newId("w-old");
  let prev = GENESIS_HASH;
  const lines = events.map((input, i) => {
    const e = { ...input, writerId, writerSequence: i + 1 };
    const hash = chainHashOf(prev, e);
    const line = encodeAuditEvent(encodeChainedFields(e), prev, hash);
    prev = hash;
    return line;
  });
  await insertEncodedAuditEvents(db, lines);
  return writerId;
}

/** audit_log's columns as migration 13 made them, in the order its writer sent them. */
const MIGRATION_13_COLUMNS = [
  "writer", "time", "writer_sequence", "version", "action", "outcome", "request_uuid", "caller_token_uuid", "developer_id",
  "caller_subject", "caller_token_id", "caller_identity", "secret_name", "request_id", "peer", "action_name", "outcome_name",
  "prev_hash", "hash",
] as const;

/**
 * A writer of the release before migration 14: format-3 chains whose rows store the
 * developer id. Each call appends `events` to the same chain.
 */
export function migration13Writer(db: Db, writerId: string) {
  let sequence = 0;
  let prev = GENESIS_HASH;
  return async (events: readonly AuditEventInput[]): Promise<void> => {
    // Registered as that release did: no claim (migration 16).
    if (sequence === 0) await db.query("INSERT INTO audit_writers (writer_id) VALUES ($1)", [writerId]);
    const writer = await writerNumber(db, writerId);
    const lines = events.map((input) => {
      sequence += 1;
      const compact = compactOf({ ...input, writerId, writerSequence: sequence });
      const fields = encodeCompactFields(compact, compact.developerId);
      const hash = chainHash3(prev, writerId, fields);
      prev = hash;
      return `${writer}\t${encodeCompactEvent(fields, undefined, hash)}\n`;
    });
    await db.copyIn("audit_log", MIGRATION_13_COLUMNS, lines.join(""));
  };
}

/** A developer's events as ListAuditEvents reads them, newest first, unfiltered. */
export async function listed(db: Db, developerId: string) {
  return listAuditEvents(db, {
    developerId,
    beforeId: undefined,
    secretName: undefined,
    action: undefined,
    outcome: undefined,
    start: undefined,
    end: undefined,
    onlyNames: undefined,
    limit: 100,
  });
}
