/**
 * Key evictions on a real database: a replica finds the evictions it has not
 * acknowledged, whatever order their ids committed in.
 */
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import * as replicaStore from "../../src/store/replica-store.js";
import { createTestDb, testDatabaseKind, type TestDb } from "../support/test-db.js";

describe(`key evictions on ${testDatabaseKind()}`, () => {
  let t: TestDb;
  beforeAll(async () => {
    t = await createTestDb();
  });
  afterAll(async () => {
    await t?.cleanup();
  });
  const replica = () => `replica-${randomBytes(4).toString("hex")}`;

  it("an eviction whose id commits after a higher one is still found", async () => {
    const r = replica();
    await replicaStore.acknowledgeAllEvictions(t.db, r);
    // Ids are taken before commit: 2,000,000 is visible first, 1,000,000 only later.
    await t.db.query("INSERT INTO key_evictions (id, developer_id) VALUES (2000000, 'dev-late')");
    const first = await replicaStore.unacknowledgedEvictions(t.db, r);
    expect(first.map((e) => e.developerId)).toEqual(["dev-late"]);
    await replicaStore.acknowledgeEvictions(t.db, r, first.map((e) => e.id));
    await t.db.query("INSERT INTO key_evictions (id, developer_id) VALUES (1000000, 'dev-early-id')");
    expect(await replicaStore.unacknowledgedEvictions(t.db, r)).toEqual([{ id: 1000000, developerId: "dev-early-id" }]);
  });

  it("a starting replica acknowledges what was published before it; each replica acknowledges for itself", async () => {
    const id = await replicaStore.publishEviction(t.db, "dev-before");
    const [a, b] = [replica(), replica()];
    await replicaStore.acknowledgeAllEvictions(t.db, a);
    expect(await replicaStore.unacknowledgedEvictions(t.db, a)).toEqual([]);
    const later = await replicaStore.publishEviction(t.db, "dev-after");
    expect(await replicaStore.unacknowledgedEvictions(t.db, a)).toEqual([{ id: later, developerId: "dev-after" }]);
    expect((await replicaStore.unacknowledgedEvictions(t.db, b)).map((e) => e.id)).toEqual(expect.arrayContaining([id, later]));
    expect(await replicaStore.countAcknowledgements(t.db, later)).toBe(0);
    await replicaStore.acknowledgeEvictions(t.db, b, [later]);
    expect(await replicaStore.countAcknowledgements(t.db, later)).toBe(1);
  });
});
