/**
 * A fresh, migrated database for one test file (or one test).
 *
 *   const t = await createTestDb();      // in beforeAll
 *   ... t.db.query(...) ...
 *   await t.cleanup();                   // in afterAll
 *
 * With DATABASE_URL set (CI), it is a new database `secrets_test_<random>` on that
 * server, dropped by cleanup. Without it, a private copy of the migrated PGlite
 * template in the OS temp directory, removed by cleanup. Either way the schema is
 * current and the data empty; tests that share one database should use their own
 * developer ids so they do not see each other's rows.
 */
import { randomBytes } from "node:crypto";
import { cp, mkdtemp, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

import pg from "pg";

import type { Db } from "../../src/store/db.js";
import { migrate } from "../../src/store/migrate.js";
import { openPostgres } from "../../src/store/pg-db.js";
import { openPglite } from "../../src/store/pglite-db.js";
import { ensurePgliteTemplate } from "./pglite-template.js";

/** A test database and how to get rid of it. */
export interface TestDb {
  db: Db;
  /** Postgres only: the URL of the fresh database (to open more pools on it). */
  url?: string;
  /** PGlite only: the data directory. */
  dataDir?: string;
  /** Close the database and drop / delete it. */
  cleanup(): Promise<void>;
}

/** Which backend `createTestDb` gives in this run: Postgres iff DATABASE_URL is set. */
export function testDatabaseKind(): "postgres" | "pglite" {
  return process.env.DATABASE_URL ? "postgres" : "pglite";
}

/**
 * Create a fresh database on the backend of this run and migrate it.
 * `{ migrate: false }` leaves it empty (no schema_migrations), for migration tests.
 */
export async function createTestDb(options: { migrate?: boolean } = {}): Promise<TestDb> {
  const url = process.env.DATABASE_URL;
  const empty = options.migrate === false;
  const t = url ? await createPostgresTestDb(url) : await createPgliteTestDb(empty);
  if (!empty) {
    try {
      await migrate(t.db);
    } catch (e) {
      await t.cleanup();
      throw e;
    }
  }
  return t;
}

/**
 * Copy the migrated PGlite template to a new temp directory (without opening it).
 * For tests of PGlite itself; the caller removes the directory.
 */
export async function copyPgliteTemplate(): Promise<string> {
  const template = await ensurePgliteTemplate();
  const dataDir = await mkdtemp(path.join(os.tmpdir(), "secrets-test-pglite-"));
  await cp(template, dataDir, { recursive: true });
  return dataDir;
}

/** A copy of the migrated template, or with `empty` a new database of its own (slower: PGlite's initdb). */
async function createPgliteTestDb(empty: boolean): Promise<TestDb> {
  const dataDir = empty ? await mkdtemp(path.join(os.tmpdir(), "secrets-test-pglite-")) : await copyPgliteTemplate();
  const db = await openPglite(dataDir).catch(async (e: unknown) => {
    await rm(dataDir, { recursive: true, force: true });
    throw e;
  });
  return {
    db,
    dataDir,
    async cleanup() {
      await db.close();
      await rm(dataDir, { recursive: true, force: true });
    },
  };
}

async function createPostgresTestDb(serverUrl: string): Promise<TestDb> {
  const name = `secrets_test_${randomBytes(8).toString("hex")}`;
  await onServer(serverUrl, `CREATE DATABASE ${name}`);
  const url = new URL(serverUrl);
  url.pathname = `/${name}`;
  const dbUrl = url.toString();
  const drop = () => onServer(serverUrl, `DROP DATABASE IF EXISTS ${name} WITH (FORCE)`);
  const db = await openPostgres(dbUrl, { maxConnections: 4, applicationName: "secrets-test" }).catch(
    async (e: unknown) => {
      await drop();
      throw e;
    },
  );
  return {
    db,
    url: dbUrl,
    async cleanup() {
      await db.close();
      await drop();
    },
  };
}

/** Run one statement on the server's maintenance database (CREATE / DROP DATABASE cannot run in the target). */
async function onServer(serverUrl: string, sql: string): Promise<void> {
  const client = new pg.Client({ connectionString: serverUrl, connectionTimeoutMillis: 5_000 });
  await client.connect();
  try {
    await client.query(sql);
  } finally {
    await client.end();
  }
}
