import { selectAs } from "./columns.js";
import type { Queryable } from "./db.js";

/**
 * The SQL of developers' data keys, stored wrapped: the active one a write seals
 * under, rotation, and the re-encryption and retirement of the keys rotated away.
 * The recorded active master key and the rewrap are in master-key-store.ts, a
 * shred's deletions in shred-store.ts. Unwrapped keys never reach this layer.
 *
 * Lock order, written here once for the whole store. Every transaction that touches a developer's data keys, secrets and
 * secret count takes its row locks in this order, and never the other way round,
 * so no two of them can wait for each other in a cycle:
 *
 *   1. master_key_state (rewrap: FOR SHARE; RotateMasterKey: FOR UPDATE)
 *   2. the developer's data_keys rows (writes: the active one FOR SHARE, and the
 *      foreign key of every version they insert; rotation: the active one FOR
 *      UPDATE; retirement: a retiring one FOR UPDATE; rewrap: a batch FOR UPDATE
 *      SKIP LOCKED, which never waits; shred: all of them FOR UPDATE, by version)
 *   3. the developer's secrets rows (FOR UPDATE, or inserted: a create's unique
 *      (developer_id, name) entry), then their secret_versions rows
 *   4. developer_secret_counts (the statement triggers on secrets update it after
 *      the secrets rows; a create checks its quota only after that)
 *
 * Postgres still aborts a transaction now and then (40001, 40P01, or a foreign
 * key that a concurrent commit made stale); the service retries those a bounded
 * number of times and then answers ABORTED (conflicts.ts).
 */

/** A developer's data key as stored: wrapped under `kekId`. */
export interface DataKeyRow {
  developerId: string;
  version: number;
  kekId: string;
  /** Null once retired: the key is erased. */
  wrappedKey: Buffer | null;
  state: "active" | "retiring" | "retired";
}

/** The columns of a DataKeyRow, read under its field names (master-key-store.ts reads them too). */
export const DATA_KEY_COLUMNS = selectAs<DataKeyRow>(["developerId", "version", "kekId", "wrappedKey", "state"]);

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
  const { rows } = await q.query<DataKeyRow>(
    `SELECT ${DATA_KEY_COLUMNS} FROM data_keys WHERE developer_id = $1 AND state = 'active'${options.forShare ? " FOR SHARE" : ""}`,
    [developerId],
  );
  return rows[0];
}

export async function findDataKey(q: Queryable, developerId: string, version: number): Promise<DataKeyRow | undefined> {
  const { rows } = await q.query<DataKeyRow>(
    `SELECT ${DATA_KEY_COLUMNS} FROM data_keys WHERE developer_id = $1 AND version = $2`,
    [developerId, version],
  );
  return rows[0];
}

/**
 * A new data key version, unique across all developers and for all time (schema
 * migration 9): what a key is wrapped with, cached under and named by in envelopes.
 */
export async function nextDataKeyVersion(q: Queryable): Promise<number> {
  const { rows } = await q.query<{ v: number }>("SELECT nextval('data_key_version')::int4 AS v");
  return (rows[0] as { v: number }).v;
}

/**
 * Inserts a developer's first active data key unless one is active already. Two
 * replicas racing both run this; one insert wins, the other does nothing (the one
 * active key per developer is a unique index), and both then read the winner.
 */
