import { AppError } from "../api/errors.js";
import { selectAs } from "./columns.js";
import { conditions } from "./conditions.js";
import { isUniqueViolation, type Queryable } from "./db.js";

/**
 * The SQL of secrets and their versions. Every statement is filtered by developer
 * id: there is no query here that can reach another developer's row. Runs unchanged
 * on Postgres and PGlite (see db.ts for the normalization both adapters share).
 */

/** A secret's attributes as stored. */
export interface SecretRow {
  id: string;
  developerId: string;
  name: string;
  description: string;
  metadata: Record<string, unknown>;
  currentVersion: number;
  createdAt: Date;
  updatedAt: Date;
  createdBy: string;
  updatedBy: string;
  /** Set while the secret is in the recovery bin (bin-store.ts); null for a live secret. */
  deleteTime: Date | null;
  purgeTime: Date | null;
  /** When the lifecycle job moves it to the bin (schema migration 11); null: never. */
  expireTime: Date | null;
  /** The rotation schedule: both set or both null. */
  nextRotationTime: Date | null;
  rotationPeriodSeconds: number | null;
  /** Set from the first RotationDue event that no new value has answered yet. */
  rotationDueTime: Date | null;
}

/** One version's ciphertext, with what is needed to open it in a single round trip. */
export interface SealedVersionRow {
  secretId: string;
  name: string;
  version: number;
  state: "enabled" | "destroyed";
  ciphertext: Buffer | null;
  dekVersion: number | null;
  /** The wrapped DEK of `dekVersion` and the master key it is wrapped under. */
  kekId: string | null;
  wrappedKey: Buffer | null;
}

export const SECRET_COLUMNS = selectAs<SecretRow>([
  "id",
  "developerId",
  "name",
  "description",
  "metadata",
  "currentVersion",
  "createdAt",
  "updatedAt",
  "createdBy",
  "updatedBy",
  "deleteTime",
  "purgeTime",
  "expireTime",
  "nextRotationTime",
  "rotationPeriodSeconds",
  "rotationDueTime",
]);

/** A rotation schedule as stored. */
export interface RotationSchedule {
  nextRotationTime: Date;
  periodSeconds: number;
}

export interface NewSecret {
  id: string;
  developerId: string;
  name: string;
  description: string;
  metadataJson: string;
  createdBy: string;
  ciphertext: Buffer;
  dekVersion: number;
  /** Absent or null: the secret does not expire. */
  expireTime?: Date | null;
  /** Absent or null: no rotation schedule. */
  rotation?: RotationSchedule | null;
}

/**
 * Inserts a secret at version 1 with its first version row, unless its developer
 * then stores more than `maxSecrets` (QUOTA_EXCEEDED; the caller's transaction
 * rolls back). A taken name is SECRET_EXISTS.
 *
 * The quota is read from the developer's count, which the triggers on `secrets`
 * keep (schema migration 3), after the insert: the trigger's upsert locks the count
 * until the transaction ends, so of concurrent creates at the limit each sees the
 * ones committed before it. The count comes after the secret row, as in every other
 * path (store/key-store.ts, lock order): taking it first deadlocked against a delete
 * of the same name, which holds the secret row and then updates the count.
 */
export async function insertSecret(tx: Queryable, s: NewSecret, maxSecrets: number): Promise<SecretRow> {
  let row: SecretRow;
  try {
    const { rows } = await tx.query<SecretRow>(
      `WITH s AS (
         INSERT INTO secrets (id, developer_id, name, description, metadata, current_version,
                              created_at, updated_at, created_by, updated_by,
                              expire_time, next_rotation_time, rotation_period_seconds)
         VALUES ($1, $2, $3, $4, $5::jsonb, 1, now(), now(), $6, $6, $9, $10, $11)
         RETURNING *
       ), v AS (
         INSERT INTO secret_versions (secret_id, developer_id, version, state, ciphertext, dek_version, created_at, created_by)
         SELECT id, developer_id, 1, 'enabled', $7, $8, created_at, created_by FROM s
       )
       SELECT ${SECRET_COLUMNS} FROM s`,
      [
        s.id, s.developerId, s.name, s.description, s.metadataJson, s.createdBy, s.ciphertext, s.dekVersion,
        s.expireTime ?? null, s.rotation?.nextRotationTime ?? null, s.rotation?.periodSeconds ?? null,
      ],
    );
    row = rows[0] as SecretRow; // an INSERT … RETURNING that did not throw returned its row
  } catch (e) {
    if (isUniqueViolation(e, "secrets_developer_name_key")) {
      throw new AppError("SECRET_EXISTS", "a secret with this name already exists", { field: "name" }, { cause: e });
    }
    throw e;
  }
  await requireWithinQuota(tx, s.developerId, maxSecrets);
  return row;
}

