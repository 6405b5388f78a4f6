import { shredChanges } from "./change-log.js";
import type { Queryable } from "./db.js";

/**
 * The SQL of crypto-shredding: a developer's secrets, versions and data keys
 * deleted in one transaction. Row locks follow the order in key-store.ts.
 */

/** What a shred deleted. */
export interface ShredCounts {
  secrets: number;
  versions: number;
  dataKeys: number;
}

/**
 * Deletes a developer's secrets, their versions and the developer's data keys, in
 * the lock order of key-store.ts: the data keys first (FOR UPDATE, which waits for
 * every write holding the active one), then the secrets (the versions go by
 * cascade, and the count follows through its trigger), then the keys. A write that commits a version
 * under a key while this runs makes the key's deletion fail on the foreign key
 * (23503): the caller retries, and the next attempt deletes that secret too. The
 * count row goes once it is zero (a create that commits meanwhile keeps it). The
 * change log goes last, and the developer's watches start over (change-log.ts).
 */
export async function shredDeveloperRows(tx: Queryable, developerId: string): Promise<ShredCounts> {
  await tx.query("SELECT 1 FROM data_keys WHERE developer_id = $1 ORDER BY version FOR UPDATE", [developerId]);
  const { rows } = await tx.query<{ n: number }>("SELECT count(*) AS n FROM secret_versions WHERE developer_id = $1", [developerId]);
  const secrets = await tx.query("DELETE FROM secrets WHERE developer_id = $1", [developerId]);
  const keys = await tx.query("DELETE FROM data_keys WHERE developer_id = $1", [developerId]);
  await tx.query("DELETE FROM developer_secret_counts WHERE developer_id = $1 AND secrets = 0", [developerId]);
  await shredChanges(tx, developerId);
  return { secrets: secrets.rowCount, versions: rows[0]?.n ?? 0, dataKeys: keys.rowCount };
}