export async function insertFirstDataKey(
  q: Queryable,
  developerId: string,
  version: number,
  kekId: string,
  wrappedKey: Buffer,
): Promise<void> {
  await q.query(
    `INSERT INTO data_keys (developer_id, version, kek_id, wrapped_key, state)
     VALUES ($1, $2, $3, $4, 'active') ON CONFLICT DO NOTHING`,
    [developerId, version, kekId, wrappedKey],
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

/**
 * Locks the developer's active data key FOR UPDATE (waiting for in-flight writes,
 * which hold it FOR SHARE) for a rotation.
 */
export async function lockActiveForRotation(tx: Queryable, developerId: string): Promise<DataKeyRow | undefined> {
  const { rows } = await tx.query<DataKeyRow>(
    `SELECT ${DATA_KEY_COLUMNS} FROM data_keys WHERE developer_id = $1 AND state = 'active' FOR UPDATE`,
    [developerId],
  );
  return rows[0];
}

/** Demotes the active key to retiring and inserts its successor, in the caller's transaction. */
export async function insertRotatedDataKey(
  tx: Queryable,
  developerId: string,
  previousVersion: number,
  version: number,
  kekId: string,
  wrappedKey: Buffer,
): Promise<void> {
  await tx.query("UPDATE data_keys SET state = 'retiring' WHERE developer_id = $1 AND version = $2 AND state = 'active'", [
    developerId,
    previousVersion,
  ]);
  await tx.query(
    `INSERT INTO data_keys (developer_id, version, kek_id, wrapped_key, state) VALUES ($1, $2, $3, $4, 'active')`,
    [developerId, version, kekId, wrappedKey],
  );
}

/** A stored ciphertext under a retiring data key, with what re-encryption needs. */
export interface StaleCiphertextRow {
  developerId: string;
  secretId: string;
  name: string;
  version: number;
  dekVersion: number;
  ciphertext: Buffer;
}

export async function ciphertextsUnderRetiringKeys(q: Queryable, limit: number): Promise<StaleCiphertextRow[]> {
  const { rows } = await q.query<{
    developer_id: string;
    secret_id: string;
    name: string;
    version: number;
    dek_version: number;
    ciphertext: Buffer;
  }>(
    `SELECT v.developer_id, v.secret_id, s.name, v.version, v.dek_version, v.ciphertext
     FROM data_keys k
     JOIN secret_versions v ON v.developer_id = k.developer_id AND v.dek_version = k.version AND v.dek_version IS NOT NULL
     JOIN secrets s ON s.id = v.secret_id AND s.developer_id = v.developer_id
     WHERE k.state = 'retiring'
     ORDER BY v.developer_id, v.secret_id, v.version LIMIT $1`,
    [limit],
  );
  return rows.map((r) => ({
    developerId: r.developer_id,
    secretId: r.secret_id,
    name: r.name,
    version: r.version,
    dekVersion: r.dek_version,
    ciphertext: r.ciphertext,
  }));
}

/** Compare-and-swap of one version's ciphertext: only if it is still exactly the one that was read. */
export async function swapCiphertext(tx: Queryable, row: StaleCiphertextRow, ciphertext: Buffer, dekVersion: number): Promise<boolean> {
  const { rowCount } = await tx.query(
    `UPDATE secret_versions SET ciphertext = $6, dek_version = $7
     WHERE developer_id = $1 AND secret_id = $2 AND version = $3 AND dek_version = $4 AND ciphertext = $5`,
    [row.developerId, row.secretId, row.version, row.dekVersion, row.ciphertext, ciphertext, dekVersion],
  );
  return rowCount === 1;
}

export async function retiringDataKeys(q: Queryable): Promise<{ developerId: string; version: number }[]> {
  const { rows } = await q.query<{ developer_id: string; version: number }>(
    "SELECT developer_id, version FROM data_keys WHERE state = 'retiring' ORDER BY developer_id, version",
  );
  return rows.map((r) => ({ developerId: r.developer_id, version: r.version }));
}

/**
 * Retires a retiring data key if, under FOR UPDATE and after a recount, no stored
 * ciphertext references it: its wrapped key is erased. Returns whether it retired.
 */
export async function retireIfUnreferenced(tx: Queryable, developerId: string, version: number): Promise<boolean> {
  const locked = await tx.query(
    "SELECT 1 FROM data_keys WHERE developer_id = $1 AND version = $2 AND state = 'retiring' FOR UPDATE",
    [developerId, version],
  );
  if (locked.rowCount === 0) return false;
  const { rows } = await tx.query<{ n: number }>(
    "SELECT count(*) AS n FROM secret_versions WHERE developer_id = $1 AND dek_version = $2 AND dek_version IS NOT NULL",
    [developerId, version],
  );
  if ((rows[0]?.n ?? 0) > 0) return false;
  await tx.query(
    `UPDATE data_keys SET state = 'retired', wrapped_key = NULL, retired_at = now()
     WHERE developer_id = $1 AND version = $2`,
    [developerId, version],
  );
  return true;
}

export async function countCiphertextsToReencrypt(q: Queryable, developerId?: string): Promise<number> {
  const { rows } = await q.query<{ n: number }>(
    `SELECT count(*) AS n FROM data_keys k
     JOIN secret_versions v ON v.developer_id = k.developer_id AND v.dek_version = k.version AND v.dek_version IS NOT NULL
     WHERE k.state = 'retiring' AND ($1::text IS NULL OR k.developer_id = $1)`,
    [developerId ?? null],
  );
  return rows[0]?.n ?? 0;
}

export interface DataKeyInfoRow {
  developerId: string;
  version: number;
  state: DataKeyRow["state"];
  kekId: string;
  encryptionCount: number;
  secretVersions: number;
  createdAt: Date;
}

export async function dataKeyInfos(q: Queryable, developerId: string): Promise<DataKeyInfoRow[]> {
  const { rows } = await q.query<{
    developer_id: string;
    version: number;
    state: DataKeyRow["state"];
    kek_id: string;
    encryption_count: number;
    created_at: Date;
    n: number;
  }>(
    `SELECT k.developer_id, k.version, k.state, k.kek_id, k.encryption_count, k.created_at,
            (SELECT count(*) FROM secret_versions v
             WHERE v.developer_id = k.developer_id AND v.dek_version = k.version AND v.dek_version IS NOT NULL) AS n
     FROM data_keys k WHERE k.developer_id = $1 ORDER BY k.version DESC`,
    [developerId],
  );
  return rows.map((r) => ({
    developerId: r.developer_id,
    version: r.version,
    state: r.state,
    kekId: r.kek_id,
    encryptionCount: r.encryption_count,
    secretVersions: r.n,
    createdAt: r.created_at,
  }));
}
