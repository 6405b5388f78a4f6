import { fileURLToPath } from "node:url";
import { defineConfig } from "vitest/config";

const sdkSource = (file: string) => fileURLToPath(new URL(`./packages/client/src/${file}`, import.meta.url));

export default defineConfig({
  // Tests load the SDK package from its source (as the typecheck does, tsconfig.json `paths`), so server,
  // CLI and test code share one copy of its classes; child processes run the built package.
  resolve: {
    alias: [
      { find: /^@secrets-service\/client$/, replacement: sdkSource("index.ts") },
      { find: /^@secrets-service\/client\/contract$/, replacement: sdkSource("contract.ts") },
    ],
  },
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
