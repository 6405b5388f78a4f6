import type { Queryable } from "./db.js";
import { conditions } from "./conditions.js";

/**
 * The SQL of the change log (schema migration 12), which WatchSecrets reads. Every
 * change that alters what a name resolves to, or that a watcher is told of, appends
 * here in the transaction that makes it, as the last statement that takes a lock:
 * the developer's revision row, after the secret rows and the developer's count
 * (lock order, key-store.ts). So revisions are gap-free and in commit order, and
 * the log is the source of truth; the notification sent at commit only wakes the
 * replicas' watchers, which then read the log.
 */

/** The channel of the notification a commit that appended changes sends; the payload is the developer id. */
export const CHANGES_CHANNEL = "secret_changes";

/** What a change did (WatchEventType in the proto, stored as its number). */
export const CHANGE_KINDS = { created: 1, updated: 2, deleted: 3, versionDestroyed: 4, rotationDue: 5 } as const;
export type ChangeKind = keyof typeof CHANGE_KINDS;

/** One change to append. */
export interface Change {
  kind: ChangeKind;
  name: string;
  /** The current version after the change (for versionDestroyed, the destroyed version). */
  version: number;
}

/** One change as the log holds it. */
export interface ChangeRow {
  revision: number;
  kind: number;
  name: string;
  version: number;
  changeTime: Date;
}

/**
 * Appends `changes` for one developer, in order, under the next revisions, and
 * queues the notification that goes out at commit. Returns the last revision.
 */
export async function appendChanges(tx: Queryable, developerId: string, changes: readonly Change[], at: Date): Promise<number> {
  const { rows } = await tx.query<{ revision: number }>(
    `WITH r AS (
       INSERT INTO developer_revisions AS d (developer_id, revision) VALUES ($1, $2::bigint)
       ON CONFLICT (developer_id) DO UPDATE SET revision = d.revision + $2::bigint
       RETURNING revision
     ), c AS (
       INSERT INTO secret_changes (developer_id, revision, kind, name, version, change_time)
       SELECT $1, r.revision - $2::bigint + c.ord, c.kind, c.name, c.version, $6
       FROM r, unnest($3::smallint[], $4::text[], $5::int[]) WITH ORDINALITY AS c(kind, name, version, ord)
       RETURNING revision
     )
     SELECT max(revision) AS revision, pg_notify('${CHANGES_CHANNEL}', $1) FROM c`,
    [developerId, changes.length, changes.map((c) => CHANGE_KINDS[c.kind]), changes.map((c) => c.name), changes.map((c) => c.version), at],
  );
  return rows[0]?.revision ?? 0;
}

/** The developer's revision and the last revision the log no longer holds (0 and 0 before any change). */
export async function revisionOf(q: Queryable, developerId: string): Promise<{ revision: number; compacted: number }> {
  const { rows } = await q.query<{ revision: number; compacted: number }>(
    "SELECT revision, compacted_revision AS compacted FROM developer_revisions WHERE developer_id = $1",
    [developerId],
  );
  return rows[0] ?? { revision: 0, compacted: 0 };
}

/** Up to `limit` changes after `after`, oldest first; with the revision state read in the same statement. */
export async function readChanges(
  q: Queryable,
  developerId: string,
  after: number,
  limit: number,
): Promise<{ changes: ChangeRow[]; compacted: number }> {
  const { rows } = await q.query<ChangeRow & { compacted: number }>(
    `SELECT c.revision, c.kind, c.name, c.version, c.change_time AS "changeTime", d.compacted_revision AS compacted
     FROM developer_revisions d
     LEFT JOIN LATERAL (
       SELECT * FROM secret_changes x WHERE x.developer_id = d.developer_id AND x.revision > $2 ORDER BY x.revision LIMIT $3
     ) c ON true
     WHERE d.developer_id = $1
     ORDER BY c.revision`,
    [developerId, after, limit],
  );
  const compacted = rows[0]?.compacted ?? 0;
  return { changes: rows.filter((r) => r.revision !== null).map(({ compacted: _, ...c }) => c), compacted };
}

/** A watched secret at the snapshot's revision. */
export interface SnapshotRow {
  name: string;
  version: number;
}

/**
 * The live secrets a watch covers (these names, or this prefix and, with an
 * allowlist, those names) and the developer's revision, in one statement, so the
 * snapshot stands exactly at that revision.
 */
export async function snapshot(
  q: Queryable,
  developerId: string,
  filter: { names: readonly string[] | undefined; prefix: string; onlyNames: readonly string[] | undefined },
): Promise<{ revision: number; secrets: SnapshotRow[] }> {
  const params: unknown[] = [developerId];
  const where = conditions(params, "developer_id = $1", "delete_time IS NULL");
  where.nameIn(filter.names);
  where.namePrefix(filter.prefix);
  where.nameIn(filter.onlyNames);
  const { rows } = await q.query<{ revision: number; name: string | null; version: number | null }>(
    `SELECT (SELECT revision FROM developer_revisions WHERE developer_id = $1) AS revision, s.name, s.version
     FROM (SELECT 1) AS one
     LEFT JOIN (SELECT name, current_version AS version FROM secrets WHERE ${where.sql}) s ON true
     ORDER BY s.name`,
    params,
  );
  return {
    revision: rows[0]?.revision ?? 0,
    secrets: rows.filter((r) => r.name !== null).map((r) => ({ name: r.name as string, version: r.version as number })),
  };
}

/**
 * Drops the changes committed before `before`, at most `limit` of them, and records
 * per developer the last revision dropped. Returns how many went.
 */
export async function trimChanges(tx: Queryable, before: Date, limit: number): Promise<number> {
  const { rows } = await tx.query<{ n: number }>(
    `WITH gone AS (
       DELETE FROM secret_changes WHERE (developer_id, revision) IN (
         SELECT developer_id, revision FROM secret_changes WHERE change_time < $1 ORDER BY change_time LIMIT $2
       )
       RETURNING developer_id, revision
     ), per AS (
       SELECT developer_id, max(revision) AS revision, count(*) AS n FROM gone GROUP BY developer_id
     ), marked AS (
       UPDATE developer_revisions d SET compacted_revision = GREATEST(d.compacted_revision, per.revision)
       FROM per WHERE d.developer_id = per.developer_id
     )
     SELECT COALESCE(sum(n), 0)::int AS n FROM per`,
    [before, limit],
  );
  return rows[0]?.n ?? 0;
}

/**
 * A shred: the developer's log goes, and the revision moves one past it, all of it
 * compacted, so a watch of the developer ends FAILED_PRECONDITION and starts over
 * from a snapshot of nothing rather than miss what the shred removed.
 */
export async function shredChanges(tx: Queryable, developerId: string): Promise<void> {
  await tx.query("DELETE FROM secret_changes WHERE developer_id = $1", [developerId]);
  await tx.query(
    `UPDATE developer_revisions SET revision = revision + 1, compacted_revision = revision + 1 WHERE developer_id = $1`,
    [developerId],
  );
  await tx.query(`SELECT pg_notify('${CHANGES_CHANNEL}', $1)`, [developerId]);
}
