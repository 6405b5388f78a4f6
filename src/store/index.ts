/**
 * The store's storage foundation: the `Db` interface, its two adapters, and
 * migrations. The rest of the service opens its database through `openDatabase`.
 */
import path from "node:path";

import type { Db } from "./db.js";
import { migrate } from "./migrate.js";
import { openPostgres } from "./pg-db.js";
import { openPglite } from "./pglite-db.js";

export { DbError, isUniqueViolation, type Db, type QueryResult, type Queryable } from "./db.js";
export { migrate } from "./migrate.js";
export { openPostgres, type PostgresOptions } from "./pg-db.js";
export { DataDirInUse, PGLITE_IN_MEMORY, openPglite } from "./pglite-db.js";
export { MIGRATIONS, type Migration } from "./schema.js";

/**
 * Open the configured database, migrated and ready: Postgres when `databaseUrl`
 * is set, otherwise the embedded PGlite persisted at `<dataDir>/pglite`.
 */
export async function openDatabase(options: { databaseUrl?: string; dataDir: string; scopeChecks: boolean }): Promise<Db> {
  const { scopeChecks } = options;
  const db =
    options.databaseUrl !== undefined && options.databaseUrl !== ""
      ? await openPostgres(options.databaseUrl, { scopeChecks })
      : await openPglite(path.join(options.dataDir, "pglite"), { scopeChecks });
  try {
    await migrate(db);
  } catch (e) {
    await db.close().catch(() => undefined);
    throw e;
  }
  return db;
}
