import type { Queryable } from "./db.js";
import { DATA_KEY_COLUMNS, type DataKeyRow } from "./key-store.js";

/**
 * The SQL of the master key state: which master key is active, as recorded in
 * Postgres (never inferred from a replica's keyring), and the rewrap of data keys
 * from older master keys to it. Row locks follow the order in key-store.ts.
 */

/**
 * Records `kekId` as the active master key if none is recorded yet, and returns the
 * recorded one. The first replica to start decides; later ones read its choice.
 */
export async function ensureActiveMasterKey(q: Queryable, kekId: string): Promise<string> {
  await q.query("INSERT INTO master_key_state (singleton, active_kek_id) VALUES (true, $1) ON CONFLICT DO NOTHING", [kekId]);
  return activeMasterKey(q);
}

/**
 * The recorded active master key. With `forShare` the row stays locked until the
 * transaction ends, so RotateMasterKey (FOR UPDATE) waits for a rewrap batch that
 * read it and the next batch reads the new one: a key is never rewrapped back.
 */
export async function activeMasterKey(q: Queryable, options: { forShare?: boolean } = {}): Promise<string> {
  const { rows } = await q.query<{ active_kek_id: string }>(
    `SELECT active_kek_id FROM master_key_state WHERE singleton${options.forShare ? " FOR SHARE" : ""}`,
  );
  const row = rows[0];
  if (!row) throw new Error("no active master key is recorded");
  return row.active_kek_id;
}

/** How many data keys each master key wraps; a start-up check that the keyring holds them all. */
export async function dataKeysPerMasterKey(q: Queryable): Promise<Map<string, number>> {
  const { rows } = await q.query<{ kek_id: string; n: number }>(
    "SELECT kek_id, count(*) AS n FROM data_keys WHERE state <> 'retired' GROUP BY kek_id",
  );
  return new Map(rows.map((r) => [r.kek_id, r.n]));
}

/** Records a new active master key; returns the one it replaced. */
export async function setActiveMasterKey(tx: Queryable, kekId: string): Promise<string> {
  const { rows } = await tx.query<{ active_kek_id: string }>("SELECT active_kek_id FROM master_key_state WHERE singleton FOR UPDATE");
  const previous = rows[0]?.active_kek_id;
  if (previous === undefined) throw new Error("no active master key is recorded");
  await tx.query("UPDATE master_key_state SET active_kek_id = $1, updated_at = now() WHERE singleton", [kekId]);
  return previous;
}

/**
 * Live data keys wrapped under one of `fromKekIds` (the old master keys a replica
 * holds), locked for a rewrap. Found through the index on kek_id, so each batch
 * costs the same however many keys earlier batches rewrapped. Rows another
 * transaction holds are skipped (a replica's batch, or a write holding its key FOR
 * SHARE): each key is claimed by one replica at a time and rewrapped once.
 */
export async function lockDataKeysToRewrap(tx: Queryable, fromKekIds: readonly string[], limit: number): Promise<DataKeyRow[]> {
  const { rows } = await tx.query<DataKeyRow>(
    `SELECT ${DATA_KEY_COLUMNS} FROM data_keys
     WHERE kek_id = ANY($1::text[]) AND state <> 'retired'
     LIMIT $2 FOR UPDATE SKIP LOCKED`,
    [fromKekIds, limit],
  );
  return rows;
}

export async function countDataKeysToRewrap(q: Queryable, activeKekId: string): Promise<number> {
  const { rows } = await q.query<{ n: number }>(
    "SELECT count(*) AS n FROM data_keys WHERE kek_id <> $1 AND state <> 'retired'",
    [activeKekId],
  );
  return rows[0]?.n ?? 0;
}

/** Replaces the wrapping of locked data keys (same key bytes, new master key), in one statement. */
export async function rewrapDataKeys(
  tx: Queryable,
  rewrapped: readonly { row: DataKeyRow; wrappedKey: Buffer }[],
  kekId: string,
): Promise<number> {
  if (rewrapped.length === 0) return 0;
  const { rowCount } = await tx.query(
    `UPDATE data_keys k SET kek_id = $1, wrapped_key = w.wrapped_key
     FROM unnest($2::text[], $3::int4[], $4::text[], $5::bytea[]) AS w(developer_id, version, old_kek_id, wrapped_key)
     WHERE k.developer_id = w.developer_id AND k.version = w.version AND k.kek_id = w.old_kek_id`,
    [
      kekId,
      rewrapped.map((r) => r.row.developerId),
      rewrapped.map((r) => r.row.version),
      rewrapped.map((r) => r.row.kekId),
      rewrapped.map((r) => r.wrappedKey),
    ],
  );
  return rowCount;
}
