import type { Queryable } from "./db.js";

/**
 * The SQL of the time-driven changes to live secrets (schema migration 11): expiry,
 * which moves a secret to the recovery bin, and rotation schedules, which only
 * record that a rotation is due. Like the purge (bin-store.ts), each claims its rows
 * with FOR UPDATE SKIP LOCKED and re-checks the time under the lock, so whichever
 * replicas run the job at once, each change is made by one transaction, and a write
 * that moved the time first is respected.
 */

/** A live secret whose expiry has passed. */
export interface ExpiredName {
  developerId: string;
  name: string;
}

/** A secret the expiry moved to the bin, for its audit event. */
export interface ExpiredRow {
  developerId: string;
  secretId: string;
  name: string;
  version: number;
}

/** A rotation found due, for its audit event. */
export interface RotationDueRow {
  developerId: string;
  secretId: string;
  name: string;
  version: number;
  /** The next_rotation_time that passed. */
  dueTime: Date;
  /** Where the schedule moved on to. */
  nextRotationTime: Date;
}

/** Up to `limit` live secrets whose expiry is at or before `now`, earliest first (no lock: a candidate list). */
export async function findExpired(q: Queryable, now: Date, limit: number): Promise<ExpiredName[]> {
  const { rows } = await q.query<ExpiredName>(
    `SELECT developer_id AS "developerId", name FROM secrets
     WHERE expire_time <= $1 AND delete_time IS NULL ORDER BY expire_time LIMIT $2`,
    [now, limit],
  );
  return rows;
}

/**
 * Moves a developer's named secrets whose expiry is at or before `now` to the bin
 * until `purgeTime`. Rows another transaction holds are skipped (another replica's
 * job, or a write, which then reads the new state); a secret whose expiry a write
 * moved or removed no longer matches and stays.
 */
export async function binExpired(
  tx: Queryable,
  developerId: string,
  names: readonly string[],
  now: Date,
  purgeTime: Date,
): Promise<ExpiredRow[]> {
  const { rows } = await tx.query<ExpiredRow>(
    `WITH due AS (
       SELECT id FROM secrets
       WHERE developer_id = $1 AND name = ANY($2::text[]) AND delete_time IS NULL AND expire_time <= $3
       FOR UPDATE SKIP LOCKED
     )
     UPDATE secrets s SET delete_time = $3, purge_time = $4
     FROM due WHERE s.id = due.id AND s.delete_time IS NULL
     RETURNING s.developer_id AS "developerId", s.id AS "secretId", s.name, s.current_version AS version`,
    [developerId, names, now, purgeTime],
  );
  return rows;
}

/**
 * Records up to `limit` due rotations: for each live secret whose next_rotation_time
 * is at or before `now`, sets rotation_due_time (unless a due rotation is still
 * unanswered) and moves next_rotation_time on by whole periods to the first time
 * after `now`, so a schedule that missed several periods is due once, not once per
 * missed period.
 */
export async function markRotationsDue(tx: Queryable, now: Date, limit: number): Promise<RotationDueRow[]> {
  const { rows } = await tx.query<RotationDueRow>(
    `WITH due AS (
       SELECT id, next_rotation_time AS due_time FROM secrets
       WHERE next_rotation_time <= $1 AND delete_time IS NULL
       ORDER BY next_rotation_time LIMIT $2 FOR UPDATE SKIP LOCKED
     )
     UPDATE secrets s SET
       rotation_due_time = COALESCE(s.rotation_due_time, due.due_time),
       next_rotation_time = s.next_rotation_time + make_interval(secs => s.rotation_period_seconds *
         (floor(extract(epoch FROM ($1::timestamptz - s.next_rotation_time)) / s.rotation_period_seconds) + 1))
     FROM due WHERE s.id = due.id AND s.next_rotation_time <= $1 AND s.delete_time IS NULL
     RETURNING s.developer_id AS "developerId", s.id AS "secretId", s.name, s.current_version AS version,
               due.due_time AS "dueTime", s.next_rotation_time AS "nextRotationTime"`,
    [now, limit],
  );
  return rows;
}

/** The earliest expiry, rotation or purge time still ahead of the job, or null when none is set. */
export async function nextLifecycleTime(q: Queryable): Promise<Date | null> {
  const { rows } = await q.query<{ at: Date | null }>(
    `SELECT LEAST(
       (SELECT min(expire_time) FROM secrets WHERE expire_time IS NOT NULL AND delete_time IS NULL),
       (SELECT min(next_rotation_time) FROM secrets WHERE next_rotation_time IS NOT NULL AND delete_time IS NULL),
       (SELECT min(purge_time) FROM secrets WHERE purge_time IS NOT NULL)
     ) AS at`,
  );
  return rows[0]?.at ?? null;
}