/**
 * QUOTA_EXCEEDED when the developer now stores more than `maxSecrets` live secrets;
 * read after the change that added one (a create, a restore), whose trigger locked
 * the count until the transaction ends.
 */
export async function requireWithinQuota(tx: Queryable, developerId: string, maxSecrets: number): Promise<void> {
  const { rows: counts } = await tx.query<{ secrets: number }>(
    "SELECT secrets FROM developer_secret_counts WHERE developer_id = $1",
    [developerId],
  );
  if ((counts[0]?.secrets ?? 0) > maxSecrets) {
    throw new AppError("QUOTA_EXCEEDED", `a developer may store at most ${maxSecrets} secrets`, { limit: String(maxSecrets) });
  }
}

/** A live secret's attributes; `forUpdate` locks the row for the rest of the transaction. */
export async function findSecret(
  q: Queryable,
  developerId: string,
  name: string,
  options: { forUpdate?: boolean } = {},
): Promise<SecretRow | undefined> {
  const { rows } = await q.query<SecretRow>(
    `SELECT ${SECRET_COLUMNS} FROM secrets WHERE developer_id = $1 AND name = $2 AND delete_time IS NULL${options.forUpdate ? " FOR UPDATE" : ""}`,
    [developerId, name],
  );
  return rows[0];
}

export interface ListQuery {
  developerId: string;
  /** Keyset: rows strictly after this name (and, listing the bin, this id). */
  afterName: string | undefined;
  afterId?: string;
  /** List the recovery bin (ordered by name, then id) instead of the live secrets. */
  binned?: boolean;
  /** Literal prefix; names are ASCII below 0x7f, so [prefix, prefix + 0x7f) is exactly the prefix range. */
  namePrefix: string;
  /** JSON containment filter, as JSON text; undefined matches all. */
  metadataFilterJson: string | undefined;
  /** Restrict to these names (a token's allowlist); undefined means no restriction. */
  onlyNames: readonly string[] | undefined;
  /** Only secrets that expire before this time. */
  expiresBefore?: Date;
  /** Only secrets whose rotation is due at this time: a due time is set, or the next rotation time has passed. */
  rotationDueAt?: Date;
  limit: number;
}

/** One page of secrets ordered by name (byte order: names are COLLATE "C"); the bin's by name, then id. */
export async function listSecrets(q: Queryable, l: ListQuery): Promise<SecretRow[]> {
  const params: unknown[] = [l.developerId, l.limit];
  const where = conditions(params, "developer_id = $1", l.binned ? "delete_time IS NOT NULL" : "delete_time IS NULL");
  if (l.afterName !== undefined && l.afterId !== undefined) {
    params.push(l.afterName, l.afterId);
    where.push(`(name, id) > ($${params.length - 1}, $${params.length}::uuid)`);
  } else if (l.afterName !== undefined) where.add((p) => `name > ${p}`, l.afterName);
  where.namePrefix(l.namePrefix);
  if (l.metadataFilterJson !== undefined) where.add((p) => `metadata @> ${p}::jsonb`, l.metadataFilterJson);
  where.nameIn(l.onlyNames);
  if (l.expiresBefore !== undefined) where.add((p) => `expire_time < ${p}`, l.expiresBefore);
  if (l.rotationDueAt !== undefined) {
    where.add((p) => `(rotation_due_time IS NOT NULL OR next_rotation_time <= ${p})`, l.rotationDueAt);
  }
  const { rows } = await q.query<SecretRow>(
    `SELECT ${SECRET_COLUMNS} FROM secrets WHERE ${where.sql} ORDER BY ${l.binned ? "name, id" : "name"} LIMIT $2`,
    params,
  );
  return rows;
}

