import { KeyService } from "../../src/api/gen/secrets/v1/keys_pb.js";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import type { Scope } from "../../src/auth/principal.js";
import type { Db } from "../../src/store/db.js";
import { createTestClient, secretsClient, type TestClient } from "./grpc-client.js";
import { sharedOrPrivateRedis } from "./redis-server.js";
import { startServerProcess, type ServerProcess } from "./server-process.js";
import { createTestDb } from "./test-db.js";
import { mintToken, newJwtSecret, USER_SCOPES } from "./test-service.js";

/** A server process in production mode with its clients, started from the build. */
export interface Replica {
  process: ServerProcess;
  secrets: TestClient<typeof SecretService>;
  keys: TestClient<typeof KeyService>;
  replicaId: string;
  /** Set when the replica was started with SECRETS_METRICS_ADDR. */
  metricsPort: number | undefined;
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

/** Servers sharing one database, one JWT secret and (when given) one Redis, with tokens for any subject. */
export interface ProcessCluster {
  jwtSecret: string;
  /** Starts a replica with this keyring; it gets the cluster's Redis as REDIS_URL unless `env` sets another. */
  start(keyring: string[], env?: Record<string, string>): Promise<Replica>;
  /** A token for `subject`, by default with the scopes of a developer (USER_SCOPES). */
  token(subject: string, scopes?: Scope[]): Promise<string>;
  /** SIGKILLs every replica still running. */
  stopAll(): Promise<void>;
}

export function processCluster(databaseUrl: string, redisUrl?: string): ProcessCluster {
  const jwtSecret = newJwtSecret();
  const replicas: Replica[] = [];
  return {
    jwtSecret,
    async start(keyring, env = {}) {
      const process = startServerProcess({
        DATABASE_URL: databaseUrl,
        ...(redisUrl ? { REDIS_URL: redisUrl } : {}),
        SECRETS_GRPC_ADDR: "127.0.0.1:0",
        SECRETS_MASTER_KEYS: keyring.join(","),
        SECRETS_JWT_SECRET: jwtSecret,
        SECRETS_LOG_LEVEL: "info",
        ...env,
      });
      let match: RegExpMatchArray;
      try {
        match = await process.waitFor(/"port":(\d+)[^\n]*"replicaId":"([^"]+)"[^\n]*"msg":"serving"/);
      } catch (e) {
        // Never leave a server behind that never said it was serving.
        if (process.child.exitCode === null) process.kill("SIGKILL");
        throw e;
      }
      const [serving, port, replicaId] = match;
      const metricsPort = serving.match(/"metricsPort":(\d+)/)?.[1];
      const address = `127.0.0.1:${port}`;
      const replica: Replica = {
        process,
        secrets: secretsClient(address),
        keys: createTestClient(KeyService, address),
        replicaId: replicaId as string,
        metricsPort: metricsPort === undefined ? undefined : Number(metricsPort),
        async stop(signal = "SIGTERM") {
          replica.secrets.close();
          replica.keys.close();
          if (process.child.exitCode === null) process.kill(signal);
          return process.exited;
        },
      };
      replicas.push(replica);
      return replica;
    },
    token(subject, scopes = USER_SCOPES) {
      return mintToken(jwtSecret, subject, { scopes, ttlSeconds: 3_600 });
    },
    async stopAll() {
      await Promise.all(replicas.map((r) => r.stop("SIGKILL")));
    },
  };
}

/** A process cluster on a fresh Postgres test database, and with `redis` a Redis. */
export interface ReplicaCluster extends ProcessCluster {
  /** The database the replicas share, for the test's own reads and writes. */
  db: Db;
  dbUrl: string;
  /** The Redis every replica is given, when the cluster has one. */
  redisUrl: string | undefined;
  /** Kills every replica, then drops the database and stops a Redis it started. */
  stop(): Promise<void>;
}

/**
 * Starts the shared parts of a deployment: a fresh test database on the run's
 * Postgres (replicas are separate processes, so PGlite cannot serve them) and, with
 * `redis`, the machine's Redis (REDIS_URL) or a private one (sharedOrPrivateRedis).
 * Replicas are started with `start`.
 */
export async function startReplicaCluster(options: { redis?: boolean } = {}): Promise<ReplicaCluster> {
  const testDb = await createTestDb();
  if (!testDb.url) {
    await testDb.cleanup();
    throw new Error("a replica cluster needs Postgres: set DATABASE_URL");
  }
  let redis: { url: string; dispose(): Promise<void> } | undefined;
  try {
    if (options.redis) redis = await sharedOrPrivateRedis();
  } catch (e) {
    await testDb.cleanup();
    throw e;
  }
  const cluster = processCluster(testDb.url, redis?.url);
  return {
    ...cluster,
    db: testDb.db,
    dbUrl: testDb.url,
    redisUrl: redis?.url,
    async stop() {
      await cluster.stopAll();
      await redis?.dispose();
      await testDb.cleanup();
    },
  };
}
