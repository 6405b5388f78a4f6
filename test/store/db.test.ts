/**
 * The Db contract, run on whichever backend createTestDb gives (Postgres with
 * DATABASE_URL, PGlite without), so both adapters are held to the same behaviour.
 */
import { randomBytes, randomUUID } from "node:crypto";
import { spawnSync } from "node:child_process";
import { readFile, rm, stat, writeFile } from "node:fs/promises";
import path from "node:path";

import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { AppError } from "../../src/api/errors.js";
import { DbError, copyTextField, isUniqueViolation, type Db, type Queryable } from "../../src/store/db.js";
import { migrate } from "../../src/store/migrate.js";
import { openPostgres } from "../../src/store/pg-db.js";
import { openPglite } from "../../src/store/pglite-db.js";
import { MIGRATIONS, type Migration } from "../../src/store/schema.js";
import { copyPgliteTemplate, createTestDb, testDatabaseKind, type TestDb } from "../support/test-db.js";

const newDeveloper = () => `dev-${randomBytes(6).toString("hex")}`;

async function insertSecret(
  q: Queryable,
  developerId: string,
  name: string,
  metadata: unknown = {},
): Promise<{ id: string; rowCount: number }> {
  const id = randomUUID();
  const res = await q.query(
    `INSERT INTO secrets (id, developer_id, name, metadata, current_version, created_at, updated_at, created_by, updated_by)
     VALUES ($1, $2, $3, $4::jsonb, 1, $5, $5, 'tester', 'tester')`,
    [id, developerId, name, JSON.stringify(metadata), new Date()],
  );
  return { id, rowCount: res.rowCount };
}

async function countSecrets(q: Queryable, developerId: string): Promise<number> {
  const { rows } = await q.query<{ n: number }>("SELECT count(*) AS n FROM secrets WHERE developer_id = $1", [developerId]);
  return rows[0]?.n ?? -1;
}

async function rejection(p: Promise<unknown>): Promise<unknown> {
  return p.then(
    () => {
      throw new Error("expected a rejection");
    },
    (e: unknown) => e,
  );
}

