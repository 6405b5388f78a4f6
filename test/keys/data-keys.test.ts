/**
 * The developer data keys a write seals under (createDataKeys) on a real database:
 * the active key remembered between writes, a remembered key gone stale (rotated or
 * shredded by another replica), and the first key an update must not create.
 */
import { randomBytes } from "node:crypto";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createDekCache } from "../../src/keys/dek-cache.js";
import { KeyBytes } from "../../src/crypto/key-bytes.js";
import { createLocalKeyProvider, type KeyProvider } from "../../src/crypto/key-provider.js";
import { openValue, sealValue } from "../../src/crypto/value-cipher.js";
import { SUBJECT_PATTERN } from "../../src/auth/principal.js";
import { CACHE_ENTRY_KEY_OWNER, loadCacheEntryKey } from "../../src/keys/cache-entry-key.js";
import { DEK_ROTATE_AT, createDataKeys, type DataKeys } from "../../src/keys/data-keys.js";
import type { Db, QueryResult } from "../../src/store/db.js";
import * as keyStore from "../../src/store/key-store.js";
import { ensureActiveMasterKey } from "../../src/store/master-key-store.js";
import { shredDeveloperRows } from "../../src/store/shred-store.js";
import { createTestDb, testDatabaseKind, type TestDb } from "../support/test-db.js";

const newDeveloper = () => `dev-${randomBytes(6).toString("hex")}`;
const ACTIVE_KEY_READ = /FROM data_keys WHERE developer_id = \$1 AND state = 'active'$/;

/** The Db, counting the reads of a developer's active key made outside a write's transaction. */
function counting(db: Db): { db: Db; activeReads: () => number } {
  let n = 0;
  return {
    db: {
      ...db,
      query<R>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
        if (ACTIVE_KEY_READ.test(text.trim())) n += 1;
        return db.query<R>(text, params);
      },
    },
    activeReads: () => n,
  };
}

