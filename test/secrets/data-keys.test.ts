/**
 * The developer data keys a write seals under (createDataKeys) on a real database:
 * the active key remembered between writes, a remembered key gone stale (rotated or
 * shredded by another replica), and the first key an update must not create.
 */
import { randomBytes } from "node:crypto";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createDekCache } from "../../src/crypto/dek-cache.js";
import { KeyBytes } from "../../src/crypto/key-bytes.js";
import { createLocalKeyProvider } from "../../src/crypto/key-provider.js";
import { createDataKeys, type DataKeys } from "../../src/secrets/data-keys.js";
import type { Db, QueryResult } from "../../src/store/db.js";
import * as keyStore from "../../src/store/key-store.js";
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
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  function dataKeysOn(db: Db): DataKeys {
    return createDataKeys({ db, keyProvider, cache: createDekCache(), activeKekId: () => "k1" });
  }

  /** What another replica's RotateDeveloperKey leaves: the active key retiring, a new one active. */
  async function rotateElsewhere(developerId: string): Promise<number> {
    return t.db.transaction(async (tx) => {
      const locked = await keyStore.lockActiveForRotation(tx, developerId);
      if (!locked) throw new Error("no active key to rotate");
      const fresh = KeyBytes.random(32);
      const wrapped = await keyProvider.wrap("k1", fresh, { developerId, dekVersion: locked.nextVersion });
      await keyStore.insertRotatedDataKey(tx, developerId, locked.active.version, locked.nextVersion, "k1", wrapped);
      return locked.nextVersion;
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

  it("reads the active key once, then writes with the remembered one while its bytes are in memory", async () => {
    const c = counting(t.db);
    const keys = dataKeysOn(c.db);
    const dev = newDeveloper();
    expect(await versionOf(keys, dev)).toBe(1); // creates the first key: a read, the insert, a read back
    const afterFirst = c.activeReads();
    for (let i = 0; i < 5; i++) expect(await versionOf(keys, dev)).toBe(1);
    expect(c.activeReads()).toBe(afterFirst);
  });

  it("moves to the key another replica rotated to, in the same call", async () => {
    const keys = dataKeysOn(t.db);
    const dev = newDeveloper();
    expect(await versionOf(keys, dev)).toBe(1);
    const next = await rotateElsewhere(dev);
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
    await t.db.transaction((tx) => keyStore.shredDeveloperRows(tx, dev));
    await expectRefusedWithoutKey(keys, dev, refuser());
  });
});
