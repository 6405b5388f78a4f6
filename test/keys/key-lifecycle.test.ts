/**
 * ShredDeveloper when the cache clean-up fails: the deletion and the evictions are
 * done first and unconditionally; the failure is reported, not thrown.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Principal } from "../../src/auth/principal.js";
import { noCache, type SecretCache } from "../../src/cache/secret-cache.js";
import { createDekCache } from "../../src/keys/dek-cache.js";
import { KeyBytes } from "../../src/crypto/key-bytes.js";
import { createLocalKeyProvider } from "../../src/crypto/key-provider.js";
import { createDataKeys } from "../../src/keys/data-keys.js";
import { createKeyLifecycle } from "../../src/keys/key-lifecycle.js";
import * as keyStore from "../../src/store/key-store.js";
import { ensureActiveMasterKey } from "../../src/store/master-key-store.js";
import { insertSecret } from "../../src/store/secret-store.js";
import { createTestDb, testDatabaseKind, type TestDb } from "../support/test-db.js";

const operator: Principal = {
  developerId: "ops",
  scopes: new Set(["secrets:operator"]),
  allowlist: null,
  tokenId: undefined,
  expiresAt: Date.now() / 1000 + 600,
};

describe(`ShredDeveloper with a failing cache clean-up, on ${testDatabaseKind()}`, () => {
  let t: TestDb;
  beforeAll(async () => {
    t = await createTestDb();
    await ensureActiveMasterKey(t.db, "k1");
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  it("deletes, evicts everywhere, and reports the clean-up failure instead of failing", async () => {
    const keyProvider = createLocalKeyProvider(new Map([["k1", KeyBytes.from(randomBytes(32))]]));
    const dataKeys = createDataKeys({ db: t.db, keyProvider, cache: createDekCache() });
    const failing: SecretCache = {
      ...noCache(),
      async evictDeveloper() {
        throw new Error("redis went away");
      },
    };
    const errors: string[] = [];
    const replicaId = `replica-${randomUUID()}`;
    const keys = createKeyLifecycle({
      db: t.db,
      keyProvider,
      dataKeys,
      cache: failing,
      replicaId,
      initialActiveKekId: "k1",
      batchSize: 10,
      pauseMs: 0,
      onError: (what) => errors.push(what),
    });
    await keys.start();
    try {
      const dev = `dev-${randomUUID()}`;
      const dek = await dataKeys.currentKey(dev); // in this replica's memory from now on
      await insertSecret(t.db, {
        id: randomUUID(),
        developerId: dev,
        name: "doomed",
        description: "",
        metadataJson: "{}",
        createdBy: dev,
        ciphertext: randomBytes(40),
        dekVersion: dek.version,
      }, 100);
      expect(dataKeys.inMemory(dev, dek.version)).toBeDefined();

      const result = await keys.shredDeveloper(operator, dev, dev);
      expect(result).toMatchObject({ secretsDeleted: 1, versionsDeleted: 1, dataKeysDeleted: 1, cacheEntriesDeleted: 0, cacheCleanupFailed: true });
      expect(result.replicasEvicted).toBeGreaterThanOrEqual(1);
      expect(errors.some((e) => e.includes("cache clean-up"))).toBe(true);
      // Evicted here, and published for every replica.
      expect(dataKeys.inMemory(dev, dek.version)).toBeUndefined();
      const { rows } = await t.db.query<{ n: number }>(
        "SELECT count(*) AS n FROM key_evictions e JOIN key_eviction_acks a ON a.eviction_id = e.id WHERE e.developer_id = $1 AND a.replica_id = $2",
        [dev, replicaId],
      );
      expect(rows[0]?.n).toBe(1);
      expect(await keyStore.findActiveDataKey(t.db, dev)).toBeUndefined();
    } finally {
      await keys.stop();
    }
  });
});
