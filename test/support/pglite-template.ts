/**
 * The migrated PGlite data directory that test databases are copied from.
 *
 * initdb plus migrations cost several seconds; copying a finished directory costs
 * a fraction of one. The template lives in `.test-data/` (git-ignored) under a name
 * that hashes the migrations and the PGlite version, so it is rebuilt exactly when
 * either changes and reused across runs otherwise.
 */
import { createHash, randomBytes } from "node:crypto";
import { readFile, rename, rm, stat } from "node:fs/promises";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { migrate } from "../../src/store/migrate.js";
import { openPglite } from "../../src/store/pglite-db.js";
import { MIGRATIONS } from "../../src/store/schema.js";

const ROOT = fileURLToPath(new URL("../../", import.meta.url));

/** Where the template for the current migrations and PGlite version lives. */
export async function pgliteTemplateDir(): Promise<string> {
  const pkg = JSON.parse(
    await readFile(path.join(ROOT, "node_modules/@electric-sql/pglite/package.json"), "utf8"),
  ) as { version: string };
  const hash = createHash("sha256")
    .update(JSON.stringify({ pglite: pkg.version, migrations: MIGRATIONS }))
    .digest("hex")
    .slice(0, 16);
  return path.join(ROOT, ".test-data", `pglite-template-${hash}`);
}

/**
 * Return the template directory, building it first if needed. Safe to call from
 * several processes at once: each builds in a private directory and renames it
 * into place, so a template that exists is always complete.
 */
export async function ensurePgliteTemplate(): Promise<string> {
  const dir = await pgliteTemplateDir();
  if (await exists(dir)) return dir;

  const building = `${dir}.building-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    const db = await openPglite(building);
    try {
      await migrate(db);
    } finally {
      await db.close(); // also removes the lock file, so copies start unlocked
    }
    await rename(building, dir).catch(async (e: unknown) => {
      // Another process finished first: keep theirs.
      if (!(await exists(dir))) throw e;
    });
  } finally {
    await rm(building, { recursive: true, force: true });
  }
  return dir;
}

async function exists(p: string): Promise<boolean> {
  return stat(p).then(
    () => true,
    () => false,
  );
}
