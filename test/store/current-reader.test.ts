/**
 * The coalescing reader of current sealed values: concurrent reads share
 * statements, and each read gets exactly its own developer's rows.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { createCurrentReader } from "../../src/store/current-reader.js";
import type { Db } from "../../src/store/db.js";
import { findSealedCurrent, findSealedCurrentOfMany, findSealedVersion, insertSecret } from "../../src/store/secret-store.js";
import { insertFirstDataKey } from "../../src/store/key-store.js";
import { createTestDb, type TestDb } from "../support/test-db.js";

let t: TestDb;
beforeAll(async () => {
  t = await createTestDb();
});
afterAll(async () => {
  await t?.cleanup();
});

const newDeveloper = () => `dev-${randomBytes(6).toString("hex")}`;

/**
 * Stores `names` for `developerId`, each with a ciphertext unique to (developer, name),
 * under the developer's data key version 1 (wrapped as `wrappedKey`, made first).
 */
async function store(developerId: string, names: string[], wrappedKey: Buffer = randomBytes(40)): Promise<Map<string, Buffer>> {
  await insertFirstDataKey(t.db, developerId, 1, "kek-test", wrappedKey);
  const stored = new Map<string, Buffer>();
  for (const name of names) {
    const ciphertext = randomBytes(24);
    await insertSecret(t.db, {
      id: randomUUID(),
      developerId,
      name,
      description: "",
      metadataJson: "{}",
      createdBy: developerId,
      ciphertext,
      dekVersion: 1,
    }, Number.MAX_SAFE_INTEGER);
    stored.set(name, ciphertext);
  }
  return stored;
}

/** The Db, with its statements counted and, while `hold` is set, held back before they run. */
function watched(db: Db) {
  const statements: unknown[][] = [];
  let hold: Promise<void> | undefined;
  let fail: Error | undefined;
  const wrapped: Db = {
    ...db,
    async query(text, params) {
      statements.push([...(params ?? [])]);
      if (hold) await hold;
      if (fail) throw fail;
      return db.query(text, params);
    },
  };
  return {
    db: wrapped,
    statements,
    hold(until: Promise<void> | undefined) {
      hold = until;
    },
    failWith(e: Error | undefined) {
      fail = e;
    },
  };
}

const released = () => {
  let release = () => undefined as void;
  const until = new Promise<void>((r) => (release = r));
  return { until, release };
};

