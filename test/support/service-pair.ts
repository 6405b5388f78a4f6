import type { Db } from "../../src/store/db.js";
import { openPostgres } from "../../src/store/pg-db.js";
import { startTestService, type TestService, type TestServiceOptions } from "./test-service.js";

/**
 * Two services as two replicas of one deployment: on Postgres (DATABASE_URL) the
 * second shares the first's database through a pool of its own, with the same keys
 * and JWT secret (and, with REDIS_URL, the same cache); on the embedded database the
 * first plays both parts, since two in-process caches over one PGlite would not be
 * one deployment. `stop` stops what was started.
 */
export interface ServicePair {
  a: TestService;
  b: TestService;
  stop(): Promise<void>;
}

export async function startServicePair(env: Record<string, string>, options: TestServiceOptions = {}): Promise<ServicePair> {
  const a = await startTestService(env, options);
  if (!a.dbUrl) return { a, b: a, stop: () => a.stop() };
  let pool: Db | undefined;
  try {
    pool = await openPostgres(a.dbUrl, { maxConnections: 4 });
    const b = await startTestService(env, { ...options, database: { db: pool, url: a.dbUrl }, masterKeys: a.masterKeys, jwtSecret: a.jwtSecret });
    return {
      a,
      b,
      async stop() {
        await b.stop();
        await pool?.close();
        await a.stop();
      },
    };
  } catch (e) {
    await pool?.close();
    await a.stop();
    throw e;
  }
}