describe(`data keys on ${testDatabaseKind()}`, () => {
  let t: TestDb;
  const kek = KeyBytes.from(randomBytes(32));
  const keyProvider = createLocalKeyProvider(new Map([["k1", kek]]));

  beforeAll(async () => {
    t = await createTestDb();
    await ensureActiveMasterKey(t.db, "k1");
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  function dataKeysOn(db: Db): DataKeys {
    return createDataKeys({ db, keyProvider, cache: createDekCache() });
  }

  /** What another replica's RotateDeveloperKey leaves: the active key retiring, a new one active. */
  async function rotateElsewhere(developerId: string): Promise<number> {
    return t.db.transaction(async (tx) => {
      const active = await keyStore.lockActiveForRotation(tx, developerId);
      if (!active) throw new Error("no active key to rotate");
      const next = await keyStore.nextDataKeyVersion(tx);
      const wrapped = await keyProvider.wrap("k1", KeyBytes.random(32), { developerId, dekVersion: next });
      await keyStore.insertRotatedDataKey(tx, developerId, active.version, next, "k1", wrapped);
      return next;
    });
  }

  const versionOf = (keys: DataKeys, developerId: string) => keys.withWriteKey(developerId, async (_tx, dek) => dek.version);

  /** A beforeFirstKey that refuses the write, counting how often it was asked. */
  function refuser() {
    let asked = 0;
    return {
      refuse: async () => {
        asked += 1;
        throw new Error("nothing to update (test)");
      },
      asked: () => asked,
    };
  }

  /** A write with `refusing` as its beforeFirstKey fails with its error, asked once, and leaves the developer keyless. */
  async function expectRefusedWithoutKey(keys: DataKeys, dev: string, refusing: ReturnType<typeof refuser>): Promise<void> {
    await expect(keys.withWriteKey(dev, async () => "written", { beforeFirstKey: refusing.refuse })).rejects.toThrow(/nothing to update/);
    expect(refusing.asked()).toBe(1);
    expect(await keyStore.findActiveDataKey(t.db, dev)).toBeUndefined();
  }

  it("tells its rotation-due listener when a key's encryptions pass the soft limit, and not before", async () => {
    const dev = newDeveloper();
    const version = await versionOf(dataKeysOn(t.db), dev);
    const due: string[] = [];
    const keys = dataKeysOn(t.db);
    keys.onRotationDue((developerId) => due.push(developerId));
    await versionOf(keys, dev); // a fresh replica reserves a block far below the limit
    expect(due).toEqual([]);
    await t.db.query("UPDATE data_keys SET encryption_count = $3 WHERE developer_id = $1 AND version = $2", [dev, version, DEK_ROTATE_AT]);
    const next = dataKeysOn(t.db);
    next.onRotationDue((developerId) => due.push(developerId));
    expect(await versionOf(next, dev)).toBe(version); // the write itself goes through
    expect(due).toEqual([dev]);
  });

  it("reads the active key once, then writes with the remembered one while its bytes are in memory", async () => {
    const c = counting(t.db);
    const keys = dataKeysOn(c.db);
    const dev = newDeveloper();
    const first = await versionOf(keys, dev); // creates the first key: a read, the insert, a read back
    const afterFirst = c.activeReads();
    for (let i = 0; i < 5; i++) expect(await versionOf(keys, dev)).toBe(first);
    expect(c.activeReads()).toBe(afterFirst);
  });

  it("moves to the key another replica rotated to, in the same call", async () => {
    const keys = dataKeysOn(t.db);
    const dev = newDeveloper();
    const first = await versionOf(keys, dev);
    const next = await rotateElsewhere(dev);
    expect(next).toBeGreaterThan(first);
    let calls = 0;
    const version = await keys.withWriteKey(dev, async (_tx, dek) => {
      calls += 1;
      return dek.version;
    });
    expect(version).toBe(next);
    expect(calls).toBe(1); // the stale key was refused before the write ran
    expect(await versionOf(keys, dev)).toBe(next);
  });

  it("after an eviction, reads the active key again", async () => {
    const c = counting(t.db);
    const keys = dataKeysOn(c.db);
    const dev = newDeveloper();
    await versionOf(keys, dev);
    const before = c.activeReads();
    keys.evict(dev);
    await versionOf(keys, dev);
    expect(c.activeReads()).toBe(before + 1);
  });

  it("remembers a bounded number of developers, forgetting the least recently used", async () => {
    const c = counting(t.db);
    const keys = createDataKeys({ db: c.db, keyProvider, cache: createDekCache(), maxDevelopersRemembered: 2 });
    const [a, b, d] = [newDeveloper(), newDeveloper(), newDeveloper()];
    for (const dev of [a, b]) await versionOf(keys, dev);
    const before = c.activeReads();
    await versionOf(keys, a); // remembered: no read, and a is now the most recently used
    await versionOf(keys, d); // a third developer: b is forgotten
    expect(c.activeReads()).toBe(before + 2); // d's key: created, then read back
    await versionOf(keys, a);
    expect(c.activeReads()).toBe(before + 2);
    await versionOf(keys, b);
    expect(c.activeReads()).toBe(before + 3);
  });

  it("asks beforeFirstKey only when the developer has no key, and creates none when it refuses", async () => {
    const keys = dataKeysOn(t.db);
    const dev = newDeveloper();
    const refusing = refuser();
    await expectRefusedWithoutKey(keys, dev, refusing);

    await versionOf(keys, dev); // a create makes the key
    expect(await keys.withWriteKey(dev, async () => "written", { beforeFirstKey: refusing.refuse })).toBe("written");
    expect(refusing.asked()).toBe(1);
  });

  it("a remembered key whose developer was shredded elsewhere is refused, and beforeFirstKey decides again", async () => {
    const keys = dataKeysOn(t.db);
    const dev = newDeveloper();
    await versionOf(keys, dev);
    await t.db.transaction((tx) => shredDeveloperRows(tx, dev));
    await expectRefusedWithoutKey(keys, dev, refuser());
  });

  it("after a shred elsewhere, a replica never seals with the shredded key: the next key is a new version", async () => {
    const replicaA = dataKeysOn(t.db);
    const replicaB = dataKeysOn(t.db);
    const dev = newDeveloper();
    const shredded = await versionOf(replicaA, dev); // A remembers the key and holds its bytes
    await t.db.transaction((tx) => shredDeveloperRows(tx, dev));
    const fresh = await versionOf(replicaB, dev); // B makes the developer's next first key
    expect(fresh).not.toBe(shredded);

    // A's next write seals under the key that is stored now, which B (and so any replica) opens.
    const binding = { developerId: dev, secretId: "00000000-0000-4000-8000-000000000001", name: "api_key", version: 1 };
    const sealed = await replicaA.withWriteKey(dev, async (_tx, dek) => ({
      version: dek.version,
      ciphertext: sealValue(dek.key, dek.version, Buffer.from("value"), binding),
    }));
    expect(sealed.version).toBe(fresh);
    const key = await replicaB.forRead(dev, sealed.version);
    expect(openValue(key, sealed.version, sealed.ciphertext, binding).toString()).toBe("value");
  });

  it("a remembered key whose row was rewrapped is read again from the row before a write uses it", async () => {
    const c = counting(t.db);
    const keys = dataKeysOn(c.db);
    const dev = newDeveloper();
    const version = await versionOf(keys, dev);
    const row = await keyStore.findActiveDataKey(t.db, dev);
    const bytes = await keyProvider.unwrap("k1", row?.wrappedKey as Buffer, { developerId: dev, dekVersion: version });
    const rewrapped = await keyProvider.wrap("k1", bytes, { developerId: dev, dekVersion: version });
    await t.db.query("UPDATE data_keys SET wrapped_key = $3 WHERE developer_id = $1 AND version = $2", [dev, version, rewrapped]);
    const before = c.activeReads();
    expect(await versionOf(keys, dev)).toBe(version);
    expect(c.activeReads()).toBe(before + 1); // the remembered key did not match the locked row
  });

  it("versions are never handed out twice, across developers", async () => {
    const keys = dataKeysOn(t.db);
    const versions = await Promise.all([newDeveloper(), newDeveloper(), newDeveloper()].map((d) => versionOf(keys, d)));
    expect(new Set(versions).size).toBe(3);
  });

  it("replicas share one cache entry key, stored wrapped like a data key under an owner no token can name", async () => {
    const [a, b] = await Promise.all([loadCacheEntryKey(dataKeysOn(t.db)), loadCacheEntryKey(dataKeysOn(t.db))]);
    expect(a.equals(b)).toBe(true);
    const { rows } = await t.db.query<{ n: number }>("SELECT count(*) AS n FROM data_keys WHERE developer_id = $1", [CACHE_ENTRY_KEY_OWNER]);
    expect(rows[0]?.n).toBe(1);
    expect(SUBJECT_PATTERN.test(CACHE_ENTRY_KEY_OWNER)).toBe(false);
  });
  it("a data key cache hit never calls the key provider; a miss unwraps once", async () => {
    let unwraps = 0;
    const countingProvider: KeyProvider = {
      ...keyProvider,
      unwrap: (...args) => {
        unwraps += 1;
        return keyProvider.unwrap(...args);
      },
    };
    const dev = newDeveloper();
    const version = await versionOf(dataKeysOn(t.db), dev);
    const row = await keyStore.findActiveDataKey(t.db, dev);
    const keys = createDataKeys({ db: t.db, keyProvider: countingProvider, cache: createDekCache() });
    const wrapped = { kekId: "k1", wrappedKey: row?.wrappedKey as Buffer };
    const first = await keys.forRead(dev, version, wrapped);
    expect(unwraps).toBe(1);
    for (let n = 0; n < 5; n++) {
      expect((await keys.forRead(dev, version, wrapped)).equals(first)).toBe(true);
      expect((await keys.forRead(dev, version)).equals(first)).toBe(true);
      expect(keys.inMemory(dev, version)?.equals(first)).toBe(true);
    }
    expect(unwraps).toBe(1);
  });
});
