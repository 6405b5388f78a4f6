/**
 * What an audit event costs in Postgres, with its indexes: the compact format
 * (audit_log) against the format before it (audit_events_v1), for the same typical
 * events. Figures and method: docs/operations.md, Load, growth and retention.
 */
import { randomUUID } from "node:crypto";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createAuditLog } from "../../src/audit/audit-log.js";
import type { AuditEventInput } from "../../src/audit/audit-event.js";
import { createTestDb, testDatabaseKind, type TestDb } from "../support/test-db.js";
import { writeOldFormatChain } from "../audit/audit-support.js";

const EVENTS = 20_000;

/** Typical events: 200 developers (36-character ids) with a token each, UUID request ids, a few names and peers. */
function typicalEvents(prefix: string): AuditEventInput[] {
  const tokens = Array.from({ length: 200 }, () => randomUUID());
  const developers = Array.from({ length: 200 }, () => `${prefix}-${randomUUID()}`.slice(0, 36));
  return Array.from({ length: EVENTS }, (_, i) => {
    const d = i % 200;
    const developerId = developers[d] as string;
    return {
      time: new Date(),
      developerId,
      callerSubject: developerId,
      callerTokenId: tokens[d] as string,
      callerIdentity: "",
      action: i % 10 === 0 ? "ResolveSecrets" : "AccessSecret",
      secretName: `database_password_${i % 20}`,
      version: 0,
      outcome: i % 50 === 0 ? "NOT_FOUND" : "OK",
      requestId: randomUUID(),
      peer: `10.0.${d % 250}.${(i % 250) + 1}:${40000 + (i % 20000)}`,
    };
  });
}

describe.runIf(testDatabaseKind() === "postgres")("audit event size on postgres", () => {
  let t: TestDb;
  beforeAll(async () => {
    t = await createTestDb();
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  it("a compact event with its indexes takes well under half an event of the format before", async () => {
    const log = createAuditLog({ db: t.db, writerId: `w-${randomUUID()}` });
    for (const e of typicalEvents("dev")) if (!log.tryRecord(e)) await log.record(e);
    await log.close();
    for (let i = 0; i < EVENTS; i += 1000) await writeOldFormatChain(t.db, typicalEvents("old").slice(i, i + 1000));
    await t.db.query("VACUUM ANALYZE audit_log");
    await t.db.query("VACUUM ANALYZE audit_events_v1");
    // The partitions that hold the events (the empty ones ahead cost a few pages each, not a cost per event).
    const { rows } = await t.db.query<{ compact: number; old: number }>(
      `SELECT (SELECT sum(pg_total_relation_size(c.oid)) FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
               WHERE i.inhparent = 'audit_log'::regclass AND c.reltuples > 0)::int8 AS compact,
              pg_total_relation_size('audit_events_v1')::int8 AS old`,
    );
    const compact = (rows[0]?.compact ?? 0) / EVENTS;
    const old = (rows[0]?.old ?? 0) / EVENTS;
    process.stdout.write(`audit bytes per event with indexes: compact ${compact.toFixed(0)}, before ${old.toFixed(0)}\n`);
    // The developer is a number (migration 14): the length of its id no longer counts; and
    // no index by writer (migration 16); names by number and IPv4 peers as addresses (migration
    // 17). About 167 bytes of row and 46 of the developer index.
    expect(compact).toBeLessThan(235);
    expect(compact / old).toBeLessThan(0.45);
  });
});
