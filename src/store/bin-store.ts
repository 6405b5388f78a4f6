import { AppError } from "../api/errors.js";
import { isUniqueViolation, type Queryable } from "./db.js";
import { SECRET_COLUMNS, type SecretRow } from "./secret-store.js";

/**
 * The SQL of the recovery bin (schema migration 10): a deleted secret keeps its row
 * and its versions, marked with `delete_time` and `purge_time`, until it is restored
 * or purged. Only live secrets hold a name, so every read by name ignores binned
 * rows. Row locks follow the order in key-store.ts: the secret row alone (then, by
 * cascade or trigger, its versions and the developer's count).
 */

/** Which binned secret: the most recently deleted one of a name, or one id. */
export type BinnedTarget = { name: string } | { id: string };

/** Moves a locked live secret to the bin until `purgeTime`. */
export async function binSecret(tx: Queryable, developerId: string, secretId: string, deleteTime: Date, purgeTime: Date): Promise<void> {
  await tx.query(
    "UPDATE secrets SET delete_time = $3, purge_time = $4 WHERE developer_id = $1 AND id = $2 AND delete_time IS NULL",
    [developerId, secretId, deleteTime, purgeTime],
  );
}

/** A binned secret, or undefined; `forUpdate` locks it (a purge that holds it makes this wait, then find nothing). */
export async function findBinned(q: Queryable, developerId: string, target: BinnedTarget, forUpdate = false): Promise<SecretRow | undefined> {
  const [column, key] = "id" in target ? ["id", target.id] : ["name", target.name];
  const { rows } = await q.query<SecretRow>(
    `SELECT ${SECRET_COLUMNS} FROM secrets
     WHERE developer_id = $1 AND ${column} = $2 AND delete_time IS NOT NULL
     ORDER BY delete_time DESC, id LIMIT 1${forUpdate ? " FOR UPDATE" : ""}`,
    [developerId, key],
  );
  return rows[0];
}

/**
 * Brings a locked binned secret back. While a live secret holds its name the unique
 * index refuses it: RESTORE_NAME_TAKEN, and the caller's transaction rolls back. An
 * expiry that has passed by `now` is removed, or the secret would expire again at once.
 */
export async function restoreBinned(tx: Queryable, developerId: string, secretId: string, now: Date): Promise<SecretRow> {
  try {
    const { rows } = await tx.query<SecretRow>(
      `UPDATE secrets SET delete_time = NULL, purge_time = NULL,
         expire_time = CASE WHEN expire_time <= $3 THEN NULL ELSE expire_time END
       WHERE developer_id = $1 AND id = $2 AND delete_time IS NOT NULL
       RETURNING ${SECRET_COLUMNS}`,
      [developerId, secretId, now],
    );
    const row = rows[0];
    if (!row) throw new Error("binned secret row vanished under its lock");
    return row;
  } catch (e) {
    if (isUniqueViolation(e, "secrets_developer_name_key")) {
      throw new AppError("RESTORE_NAME_TAKEN", "a live secret holds this name; delete it or restore by id later", { field: "name" }, { cause: e });
    }
    throw e;
  }
}

/** A purged secret, for its audit event. */
export interface PurgedRow {
  developerId: string;
  secretId: string;
  name: string;
  version: number;
}

/**
 * Deletes up to `limit` binned secrets whose purge time is at or before `now`, with
 * their versions (by cascade). Rows another transaction holds are skipped (another
 * replica's purge, or a restore), so each secret is purged by one transaction only;
 * a row restored meanwhile no longer matches and stays.
 */
export async function purgeDue(tx: Queryable, now: Date, limit: number): Promise<PurgedRow[]> {
  const { rows } = await tx.query<PurgedRow>(
    `WITH due AS (
       SELECT id FROM secrets WHERE purge_time <= $1 ORDER BY purge_time LIMIT $2 FOR UPDATE SKIP LOCKED
     )
     DELETE FROM secrets s USING due
     WHERE s.id = due.id AND s.purge_time IS NOT NULL
     RETURNING s.developer_id AS "developerId", s.id AS "secretId", s.name, s.current_version AS version`,
    [now, limit],
  );
  return rows;
}