describe("current-value reader", () => {
  it("serves reads made in one turn with one statement, each with only its own developer's secrets", async () => {
    const [alice, bob] = [newDeveloper(), newDeveloper()];
    // The same names for both: only the developer tells the rows apart.
    const aliceStored = await store(alice, ["api_key", "db_password", "only_alice"]);
    const bobStored = await store(bob, ["api_key", "db_password"]);
    const w = watched(t.db);
    const read = createCurrentReader(w.db);
    const [a, b, c, none] = await Promise.all([
      read(alice, ["api_key", "db_password", "absent"]),
      read(bob, ["api_key", "db_password", "only_alice"]),
      read(alice, ["only_alice", "only_alice"]),
      read(newDeveloper(), ["api_key"]),
    ]);
    expect(w.statements).toHaveLength(1);
    const byName = (rows: typeof a) => new Map(rows.map((r) => [r.name, r.ciphertext]));
    expect(byName(a)).toEqual(new Map([["api_key", aliceStored.get("api_key")], ["db_password", aliceStored.get("db_password")]]));
    expect(byName(b)).toEqual(new Map([["api_key", bobStored.get("api_key")], ["db_password", bobStored.get("db_password")]]));
    expect(c.map((r) => r.name)).toEqual(["only_alice"]); // once, though asked twice
    expect(none).toEqual([]);
  });

  it("reads a batch of one name through the database function, with what the query would return", async () => {
    const [alice, bob] = [newDeveloper(), newDeveloper()];
    const aliceStored = await store(alice, ["api_key", "other"]);
    await store(bob, ["api_key"]);
    const w = watched(t.db);
    const read = createCurrentReader(w.db);
    const [row] = await read(alice, ["api_key", "api_key"]);
    expect(w.statements).toEqual([[alice, "api_key", 0]]); // one name: the function, not the array query
    expect(row?.ciphertext).toEqual(aliceStored.get("api_key"));
    // Field by field what the query returns, the wrapped data key's columns included.
    expect(await findSealedVersion(t.db, alice, "api_key", 0)).toEqual((await findSealedCurrent(t.db, alice, ["api_key"]))[0]);
    // Only the developer's own secret, and nothing for a name it does not have.
    expect(await read(newDeveloper(), ["api_key"])).toEqual([]);
    expect(await read(alice, ["absent"])).toEqual([]);
    expect(await findSealedVersion(t.db, bob, "other", 0)).toBeUndefined();
  });

  it("reads several secrets of several developers in one statement, each row with the developer it belongs to", async () => {
    const [alice, bob, carol] = [newDeveloper(), newDeveloper(), newDeveloper()];
    const wrapped = randomBytes(40);
    const aliceStored = await store(alice, ["api_key", "only_alice"], wrapped);
    const bobStored = await store(bob, ["api_key"]);
    const rows = await findSealedCurrentOfMany(t.db, [
      { developerId: alice, name: "api_key" },
      { developerId: bob, name: "api_key" },
      { developerId: bob, name: "only_alice" }, // another developer's name: nothing
      { developerId: carol, name: "api_key" }, // a developer with no secrets
      { developerId: alice, name: "absent" },
      { developerId: alice, name: "only_alice" },
    ]);
    const byDeveloperAndName = (a: unknown[], b: unknown[]) => String(a[0]).localeCompare(String(b[0])) || String(a[1]).localeCompare(String(b[1]));
    const got = rows.map((r) => [r.developerId, r.name, r.ciphertext]).sort(byDeveloperAndName);
    const want = [
      [alice, "api_key", aliceStored.get("api_key")],
      [alice, "only_alice", aliceStored.get("only_alice")],
      [bob, "api_key", bobStored.get("api_key")],
    ].sort(byDeveloperAndName);
    expect(got).toEqual(want);
    // Field by field what the one-version function returns for the same secret.
    const [one] = await findSealedCurrent(t.db, alice, ["api_key"]);
    expect(one).toEqual(await findSealedVersion(t.db, alice, "api_key", 0));
    expect([one?.kekId, one?.wrappedKey]).toEqual(["kek-test", wrapped]);
    expect(rows.find((r) => r.developerId === bob)?.wrappedKey).not.toEqual(wrapped); // bob's own data key
    expect(await findSealedCurrentOfMany(t.db, [])).toEqual([]);
  });

  it("sends each (developer, name) once, however many reads ask for it", async () => {
    const [alice, bob] = [newDeveloper(), newDeveloper()];
    await store(alice, ["a", "b"]);
    await store(bob, ["a"]);
    const w = watched(t.db);
    const read = createCurrentReader(w.db);
    const results = await Promise.all([read(alice, ["a", "b", "a"]), read(bob, ["a"]), read(alice, ["b"])]);
    expect(w.statements).toEqual([[[alice, alice, bob], ["a", "b", "a"]]]);
    expect(results.map((r) => r.map((x) => x.name))).toEqual([["a", "b"], ["a"], ["b"]]);
  });

  it("holds later reads while the wire is full and sends them together when a batch returns", async () => {
    const dev = newDeveloper();
    await store(dev, ["a", "b", "c", "d"]);
    const w = watched(t.db);
    const read = createCurrentReader(w.db);
    const gate = released();
    w.hold(gate.until);
    const first = [read(dev, ["a"])];
    await new Promise((r) => setImmediate(r));
    first.push(read(dev, ["b"]));
    await new Promise((r) => setImmediate(r));
    expect(w.statements).toHaveLength(2); // two batches on the wire: it is full
    w.hold(undefined);
    const later = [read(dev, ["c"]), read(dev, ["d"])];
    await new Promise((r) => setTimeout(r, 5));
    expect(w.statements).toHaveLength(2);
    gate.release();
    const rows = await Promise.all([...first, ...later]);
    expect(w.statements).toHaveLength(3);
    expect(w.statements[2]).toEqual([[dev, dev], ["c", "d"]]); // two names: the several-secrets function
    expect(rows.map((r) => r.map((x) => x.name))).toEqual([["a"], ["b"], ["c"], ["d"]]);
  });

  it("lets reads past batches stalled longer than the bound", async () => {
    const dev = newDeveloper();
    await store(dev, ["a"]);
    const w = watched(t.db);
    const read = createCurrentReader(w.db);
    const gate = released();
    w.hold(gate.until);
    const stalled = [read(dev, ["a"])];
    await new Promise((r) => setImmediate(r));
    stalled.push(read(dev, ["a"]));
    await new Promise((r) => setTimeout(r, 60));
    w.hold(undefined);
    expect((await read(dev, ["a"])).map((r) => r.name)).toEqual(["a"]);
    gate.release();
    expect((await Promise.all(stalled)).flat()).toHaveLength(2);
  });

  it("fails every read of a failed batch with its error, and reads again afterwards", async () => {
    const dev = newDeveloper();
    await store(dev, ["a"]);
    const w = watched(t.db);
    const read = createCurrentReader(w.db);
    const boom = new Error("connection lost");
    w.failWith(boom);
    const results = await Promise.allSettled([read(dev, ["a"]), read(newDeveloper(), ["b"])]);
    expect(results.map((r) => r.status === "rejected" && r.reason)).toEqual([boom, boom]);
    w.failWith(undefined);
    expect((await read(dev, ["a"])).map((r) => r.name)).toEqual(["a"]);
  });
});
