import type { Queryable } from "./db.js";

/**
 * The SQL of a secret's version history. Versions are never deleted while the
 * secret lives: destroying one removes its ciphertext and keeps its row, so the
 * history has no gaps.
 */

export interface VersionRow {
  version: number;
  state: "enabled" | "destroyed";
  createdAt: Date;
  createdBy: string;
}

interface RawVersion {
  version: number;
  state: VersionRow["state"];
  created_at: Date;
  created_by: string;
}

const toVersion = (r: RawVersion): VersionRow => ({
  version: r.version,
  state: r.state,
  createdAt: r.created_at,
  createdBy: r.created_by,
});

export interface NewVersion {
  secretId: string;
  developerId: string;
  version: number;
  ciphertext: Buffer;
  dekVersion: number;
  createdBy: string;
}

export async function insertVersion(tx: Queryable, v: NewVersion): Promise<void> {
  await tx.query(
    `INSERT INTO secret_versions (secret_id, developer_id, version, state, ciphertext, dek_version, created_at, created_by)
     VALUES ($1, $2, $3, 'enabled', $4, $5, now(), $6)`,
    [v.secretId, v.developerId, v.version, v.ciphertext, v.dekVersion, v.createdBy],
  );
}

/** Destroys every still-enabled version up to and including `upTo` (the ones past the retention count). */
export async function destroyVersionsUpTo(tx: Queryable, developerId: string, secretId: string, upTo: number): Promise<number> {
  if (upTo < 1) return 0;
  const { rowCount } = await tx.query(
    `UPDATE secret_versions SET state = 'destroyed', ciphertext = NULL, dek_version = NULL
     WHERE developer_id = $1 AND secret_id = $2 AND version <= $3 AND state = 'enabled'`,
    [developerId, secretId, upTo],
  );
  return rowCount;
}

/** Destroys one version; destroying a destroyed version changes nothing. */
export async function destroyVersion(tx: Queryable, developerId: string, secretId: string, version: number): Promise<void> {
  await tx.query(
    `UPDATE secret_versions SET state = 'destroyed', ciphertext = NULL, dek_version = NULL
     WHERE developer_id = $1 AND secret_id = $2 AND version = $3 AND state = 'enabled'`,
    [developerId, secretId, version],
  );
}

export async function findVersion(q: Queryable, developerId: string, secretId: string, version: number): Promise<VersionRow | undefined> {
  const { rows } = await q.query<RawVersion>(
    `SELECT version, state, created_at, created_by FROM secret_versions
     WHERE developer_id = $1 AND secret_id = $2 AND version = $3`,
    [developerId, secretId, version],
  );
  return rows[0] ? toVersion(rows[0]) : undefined;
}

/** Newest first; `before` is the keyset position (versions strictly below it). */
export async function listVersions(
  q: Queryable,
  developerId: string,
  secretId: string,
  before: number | undefined,
  limit: number,
): Promise<VersionRow[]> {
  const { rows } = await q.query<RawVersion>(
    `SELECT version, state, created_at, created_by FROM secret_versions
     WHERE developer_id = $1 AND secret_id = $2 AND ($3::int IS NULL OR version < $3::int)
     ORDER BY version DESC LIMIT $4`,
    [developerId, secretId, before ?? null, limit],
  );
  return rows.map(toVersion);
}
