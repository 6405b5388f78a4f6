import { randomUUID } from "node:crypto";
import { createDekCache } from "../src/keys/dek-cache.js";
import { createLocalKeyProvider, parseKeyring } from "../src/crypto/key-provider.js";
import { sealValue } from "../src/crypto/value-cipher.js";
import { KeyBytes } from "../src/crypto/key-bytes.js";
import { createDataKeys, type DataKeys } from "../src/keys/data-keys.js";
import type { Db, Queryable } from "../src/store/db.js";
import { insertFirstDataKey, reserveEncryptions } from "../src/store/key-store.js";
import { ensureActiveMasterKey } from "../src/store/master-key-store.js";

/**
 * Seeds secrets directly through the store, encrypted exactly as the service would
 * (each developer's DEK, created by the service's own code so that its version
 * comes from the sequence; AAD per row), in multi-row inserts: the benchmark's
 * large tables without an RPC per secret.
 */

/** The service's data keys over `db`, under the first master key of `masterKeys`; `close` zeroizes the keys it unwrapped. */
function openDataKeys(db: Db, masterKeys: string): { dataKeys: DataKeys; firstKeyId: string; close: () => void } {
  const keyProvider = createLocalKeyProvider(parseKeyring(masterKeys));
  const cache = createDekCache();
  const dataKeys = createDataKeys({ db, keyProvider, cache });
  const close = () => {
    cache.clear();
    keyProvider.destroy();
  };
  return { dataKeys, firstKeyId: keyProvider.keyIds()[0] as string, close };
}

/** One secret to insert at version 1, already sealed. */
interface SealedRow {
  id: string;
  developerId: string;
  name: string;
  ciphertext: Buffer;
  dekVersion: number;
}

/** Seals secrets `from`…`to - 1` of one developer under `dek`, with the AAD the service would use. */
function sealRows(
  dek: { key: KeyBytes; version: number },
  developerId: string,
  from: number,
  to: number,
  valueOf: (i: number) => string,
  nameOf: (i: number) => string,
): SealedRow[] {
  const rows: SealedRow[] = [];
  for (let i = from; i < to; i++) {
    const id = randomUUID();
    const name = nameOf(i);
    const ciphertext = sealValue(dek.key, dek.version, Buffer.from(valueOf(i)), { developerId, secretId: id, name, version: 1 });
    rows.push({ id, developerId, name, ciphertext, dekVersion: dek.version });
  }
  return rows;
}

/** Inserts `rows` (any developers) and their first versions in two multi-row statements. */
async function insertRows(q: Queryable, rows: readonly SealedRow[]): Promise<void> {
  const ids = rows.map((r) => r.id);
  const developers = rows.map((r) => r.developerId);
  await q.query(
    `INSERT INTO secrets (id, developer_id, name, description, metadata, current_version, created_at, updated_at, created_by, updated_by)
     SELECT id, dev, name, '', '{}'::jsonb, 1, now(), now(), dev, dev FROM unnest($1::uuid[], $2::text[], $3::text[]) AS t(id, dev, name)`,
    [ids, developers, rows.map((r) => r.name)],
  );
  await q.query(
    `INSERT INTO secret_versions (secret_id, developer_id, version, state, ciphertext, dek_version, created_at, created_by)
     SELECT id, dev, 1, 'enabled', ct, dv, now(), dev FROM unnest($1::uuid[], $2::text[], $3::bytea[], $4::int4[]) AS t(id, dev, ct, dv)`,
    [ids, developers, rows.map((r) => r.ciphertext), rows.map((r) => r.dekVersion)],
  );
}

async function analyze(db: Db): Promise<void> {
  await db.query("ANALYZE secrets");
  await db.query("ANALYZE secret_versions");
  await db.query("ANALYZE data_keys");
}

/** Seeds `count` secrets of one developer, 2,000 to a transaction. */
export async function seedSecrets(
  db: Db,
  masterKeys: string,
  developerId: string,
  count: number,
  valueOf: (i: number) => string,
  nameOf: (i: number) => string,
): Promise<void> {
  const { dataKeys, firstKeyId, close } = openDataKeys(db, masterKeys);
  try {
    await ensureActiveMasterKey(db, firstKeyId);
    const batch = 2_000;
    for (let start = 0; start < count; start += batch) {
      const end = Math.min(count, start + batch);
      await dataKeys.withWriteKey(developerId, (tx, dek) => insertRows(tx, sealRows(dek, developerId, start, end, valueOf, nameOf)), {
        encryptions: end - start,
      });
    }
    await analyze(db);
  } finally {
    close();
  }
}

/**
 * Seeds `perDeveloper` secrets for each of `developerIds`, each developer with a
 * data key of its own, `batch` developers to a transaction. Each key is made as the
 * service makes a developer's first key (DataKeys.wrapNew: wrapped under the active
 * master key, its version from the sequence; the store's insertFirstDataKey; its
 * encryptions reserved), and the batch's secrets go in two multi-row inserts. Keys
 * are created here rather than through withWriteKey, whose transaction holds one
 * developer's key: that took a dozen statements per developer, four here.
 * `concurrency` batches run at once (each holds one of the pool's connections).
 */
export async function seedDevelopers(
  db: Db,
  masterKeys: string,
  developerIds: readonly string[],
  perDeveloper: number,
  valueOf: (developerId: string, i: number) => string,
  nameOf: (i: number) => string,
  options: { batch: number; concurrency: number },
): Promise<void> {
  const { batch, concurrency } = options;
  if (!(Number.isInteger(batch) && batch > 0 && Number.isInteger(concurrency) && concurrency > 0)) {
    throw new Error("seedDevelopers: batch and concurrency must be positive integers");
  }
  const { dataKeys, firstKeyId, close } = openDataKeys(db, masterKeys);
  try {
    await ensureActiveMasterKey(db, firstKeyId);
    let next = 0;
    const lane = async () => {
      while (next < developerIds.length) {
        const start = next;
        next += batch;
        await seedBatch(start);
      }
    };
    const seedBatch = (start: number) =>
      db.transaction(async (tx) => {
        const rows: SealedRow[] = [];
        for (const developerId of developerIds.slice(start, start + batch)) {
          const fresh = KeyBytes.random(32);
          try {
            const wrapped = await dataKeys.wrapNew(tx, developerId, fresh);
            await insertFirstDataKey(tx, developerId, wrapped.version, wrapped.kekId, wrapped.wrappedKey);
            if ((await reserveEncryptions(tx, developerId, wrapped.version, perDeveloper)) === undefined) {
              throw new Error(`developer ${developerId} already had an active data key`);
            }
            rows.push(...sealRows({ key: fresh, version: wrapped.version }, developerId, 0, perDeveloper, (i) => valueOf(developerId, i), nameOf));
          } finally {
            fresh.zeroize();
          }
        }
        await insertRows(tx, rows);
      });
    await Promise.all(Array.from({ length: concurrency }, lane));
    await analyze(db);
  } finally {
    close();
  }
}
