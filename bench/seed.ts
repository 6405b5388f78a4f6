import { randomUUID } from "node:crypto";
import { createDekCache } from "../src/crypto/dek-cache.js";
import { createLocalKeyProvider, parseKeyring } from "../src/crypto/key-provider.js";
import { sealValue } from "../src/crypto/value-cipher.js";
import { createDataKeys, type DataKey, type DataKeys } from "../src/secrets/data-keys.js";
import type { Db, Queryable } from "../src/store/db.js";
import { ensureActiveMasterKey } from "../src/store/key-store.js";

/**
 * Seeds secrets directly through the store, encrypted exactly as the service would
 * (each developer's DEK, created by the service's own code so that its version
 * comes from the sequence; AAD per row), in multi-row inserts: the benchmark's
 * large tables without an RPC per secret.
 */

/** The service's data keys over `db`, under the first master key of `masterKeys`; `close` zeroizes the keys it unwrapped. */
function openDataKeys(db: Db, masterKeys: string): { dataKeys: DataKeys; firstKeyId: string; close: () => void } {
  const keyProvider = createLocalKeyProvider(parseKeyring(masterKeys));
  // Large enough to hold every seeded developer's key: a seed never unwraps one twice.
  const cache = createDekCache({ maxEntries: 1_000_000 });
  const dataKeys = createDataKeys({ db, keyProvider, cache });
  const close = () => {
    cache.clear();
    keyProvider.destroy();
  };
  return { dataKeys, firstKeyId: keyProvider.keyIds()[0] as string, close };
}

/** Seals and inserts secrets `from`…`to - 1` of one developer, version 1, inside the write transaction `tx`. */
async function insertSealed(
  tx: Queryable,
  dek: DataKey,
  developerId: string,
  from: number,
  to: number,
  valueOf: (i: number) => string,
  nameOf: (i: number) => string,
): Promise<void> {
  const ids: string[] = [];
  const names: string[] = [];
  const ciphertexts: Buffer[] = [];
  for (let i = from; i < to; i++) {
    const id = randomUUID();
    const name = nameOf(i);
    ids.push(id);
    names.push(name);
    ciphertexts.push(sealValue(dek.key, dek.version, Buffer.from(valueOf(i)), { developerId, secretId: id, name, version: 1 }));
  }
  await tx.query(
    `INSERT INTO secrets (id, developer_id, name, description, metadata, current_version, created_at, updated_at, created_by, updated_by)
     SELECT id, $1, name, '', '{}'::jsonb, 1, now(), now(), $1, $1 FROM unnest($2::uuid[], $3::text[]) AS t(id, name)`,
    [developerId, ids, names],
  );
  await tx.query(
    `INSERT INTO secret_versions (secret_id, developer_id, version, state, ciphertext, dek_version, created_at, created_by)
     SELECT id, $1, 1, 'enabled', ct, $4, now(), $1 FROM unnest($2::uuid[], $3::bytea[]) AS t(id, ct)`,
    [developerId, ids, ciphertexts, dek.version],
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
      await dataKeys.withWriteKey(developerId, (tx, dek) => insertSealed(tx, dek, developerId, start, end, valueOf, nameOf), {
        encryptions: end - start,
      });
    }
    await analyze(db);
  } finally {
    close();
  }
}

/**
 * Seeds `perDeveloper` secrets for each of `developerIds`: one write (one new data
 * key, one transaction) per developer, as the service's first write of a developer
 * would, with `concurrency` developers in progress at once (at most the pool's
 * connections are used). A data key belongs to one developer, and withWriteKey
 * locks it in its own transaction, so developers cannot share one.
 */
export async function seedDevelopers(
  db: Db,
  masterKeys: string,
  developerIds: readonly string[],
  perDeveloper: number,
  valueOf: (developerId: string, i: number) => string,
  nameOf: (i: number) => string,
  concurrency: number,
): Promise<void> {
  const { dataKeys, firstKeyId, close } = openDataKeys(db, masterKeys);
  try {
    await ensureActiveMasterKey(db, firstKeyId);
    let next = 0;
    const lane = async () => {
      while (next < developerIds.length) {
        const developerId = developerIds[next++] as string;
        await dataKeys.withWriteKey(
          developerId,
          (tx, dek) => insertSealed(tx, dek, developerId, 0, perDeveloper, (i) => valueOf(developerId, i), nameOf),
          { encryptions: perDeveloper },
        );
      }
    };
    await Promise.all(Array.from({ length: Math.max(1, concurrency) }, lane));
    await analyze(db);
  } finally {
    close();
  }
}