describe(`Db on ${testDatabaseKind()}`, () => {
  let t: TestDb;
  let db: Db;

  beforeAll(async () => {
    t = await createTestDb();
    db = t.db;
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  it("reports the backend it runs on", () => {
    expect(db.kind).toBe(testDatabaseKind());
  });

  describe("type normalization", () => {
    it("returns count(*) and int8 columns as numbers, int4 as number", async () => {
      const dev = newDeveloper();
      await db.query(
        "INSERT INTO data_keys (developer_id, version, kek_id, wrapped_key, state, encryption_count) VALUES ($1, 1, 'k1', $2, 'active', $3)",
        [dev, Buffer.from([1]), Number.MAX_SAFE_INTEGER],
      );
      const { rows } = await db.query<{ n: number; version: number; encryption_count: number }>(
        "SELECT count(*) OVER () AS n, version, encryption_count FROM data_keys WHERE developer_id = $1",
        [dev],
      );
      expect(rows).toEqual([{ n: 1, version: 1, encryption_count: Number.MAX_SAFE_INTEGER }]);
      expect(typeof rows[0]?.n).toBe("number");
    });

    it("returns int8[] as numbers and numeric as exact text", async () => {
      const { rows } = await db.query("SELECT ARRAY[1, NULL, 3]::int8[] AS a, 0.1::numeric + 0.2::numeric AS s");
      expect(rows[0]).toEqual({ a: [1, null, 3], s: "0.3" });
    });

    it("refuses an int8 beyond Number.MAX_SAFE_INTEGER instead of rounding it", async () => {
      const e = await rejection(db.query("SELECT (2::int8 ^ 53)::int8 AS big"));
      expect(e).toBeInstanceOf(RangeError);
      // The database stays usable afterwards.
      expect((await db.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    });

    it("round-trips bytea as a Buffer, zero bytes included", async () => {
      const bytes = randomBytes(4096);
      bytes[0] = 0;
      bytes[100] = 0;
      bytes[4095] = 0;
      const { rows } = await db.query<{ b: Buffer; u: Buffer; empty: Buffer }>("SELECT $1::bytea AS b, $2::bytea AS u, $3::bytea AS empty", [
        bytes,
        new Uint8Array([0, 255, 0]),
        Buffer.alloc(0),
      ]);
      const row = rows[0];
      expect(Buffer.isBuffer(row?.b)).toBe(true);
      expect(row?.b.equals(bytes)).toBe(true);
      expect(row?.u).toEqual(Buffer.from([0, 255, 0]));
      expect(row?.empty).toEqual(Buffer.alloc(0));
    });

    it("stores ciphertext bytea in secret_versions unchanged", async () => {
      const dev = newDeveloper();
      const { id } = await insertSecret(db, dev, "bytes");
      await db.query("INSERT INTO data_keys (developer_id, version, kek_id, wrapped_key, state) VALUES ($1, 1, 'k1', $2, 'active')", [
        dev,
        randomBytes(60),
      ]);
      const ciphertext = randomBytes(300);
      ciphertext[7] = 0;
      await db.query(
        "INSERT INTO secret_versions (secret_id, developer_id, version, state, ciphertext, dek_version, created_at, created_by) VALUES ($1, $2, 1, 'enabled', $3, 1, now(), 'tester')",
        [id, dev, ciphertext],
      );
      const { rows } = await db.query<{ ciphertext: Buffer }>("SELECT ciphertext FROM secret_versions WHERE secret_id = $1", [id]);
      expect(rows[0]?.ciphertext.equals(ciphertext)).toBe(true);
    });

    it("returns timestamptz as Date, jsonb parsed, uuid and text as strings", async () => {
      const dev = newDeveloper();
      const metadata = { team: "ops", nested: { list: [1, "two", null], flag: true }, "ünï": "cødé ✓" };
      const { id } = await insertSecret(db, dev, "typed", metadata);
      const at = new Date("2024-02-29T12:34:56.789Z");
      await db.query("UPDATE secrets SET updated_at = $1 WHERE id = $2", [at, id]);
      const { rows } = await db.query<{ id: string; name: string; metadata: unknown; updated_at: Date }>(
        "SELECT id, name, metadata, updated_at FROM secrets WHERE id = $1",
        [id],
      );
      const row = rows[0];
      expect(row?.id).toBe(id);
      expect(row?.name).toBe("typed");
      expect(row?.metadata).toEqual(metadata);
      expect(row?.updated_at).toBeInstanceOf(Date);
      expect(row?.updated_at.getTime()).toBe(at.getTime());
    });

    it("reports rowCount for insert, update, delete (with and without RETURNING) and select", async () => {
      const dev = newDeveloper();
      const now = new Date();
      const insert = await db.query(
        `INSERT INTO secrets (id, developer_id, name, current_version, created_at, updated_at, created_by, updated_by)
         VALUES ($1, $4, 'a', 1, $5, $5, 't', 't'), ($2, $4, 'b', 1, $5, $5, 't', 't'), ($3, $4, 'c', 1, $5, $5, 't', 't')`,
        [randomUUID(), randomUUID(), randomUUID(), dev, now],
      );
      expect(insert).toEqual({ rows: [], rowCount: 3 });

      const returning = await db.query<{ name: string }>(
        "INSERT INTO secrets (id, developer_id, name, current_version, created_at, updated_at, created_by, updated_by) VALUES ($1, $2, 'd', 1, now(), now(), 't', 't') RETURNING name",
        [randomUUID(), dev],
      );
      expect(returning).toEqual({ rows: [{ name: "d" }], rowCount: 1 });

      const update = await db.query("UPDATE secrets SET description = 'x' WHERE developer_id = $1 AND name IN ('a', 'b')", [dev]);
      expect(update.rowCount).toBe(2);
      const updateReturning = await db.query("UPDATE secrets SET current_version = 2 WHERE developer_id = $1 RETURNING id", [dev]);
      expect(updateReturning.rowCount).toBe(4);
      expect(updateReturning.rows).toHaveLength(4);
      const none = await db.query("UPDATE secrets SET description = 'y' WHERE developer_id = $1 AND name = 'zzz'", [dev]);
      expect(none.rowCount).toBe(0);

      const select = await db.query("SELECT name FROM secrets WHERE developer_id = $1", [dev]);
      expect(select.rowCount).toBe(4);

      const del = await db.query("DELETE FROM secrets WHERE developer_id = $1 AND name = 'a'", [dev]);
      expect(del.rowCount).toBe(1);
      const delReturning = await db.query("DELETE FROM secrets WHERE developer_id = $1 RETURNING name", [dev]);
      expect(delReturning.rowCount).toBe(3);
    });

    it("runs a parameterless multi-statement script and returns the last statement's result", async () => {
      const res = await db.query("SELECT 1 AS a; SELECT 2 AS b");
      expect(res).toEqual({ rows: [{ b: 2 }], rowCount: 1 });
    });
  });

  describe("transactions", () => {
    it("commits and returns the callback's value", async () => {
      const dev = newDeveloper();
      const value = await db.transaction(async (tx) => {
        await insertSecret(tx, dev, "one");
        await insertSecret(tx, dev, "two");
        return "done";
      });
      expect(value).toBe("done");
      expect(await countSecrets(db, dev)).toBe(2);
    });

    it("rolls back and rethrows the same error when the callback throws", async () => {
      const dev = newDeveloper();
      const boom = new Error("boom");
      const e = await rejection(
        db.transaction(async (tx) => {
          await insertSecret(tx, dev, "one");
          expect(await countSecrets(tx, dev)).toBe(1);
          throw boom;
        }),
      );
      expect(e).toBe(boom);
      expect(await countSecrets(db, dev)).toBe(0);
    });

    it("rolls back when a statement fails", async () => {
      const dev = newDeveloper();
      const e = await rejection(
        db.transaction(async (tx) => {
          await insertSecret(tx, dev, "same");
          await insertSecret(tx, dev, "same");
        }),
      );
      expect(isUniqueViolation(e)).toBe(true);
      expect(await countSecrets(db, dev)).toBe(0);
    });

    it("refuses to commit when a failed statement was caught inside (25P02), keeping nothing", async () => {
      const dev = newDeveloper();
      const e = await rejection(
        db.transaction(async (tx) => {
          await insertSecret(tx, dev, "kept?");
          await insertSecret(tx, dev, "kept?").catch(() => undefined);
          return "swallowed";
        }),
      );
      expect(e).toBeInstanceOf(DbError);
      expect((e as DbError).code).toBe("25P02");
      expect(await countSecrets(db, dev)).toBe(0);
    });

    it("isolates an open transaction from other callers until it commits", async () => {
      // On Postgres another connection does not see uncommitted rows; on PGlite the
      // other caller waits for the commit. Either way it never sees a partial state.
      const dev = newDeveloper();
      let release!: () => void;
      const gate = new Promise<void>((r) => (release = r));
      const tx = db.transaction(async (q) => {
        await insertSecret(q, dev, "one");
        await gate;
        await insertSecret(q, dev, "two");
      });
      const during = db.query<{ n: number }>("SELECT count(*) AS n FROM secrets WHERE developer_id = $1", [dev]);
      setTimeout(release, 50);
      await tx;
      expect([0, 2]).toContain((await during).rows[0]?.n);
      expect(await countSecrets(db, dev)).toBe(2);
    });

    it("rejects calls on the Db from inside its own callback, and the handle after the callback", async () => {
      const inside = await rejection(db.transaction(async () => db.query("SELECT 1")));
      expect(String(inside)).toMatch(/inside its own transaction\/session/);

      let kept: Queryable | undefined;
      await db.transaction(async (tx) => {
        kept = tx;
      });
      expect(String(await rejection(kept!.query("SELECT 1")))).toMatch(/after its callback returned/);
    });
  });

  describe("errors", () => {
    it("turns a duplicate (developer, name) into DbError 23505 naming the constraint", async () => {
      const dev = newDeveloper();
      await insertSecret(db, dev, "dup");
      const e = await rejection(insertSecret(db, dev, "dup"));
      expect(e).toBeInstanceOf(DbError);
      expect(e).toMatchObject({ code: "23505", constraint: "secrets_developer_name_key" });
      expect(isUniqueViolation(e)).toBe(true);
      expect(isUniqueViolation(e, "secrets_developer_name_key")).toBe(true);
      expect(isUniqueViolation(e, "secrets_pkey")).toBe(false);
      expect(isUniqueViolation(new Error("duplicate"))).toBe(false);
      // The same name for another developer is fine.
      expect((await insertSecret(db, newDeveloper(), "dup")).rowCount).toBe(1);
    });

    it("reports check and not-null violations with their SQLSTATE", async () => {
      const check = await rejection(
        db.query("INSERT INTO data_keys (developer_id, version, kek_id, wrapped_key, state) VALUES ('d', 0, 'k', '\\x00', 'active')"),
      );
      expect(check).toMatchObject({ code: "23514", constraint: "data_keys_version_check" });
      const notNull = await rejection(
        db.query("INSERT INTO data_keys (developer_id, version, wrapped_key, state) VALUES ('d', 1, '\\x00', 'active')"),
      );
      expect(notNull).toMatchObject({ code: "23502" });
    });

    it("withholds a data exception's server message, which may quote the input", async () => {
      const e = await rejection(db.query("SELECT $1::int AS n", ["s3cr3t-value"]));
      expect(e).toBeInstanceOf(DbError);
      expect((e as DbError).code).toBe("22P02");
      expect(JSON.stringify({ message: (e as Error).message, e })).not.toContain("s3cr3t");
    });
  });

  describe("copyIn", () => {
    beforeAll(async () => {
      await db.query("CREATE TABLE copy_probe (id bigserial PRIMARY KEY, n int NOT NULL, s text NOT NULL)");
    });

    it("appends rows in their order, text exactly as escaped by copyTextField, and counts them", async () => {
      const texts = ["plain", "tab\there", "new\nline", "cr\rhere", "back\\slash", "\\N", "\\.", "dév 🙂", ""];
      const lines = texts.map((text, i) => `${i}\t${copyTextField(text)}`);
      expect(await db.copyIn("copy_probe", ["n", "s"], `${lines.join("\n")}\n`)).toBe(texts.length);
      const { rows } = await db.query<{ n: number; s: string }>("SELECT n, s FROM copy_probe ORDER BY id");
      expect(rows).toEqual(texts.map((s, n) => ({ n, s })));
    });

    it("turns a refused row into a DbError that quotes no input, writes none of the rows, and stays usable", async () => {
      const before = (await db.query<{ n: number }>("SELECT count(*) AS n FROM copy_probe")).rows[0]?.n;
      const notNull = await rejection(db.copyIn("copy_probe", ["n", "s"], "1\tfine\n2\t\\N\n"));
      expect(notNull).toMatchObject({ code: "23502" });
      const bad = await rejection(db.copyIn("copy_probe", ["n", "s"], "s3cr3t-value\tx\n"));
      expect(bad).toMatchObject({ code: "22P02" });
      expect(JSON.stringify({ message: (bad as Error).message, bad })).not.toContain("s3cr3t");
      expect((await db.query<{ n: number }>("SELECT count(*) AS n FROM copy_probe")).rows[0]?.n).toBe(before);
      expect(await db.copyIn("copy_probe", ["n", "s"], "7\tafter\n")).toBe(1);
    });

    it("refuses a table or column that is not a plain identifier, sending nothing", async () => {
      await expect(db.copyIn("copy_probe; DROP TABLE secrets", ["n"], "")).rejects.toThrow(/not a plain identifier/);
      await expect(db.copyIn("copy_probe", ["n", "s) FROM PROGRAM 'x' --"], "")).rejects.toThrow(/not a plain identifier/);
    });
  });

  it('orders names by bytes (COLLATE "C"): upper case first, "_" before letters', async () => {
    const dev = newDeveloper();
    for (const name of ["b", "a_b", "B", "ab", "a", "A", "a-b", "é"]) await insertSecret(db, dev, name);
    const { rows } = await db.query<{ name: string }>("SELECT name FROM secrets WHERE developer_id = $1 ORDER BY name", [dev]);
    expect(rows.map((r) => r.name)).toEqual(["A", "B", "a", "a-b", "a_b", "ab", "b", "é"]);
    // Keyset pagination compares with the same collation.
    const after = await db.query<{ name: string }>(
      "SELECT name FROM secrets WHERE developer_id = $1 AND name > $2 ORDER BY name",
      [dev, "a_b"],
    );
    expect(after.rows.map((r) => r.name)).toEqual(["ab", "b", "é"]);
  });

  describe("secret counts (the quota's, kept by triggers)", () => {
    const counted = async (developerId: string) =>
      (await db.query<{ secrets: number }>("SELECT secrets FROM developer_secret_counts WHERE developer_id = $1", [developerId])).rows[0]
        ?.secrets;

    it("follow inserts, deletes and a developer's whole deletion, per developer", async () => {
      const [a, b] = [newDeveloper(), newDeveloper()];
      expect(await counted(a)).toBeUndefined();
      const first = await insertSecret(db, a, "one");
      await insertSecret(db, a, "two");
      await insertSecret(db, b, "one");
      expect([await counted(a), await counted(b)]).toEqual([2, 1]);
      // Several rows in one statement count as several.
      await db.query(
        `INSERT INTO secrets (id, developer_id, name, current_version, created_at, updated_at, created_by, updated_by)
         SELECT gen_random_uuid(), $1, 'bulk_' || g, 1, now(), now(), 't', 't' FROM generate_series(1, 5) AS g`,
        [a],
      );
      expect(await counted(a)).toBe(7);
      await db.query("DELETE FROM secrets WHERE id = $1", [first.id]);
      expect(await counted(a)).toBe(6);
      await db.query("DELETE FROM secrets WHERE developer_id = $1", [a]);
      expect([await counted(a), await counted(b)]).toEqual([0, 1]);
      // A rolled-back insert is not counted.
      await rejection(db.transaction(async (tx) => {
        await insertSecret(tx, b, "rolled_back");
        throw new Error("roll back");
      }));
      expect(await counted(b)).toBe(1);
      expect(await counted(b)).toBe(await countSecrets(db, b));
    });

    it("refuse to move a secret to another developer (the counts could not follow)", async () => {
      const [a, b] = [newDeveloper(), newDeveloper()];
      const { id } = await insertSecret(db, a, "mine");
      const e = await rejection(db.query("UPDATE secrets SET developer_id = $1 WHERE id = $2", [b, id]));
      expect((e as DbError).code).toBe("23514");
      expect([await counted(a), await counted(b), await countSecrets(db, a)]).toEqual([1, undefined, 1]);
      // Any other column may change.
      await db.query("UPDATE secrets SET description = 'd' WHERE id = $1", [id]);
    });
  });

  describe("migrate", () => {
    it("is idempotent: a second run applies nothing", async () => {
      expect(await migrate(db)).toEqual({ applied: [] });
      const { rows } = await db.query<{ version: number; name: string; applied_at: Date }>(
        "SELECT version, name, applied_at FROM schema_migrations ORDER BY version",
      );
      expect(rows.map((r) => [r.version, r.name])).toEqual(MIGRATIONS.map((m) => [m.version, m.name]));
      expect(rows[0]?.applied_at).toBeInstanceOf(Date);
    });

    it("keeps as few indexes as it can on each audit table that gains a row per audited call (migrations 6, 7, 13, 14 and 16)", async () => {
      const { rows } = await db.query<{ indexdef: string }>(
        "SELECT indexdef FROM pg_indexes WHERE schemaname = current_schema() AND tablename IN ('audit_events_v1', 'audit_log') ORDER BY indexname",
      );
      expect(rows.map((r) => r.indexdef.replace(/^.* USING /, ""))).toEqual([
        "btree (developer_id, id)",
        "btree (writer_id, writer_sequence)",
        "btree (developer, id) WHERE (developer IS NOT NULL)",
        // Only rows written before migration 14 have a developer_id: new rows add no entry here.
        "btree (developer_id, id) WHERE (developer_id IS NOT NULL)",
        // A few pages per partition: no index by writer (migration 16).
        `brin ("time") WITH (autosummarize='on')`,
      ]);
      const identity = await db.query<{ relreplident: string }>("SELECT relreplident FROM pg_class WHERE oid = 'audit_events_v1'::regclass");
      expect(identity.rows).toEqual([{ relreplident: "i" }]);
    });

    it("counts the secrets already stored when the counts arrive (migration 3)", async () => {
      const fresh = await createTestDb({ migrate: false });
      try {
        expect(await migrate(fresh.db, MIGRATIONS.filter((m) => m.version < 3))).toEqual({ applied: [1, 2] });
        const [a, b] = [newDeveloper(), newDeveloper()];
        for (const name of ["x", "y", "z"]) await insertSecret(fresh.db, a, name);
        await insertSecret(fresh.db, b, "x");
        expect(await migrate(fresh.db)).toEqual({ applied: MIGRATIONS.filter((m) => m.version >= 3).map((m) => m.version) });
        const { rows } = await fresh.db.query<{ developer_id: string; secrets: number }>(
          "SELECT developer_id, secrets FROM developer_secret_counts ORDER BY secrets DESC",
        );
        expect(rows).toEqual([
          { developer_id: a, secrets: 3 },
          { developer_id: b, secrets: 1 },
        ]);
      } finally {
        await fresh.cleanup();
      }
    });

    it("applies a new migration once, atomically with its record", async () => {
      const extra: Migration = { version: 1001, name: "test table", sql: "CREATE TABLE migrate_test (x int); INSERT INTO migrate_test VALUES (1);" };
      expect(await migrate(db, [...MIGRATIONS, extra])).toEqual({ applied: [1001] });
      expect(await migrate(db, [...MIGRATIONS, extra])).toEqual({ applied: [] });
      expect((await db.query("SELECT x FROM migrate_test")).rows).toEqual([{ x: 1 }]);
    });

    it("rolls back a failing migration entirely and records nothing", async () => {
      const bad: Migration = { version: 1002, name: "fails", sql: "CREATE TABLE half_done (x int); SELECT 1 / 0;" };
      const e = await rejection(migrate(db, [...MIGRATIONS, { version: 1001, name: "test table", sql: "" }, bad]));
      expect(String(e)).toMatch(/migration 1002 \(fails\) failed/);
      expect(((e as Error).cause as DbError).code).toBe("22012");
      const { rows } = await db.query("SELECT to_regclass('half_done') AS t, (SELECT count(*) FROM schema_migrations WHERE version = 1002) AS n");
      expect(rows).toEqual([{ t: null, n: 0 }]);
    });

    it("refuses a database migrated by a newer release", async () => {
      await db.query("INSERT INTO schema_migrations (version, name) VALUES (999999, 'from the future')");
      try {
        const e = await rejection(migrate(db));
        expect(String(e)).toMatch(/999999.*newer release/);
      } finally {
        await db.query("DELETE FROM schema_migrations WHERE version = 999999");
      }
    });
  });
});

describe.runIf(testDatabaseKind() === "postgres")("Postgres only", () => {
  it("migrates each version exactly once when three pools migrate a fresh database at once", async () => {
    const t = await createTestDb({ migrate: false });
    const url = t.url!;
    const others = await Promise.all([openPostgres(url), openPostgres(url)]);
    const pools = [t.db, ...others];
    // A slow extra migration makes the three runs overlap for certain.
    const migrations: Migration[] = [
      ...MIGRATIONS,
      { version: 1001, name: "slow", sql: "SELECT pg_sleep(0.3); CREATE TABLE slow_one (x int);" },
    ];
    try {
      const results = await Promise.all(pools.map((p) => migrate(p, migrations)));
      const applied = results.flatMap((r) => r.applied).sort((a, b) => a - b);
      expect(applied).toEqual(migrations.map((m) => m.version));
      expect(results.filter((r) => r.applied.length > 0)).toHaveLength(1);
      const { rows } = await t.db.query<{ version: number }>("SELECT version FROM schema_migrations ORDER BY version");
      expect(rows.map((r) => r.version)).toEqual(migrations.map((m) => m.version));
      // The lock is released: no advisory locks remain in this database (pg_locks is cluster-wide).
      const locks = await t.db.query<{ n: number }>(
        "SELECT count(*) AS n FROM pg_locks WHERE locktype = 'advisory' AND database = (SELECT oid FROM pg_database WHERE datname = current_database())",
      );
      expect(locks.rows[0]?.n).toBe(0);
    } finally {
      await Promise.all(others.map((p) => p.close()));
      await t.cleanup();
    }
  });

  it("fails to open with BACKEND_UNAVAILABLE, without leaking the URL, when nothing listens", async () => {
    const e = await rejection(openPostgres("postgres://postgres:hunter2@127.0.0.1:1/postgres"));
    expect(e).toBeInstanceOf(AppError);
    expect(e).toMatchObject({ reason: "BACKEND_UNAVAILABLE", kind: "unavailable", message: "database unavailable" });
    expect((e as AppError).cause).toBeDefined();
    expect(JSON.stringify({ m: (e as Error).message, c: String((e as AppError).cause) })).not.toContain("hunter2");
  });

  describe("with a database", () => {
    let t: TestDb;
    beforeAll(async () => {
      t = await createTestDb();
    });
    afterAll(async () => {
      await t?.cleanup();
    });

    it("reports a killed connection as BACKEND_UNAVAILABLE and recovers on the next query", async () => {
      const e = await rejection(t.db.session((conn) => conn.query("SELECT pg_terminate_backend(pg_backend_pid())")));
      expect(e).toMatchObject({ reason: "BACKEND_UNAVAILABLE" });
      expect((await t.db.query("SELECT 1 AS one")).rows).toEqual([{ one: 1 }]);
    });

    it("survives the server killing a checked-out connection between statements", async () => {
      const e = await rejection(
        t.db.transaction(async (tx) => {
          const { rows } = await tx.query<{ pid: number }>("SELECT pg_backend_pid() AS pid");
          const killer = new pg.Client({ connectionString: t.url! });
          await killer.connect();
          await killer.query("SELECT pg_terminate_backend($1)", [rows[0]?.pid]);
          await killer.end();
          await new Promise((r) => setTimeout(r, 200)); // the socket closes while nothing is in flight
          await tx.query("SELECT 1");
        }),
      );
      expect(e).toMatchObject({ reason: "BACKEND_UNAVAILABLE" });
      expect((await t.db.query("SELECT 3 AS three")).rows).toEqual([{ three: 3 }]);
    });

    it("survives the server killing an idle pooled connection, and reports it", async () => {
      const seen: Error[] = [];
      const appName = `idle-${randomBytes(4).toString("hex")}`;
      const db = await openPostgres(t.url!, { applicationName: appName, onBackgroundError: (err) => seen.push(err) });
      try {
        await t.db.query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE application_name = $1", [appName]);
        await expect.poll(() => seen.length).toBeGreaterThan(0);
        expect((await db.query("SELECT 2 AS two")).rows).toEqual([{ two: 2 }]);
      } finally {
        await db.close();
      }
    });

    it("reports a statement timeout as BACKEND_UNAVAILABLE", async () => {
      const db = await openPostgres(t.url!, { statementTimeoutMs: 100 });
      try {
        expect(await rejection(db.query("SELECT pg_sleep(2)"))).toMatchObject({ reason: "BACKEND_UNAVAILABLE" });
      } finally {
        await db.close();
      }
    });

    it("fails with BACKEND_UNAVAILABLE after close", async () => {
      const db = await openPostgres(t.url!);
      await db.close();
      await db.close(); // idempotent
      expect(await rejection(db.query("SELECT 1"))).toMatchObject({ reason: "BACKEND_UNAVAILABLE" });
    });

    it("keeps its type parsers to its own pool", async () => {
      const plain = new pg.Pool({ connectionString: t.url!, max: 1 });
      try {
        const { rows } = await plain.query("SELECT 7::int8 AS n");
        expect(rows[0]).toEqual({ n: "7" }); // pg's global default, untouched
      } finally {
        await plain.end();
      }
    });
  });
});

describe("PGlite only", () => {
  it("locks its data directory: a second open fails until the first closes", async () => {
    const dir = await copyPgliteTemplate();
    try {
      const first = await openPglite(dir);
      expect((await readFile(path.join(dir, ".lock"), "utf8")).trim()).toBe(String(process.pid));
      const e = await rejection(openPglite(dir));
      expect(String(e)).toContain(`data directory ${dir} is in use by process ${process.pid}`);
      await first.close();
      await expect(stat(path.join(dir, ".lock"))).rejects.toThrow();

      const second = await openPglite(dir);
      expect((await second.query("SELECT count(*) AS n FROM schema_migrations")).rows).toEqual([{ n: MIGRATIONS.length }]);
      await second.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("takes over a lock left by a dead process", async () => {
    const dir = await copyPgliteTemplate();
    try {
      const child = spawnSync(process.execPath, ["-e", "process.stdout.write(String(process.pid))"], { encoding: "utf8" });
      const deadPid = Number(child.stdout);
      expect(deadPid).toBeGreaterThan(0);
      await writeFile(path.join(dir, ".lock"), `${deadPid}\n`);
      const db = await openPglite(dir);
      expect((await readFile(path.join(dir, ".lock"), "utf8")).trim()).toBe(String(process.pid));
      await db.close();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  it("runs in memory for memory:// without a lock file", async () => {
    const db = await openPglite("memory://");
    try {
      expect(db.kind).toBe("pglite");
      expect(await migrate(db)).toEqual({ applied: MIGRATIONS.map((m) => m.version) });
    } finally {
      await db.close();
    }
    expect(await rejection(db.query("SELECT 1"))).toMatchObject({ reason: "BACKEND_UNAVAILABLE" });
  });
});
