/**
 * Vitest globalSetup, run once per `vitest run` before any test file.
 *
 * - Without DATABASE_URL: make sure the migrated PGlite template exists (built
 *   once, then reused across runs), so each test file only copies it.
 * - With DATABASE_URL: the run is meant to test against that Postgres, so if it
 *   cannot be reached the whole run fails here, loudly; it never quietly falls
 *   back to PGlite or skips.
 */
import pg from "pg";

import { ensurePgliteTemplate } from "./pglite-template.js";
import { testDatabaseKind } from "./test-db.js";

/** Prepare the test backend once per run (see the module comment). */
export default async function setup(): Promise<void> {
  if (testDatabaseKind() === "pglite") {
    await ensurePgliteTemplate();
    return;
  }
  const client = new pg.Client({ connectionString: process.env.DATABASE_URL, connectionTimeoutMillis: 5_000 });
  try {
    await client.connect();
    await client.query("SELECT 1");
  } catch (e) {
    // The cause names host and port, never the URL (which may hold a password).
    throw new Error(
      `DATABASE_URL is set but Postgres is not reachable (${e instanceof Error ? e.message : String(e)}); ` +
        "start it or unset DATABASE_URL to test on PGlite",
      { cause: e },
    );
  } finally {
    await client.end().catch(() => undefined);
  }
}
