import type { Queryable } from "./db.js";

/**
 * The SQL of the key hierarchy: the recorded active master key and the developers'
 * wrapped data keys. Unwrapped keys never reach this layer.
 */

/**
 * Records `kekId` as the active master key if none is recorded yet, and returns the
 * recorded one. The first replica to start decides; later ones read its choice.
 */
export async function ensureActiveMasterKey(q: Queryable, kekId: string): Promise<string> {
  await q.query("INSERT INTO master_key_state (singleton, active_kek_id) VALUES (true, $1) ON CONFLICT DO NOTHING", [kekId]);
  return activeMasterKey(q);
}

export async function activeMasterKey(q: Queryable): Promise<string> {
  const { rows } = await q.query<{ active_kek_id: string }>("SELECT active_kek_id FROM master_key_state WHERE singleton");
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

/** A developer's data key as stored: wrapped under `kekId`. */
export interface DataKeyRow {
  developerId: string;
  version: number;
  kekId: string;
  wrappedKey: Buffer;
  state: "active" | "retiring" | "retired";
}

interface RawDataKey {
  developer_id: string;
  version: number;
  kek_id: string;
  wrapped_key: Buffer;
  state: DataKeyRow["state"];
}

const toDataKey = (r: RawDataKey): DataKeyRow => ({
  developerId: r.developer_id,
  version: r.version,
  kekId: r.kek_id,
  wrappedKey: r.wrapped_key,
  state: r.state,
});

const DATA_KEY_COLUMNS = "developer_id, version, kek_id, wrapped_key, state";

/**
 * The developer's active data key. With `forShare`, the row is locked FOR SHARE
 * until the transaction ends, so a rotation (FOR UPDATE) cannot retire it under a
 * write that is encrypting with it.
 */
export async function findActiveDataKey(
  q: Queryable,
  developerId: string,
  options: { forShare?: boolean } = {},
): Promise<DataKeyRow | undefined> {
  const { rows } = await q.query<RawDataKey>(
    `SELECT ${DATA_KEY_COLUMNS} FROM data_keys WHERE developer_id = $1 AND state = 'active'${options.forShare ? " FOR SHARE" : ""}`,
    [developerId],
  );
  return rows[0] ? toDataKey(rows[0]) : undefined;
}

export async function findDataKey(q: Queryable, developerId: string, version: number): Promise<DataKeyRow | undefined> {
  const { rows } = await q.query<RawDataKey>(
    `SELECT ${DATA_KEY_COLUMNS} FROM data_keys WHERE developer_id = $1 AND version = $2`,
    [developerId, version],
  );
  return rows[0] ? toDataKey(rows[0]) : undefined;
}

/**
 * Inserts a developer's first data key unless one exists. Two replicas racing both
 * run this; one insert wins, the other does nothing, and both then read the winner.
 */
export async function insertFirstDataKey(q: Queryable, developerId: string, kekId: string, wrappedKey: Buffer): Promise<void> {
  await q.query(
    `INSERT INTO data_keys (developer_id, version, kek_id, wrapped_key, state)
     VALUES ($1, 1, $2, $3, 'active') ON CONFLICT DO NOTHING`,
    [developerId, kekId, wrappedKey],
  );
}

/**
 * Reserves `count` encryptions under an active data key and returns the new total,
 * or undefined if that version is no longer active. Reserving in blocks keeps the
 * counter exact enough (it only over-counts) without a row update per write.
 */
export async function reserveEncryptions(
  q: Queryable,
  developerId: string,
  version: number,
  count: number,
): Promise<number | undefined> {
  const { rows } = await q.query<{ encryption_count: number }>(
    `UPDATE data_keys SET encryption_count = encryption_count + $3
     WHERE developer_id = $1 AND version = $2 AND state = 'active'
     RETURNING encryption_count`,
    [developerId, version, count],
  );
  return rows[0]?.encryption_count;
}
