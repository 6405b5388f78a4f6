import { randomUUID } from "node:crypto";
import { createDekCache } from "../src/crypto/dek-cache.js";
import { createLocalKeyProvider, parseKeyring } from "../src/crypto/key-provider.js";
import { sealValue } from "../src/crypto/value-cipher.js";
import { createDataKeys } from "../src/secrets/data-keys.js";
import type { Db } from "../src/store/db.js";
import { ensureActiveMasterKey } from "../src/store/key-store.js";

/**
 * Seeds secrets for one developer directly through the store, encrypted exactly as
 * the service would (the developer's DEK, AAD per row), in multi-row inserts: the
 * benchmark's 100,000-secret table without 100,000 RPCs.
 */
export async function seedSecrets(
  db: Db,
  masterKeys: string,
  developerId: string,
  count: number,
  valueOf: (i: number) => string,
  nameOf: (i: number) => string,
): Promise<void> {
  const keyring = parseKeyring(masterKeys);
  const keyProvider = createLocalKeyProvider(keyring);
  const firstKeyId = keyProvider.keyIds()[0] as string;
  await ensureActiveMasterKey(db, firstKeyId);
  const dataKeys = createDataKeys({ db, keyProvider, cache: createDekCache() });
  const batch = 2_000;
  for (let start = 0; start < count; start += batch) {
    const n = Math.min(batch, count - start);
    await dataKeys.withWriteKey(developerId, async (tx, dek) => {
      const ids: string[] = [];
      const names: string[] = [];
      const ciphertexts: Buffer[] = [];
      for (let i = start; i < start + n; i++) {
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
    }, { encryptions: n });
  }
  await db.query("ANALYZE secrets");
  await db.query("ANALYZE secret_versions");
  keyProvider.destroy();
}