export interface AttributeChange {
  description: string | undefined;
  metadataJson: string | undefined;
  /** Set when the change wrote a new version; a new value also answers a due rotation. */
  newVersion: number | undefined;
  /** A new expiry, null to remove it, undefined to keep it. */
  expireTime?: Date | null;
  /** A new schedule (its due state starts afresh), null to remove it, undefined to keep it. */
  rotation?: RotationSchedule | null;
  updatedBy: string;
}

/** Applies an update to a locked secret row; fields left undefined keep their value. */
export async function updateSecretAttributes(
  tx: Queryable,
  developerId: string,
  secretId: string,
  c: AttributeChange,
): Promise<SecretRow> {
  const { rows } = await tx.query<SecretRow>(
    `UPDATE secrets SET
       description = COALESCE($3, description),
       metadata = COALESCE($4::jsonb, metadata),
       current_version = COALESCE($5::int, current_version),
       updated_at = now(),
       updated_by = $6,
       expire_time = CASE WHEN $7 THEN $8::timestamptz ELSE expire_time END,
       next_rotation_time = CASE WHEN $9 THEN $10::timestamptz ELSE next_rotation_time END,
       rotation_period_seconds = CASE WHEN $9 THEN $11::bigint ELSE rotation_period_seconds END,
       rotation_due_time = CASE WHEN $9 OR $5::int IS NOT NULL THEN NULL ELSE rotation_due_time END
     WHERE developer_id = $1 AND id = $2
     RETURNING ${SECRET_COLUMNS}`,
    [
      developerId, secretId, c.description ?? null, c.metadataJson ?? null, c.newVersion ?? null, c.updatedBy,
      c.expireTime !== undefined, c.expireTime ?? null,
      c.rotation !== undefined, c.rotation?.nextRotationTime ?? null, c.rotation?.periodSeconds ?? null,
    ],
  );
  const row = rows[0];
  if (!row) throw new Error("updated secret row vanished under its lock");
  return row;
}

/** Deletes a secret and, by cascade, every version. Returns whether a row went. */
export async function deleteSecretById(tx: Queryable, developerId: string, secretId: string): Promise<boolean> {
  const { rowCount } = await tx.query("DELETE FROM secrets WHERE developer_id = $1 AND id = $2", [developerId, secretId]);
  return rowCount > 0;
}

const SEALED_COLUMNS = selectAs<SealedVersionRow>([
  "secretId",
  "name",
  "version",
  "state",
  "ciphertext",
  "dekVersion",
  "kekId",
  "wrappedKey",
]);

/**
 * One version of a secret (0 = current) with its ciphertext and wrapped DEK: one
 * query, so a lookup with a cold DEK cache still costs a single round trip. Through
 * the database function whose plan Postgres keeps (schema migration 5): the same
 * join sent as text cost more to plan than to run.
 */
export async function findSealedVersion(
  q: Queryable,
  developerId: string,
  name: string,
  version: number,
): Promise<SealedVersionRow | undefined> {
  const { rows } = await q.query<SealedVersionRow>(`SELECT ${SEALED_COLUMNS} FROM secret_sealed_version($1, $2, $3)`, [
    developerId,
    name,
    version,
  ]);
  return rows[0];
}

/**
 * The current versions of secrets of several developers in one query (through the
 * database function of schema migration 8, whose plan Postgres keeps): each row
 * comes back with the developer it belongs to, read from the row itself, so a
 * caller can be handed only its own developer's rows. Missing secrets are absent.
 */
export async function findSealedCurrentOfMany(
  q: Queryable,
  wanted: readonly { developerId: string; name: string }[],
): Promise<(SealedVersionRow & { developerId: string })[]> {
  const { rows } = await q.query<SealedVersionRow & { developerId: string }>(
    `SELECT ${SEALED_COLUMNS}, developer_id AS "developerId" FROM secret_sealed_current($1, $2)`,
    [wanted.map((w) => w.developerId), wanted.map((w) => w.name)],
  );
  return rows;
}

/** The current versions of several secrets of one developer in one query; missing names are simply absent. */
export async function findSealedCurrent(
  q: Queryable,
  developerId: string,
  names: readonly string[],
): Promise<SealedVersionRow[]> {
  const rows = await findSealedCurrentOfMany(
    q,
    names.map((name) => ({ developerId, name })),
  );
  return rows.map(({ developerId: _, ...row }) => row);
}
