/**
 * Applies the versioned schema (schema.ts) at start. Several replicas may start at
 * once: each takes a session-level advisory lock on one dedicated connection, so
 * they migrate one after another and each migration is applied exactly once.
 */
import type { Db, Queryable } from "./db.js";
import { DbError } from "./db.js";
import { MIGRATIONS, type Migration } from "./schema.js";

/**
 * The advisory lock key serializing migrations across processes. Fixed forever:
 * replicas of different releases must contend for the same key. (ASCII "secrMIGR".)
 */
const MIGRATION_LOCK_KEY = "8315161629583558482";

const CREATE_SCHEMA_MIGRATIONS = `
CREATE TABLE IF NOT EXISTS schema_migrations (
  version     integer PRIMARY KEY,
  name        text NOT NULL,
  applied_at  timestamptz NOT NULL DEFAULT now()
)`;

/**
 * Bring the database up to the newest migration, and return the versions this
 * call applied (empty when it was already current). Refuses a database that has
 * a version this code does not know, i.e. one migrated by a newer release: running
 * old code on a newer schema could corrupt data.
 *
 * Each migration's SQL runs in its own transaction, together with its row in
 * schema_migrations, so it is applied entirely or not at all. Its SQL must not
 * contain transaction control or statements that cannot run in a transaction
 * (CREATE INDEX CONCURRENTLY).
 */
export async function migrate(db: Db, migrations: readonly Migration[] = MIGRATIONS): Promise<{ applied: number[] }> {
  checkOrdered(migrations);
  return db.session(async (conn) => {
    // Session-level, so it must be taken and released on this same connection;
    // it is also released if the connection dies.
    await conn.query(`SELECT pg_advisory_lock(${MIGRATION_LOCK_KEY})`);
    const unlock = () => conn.query(`SELECT pg_advisory_unlock(${MIGRATION_LOCK_KEY})`);
    let result: { applied: number[] };
    try {
      result = await applyMissing(conn, migrations);
    } catch (e) {
      await unlock().catch(() => undefined); // report the first failure, not this one
      throw e;
    }
    await unlock();
    return result;
  });
}

async function applyMissing(conn: Queryable, migrations: readonly Migration[]): Promise<{ applied: number[] }> {
  await conn.query(CREATE_SCHEMA_MIGRATIONS);
  const { rows } = await conn.query<{ version: number }>("SELECT version FROM schema_migrations ORDER BY version");
  const done = new Set(rows.map((r) => r.version));

  const known = new Set(migrations.map((m) => m.version));
  const unknown = [...done].filter((v) => !known.has(v));
  if (unknown.length > 0) {
    const newest = Math.max(...known, 0);
    throw new Error(
      `database schema has migration(s) ${unknown.join(", ")} that this build does not know (it knows up to ${newest}); ` +
        "it was migrated by a newer release: run that release or newer",
    );
  }

  const applied: number[] = [];
  for (const m of migrations) {
    if (done.has(m.version)) continue;
    await conn.query("BEGIN");
    try {
      await conn.query(m.sql);
      await conn.query("INSERT INTO schema_migrations (version, name) VALUES ($1, $2)", [m.version, m.name]);
      await conn.query("COMMIT");
    } catch (e) {
      await conn.query("ROLLBACK").catch(() => undefined);
      // Name the migration; keep a DbError's SQLSTATE reachable through `cause`.
      if (e instanceof DbError) throw new Error(`migration ${m.version} (${m.name}) failed: ${e.message}`, { cause: e });
      throw e;
    }
    applied.push(m.version);
  }
  return { applied };
}

/** A programming error in schema.ts: versions must be positive and strictly increasing. */
function checkOrdered(migrations: readonly Migration[]): void {
  let previous = 0;
  for (const m of migrations) {
    if (!Number.isInteger(m.version) || m.version <= previous) {
      throw new Error(`migrations must have strictly increasing positive integer versions (at ${m.version})`);
    }
    previous = m.version;
  }
}

/**
 * Every migration this build knows is applied (readiness). A newer schema, migrated
 * by a newer release during a rolling update, counts too: migrations only add.
 */
export async function schemaIsCurrent(db: Queryable): Promise<boolean> {
  const { rows } = await db.query<{ v: number | null }>("SELECT max(version) AS v FROM schema_migrations");
  return (rows[0]?.v ?? 0) >= (MIGRATIONS.at(-1)?.version ?? 0);
}
