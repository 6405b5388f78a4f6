import type pg from "pg";

/**
 * How far the audit trail has grown: audit_log's partitions with their indexes, and
 * the WAL position. Taken around a stretch of calls, the difference per call is what
 * an audited call costs Postgres in disk and in WAL (docs/operations.md, 4.3).
 */
export interface AuditGrowth {
  bytes: number;
  lsn: string;
}

export async function sampleAuditGrowth(db: pg.Client): Promise<AuditGrowth> {
  const { rows } = await db.query<{ b: string; lsn: string }>(
    `SELECT COALESCE((SELECT sum(pg_total_relation_size(inhrelid)) FROM pg_inherits WHERE inhparent = 'audit_log'::regclass), 0)::int8 AS b,
            pg_current_wal_lsn()::text AS lsn`,
  );
  return { bytes: Number(rows[0]?.b), lsn: rows[0]?.lsn as string };
}

/** WAL bytes written from `a` to `b`. */
export async function walBetween(db: pg.Client, a: string, b: string): Promise<number> {
  return Number((await db.query<{ d: string }>("SELECT pg_wal_lsn_diff($1, $2)::int8 AS d", [b, a])).rows[0]?.d);
}
