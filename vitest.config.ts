import { defineConfig } from "vitest/config";

export default defineConfig({
  test: {
    include: ["test/**/*.test.ts"],
    globalSetup: ["test/support/global-setup.ts"],
    // Each file opens its own database (PGlite instance or fresh Postgres database);
    // two workers match the two cores of the machines this runs on.
    pool: "forks",
    maxWorkers: 2,
    testTimeout: 30_000,
    // The store's check against calling a Db from inside its own transaction, off in
    // production for its cost (src/store/db.ts, ScopeGuard), on for every test and
    // for the server processes tests start.
    env: { SECRETS_DB_SCOPE_CHECKS: "1" },
    hookTimeout: 120_000,
  },
});
