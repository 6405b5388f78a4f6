import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import type { Scope } from "../../src/auth/principal.js";
import { mintHs256Token } from "../../src/auth/token-issuer.js";
import { loadConfig } from "../../src/app/config.js";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { startService, type RunningService } from "../../src/app/service.js";
import { createLogger } from "../../src/observability/logger.js";
import type { Db } from "../../src/store/db.js";
import { openPostgres } from "../../src/store/pg-db.js";
import { secretsClient, type TestClient } from "./grpc-client.js";
import { startTcpProxy, type TcpProxy } from "./tcp-proxy.js";
import { createTestDb, type TestDb } from "./test-db.js";
import { LogCapture } from "./test-service.js";

/**
 * The service in-process with Postgres (a fresh test database) reached through a
 * proxy the test can cut: for tests of what happens while the database is
 * unreachable. Postgres only (DATABASE_URL must be set).
 */
export interface ProxiedService {
  service: RunningService;
  client: TestClient<typeof SecretService>;
  proxy: TcpProxy;
  logs: LogCapture;
  token(subject: string, scopes?: Scope[]): Promise<string>;
  stop(): Promise<void>;
}

export async function startProxiedService(env: Record<string, string> = {}): Promise<ProxiedService> {
  const testDb: TestDb = await createTestDb();
  const target = new URL(testDb.url as string);
  const proxy = await startTcpProxy(target.hostname, Number(target.port || 5432));
  const viaProxy = new URL(target);
  viaProxy.port = String(proxy.port);
  const db: Db = await openPostgres(viaProxy.toString(), { maxConnections: 4 });
  const dataDir = mkdtempSync(join(tmpdir(), "secrets-proxied-"));
  const jwtSecret = randomBytes(32).toString("base64url");
  const config = loadConfig({
    SECRETS_GRPC_ADDR: "127.0.0.1:0",
    SECRETS_DATA_DIR: dataDir,
    DATABASE_URL: viaProxy.toString(),
    SECRETS_MASTER_KEYS: `k1:${randomBytes(32).toString("base64")}`,
    SECRETS_JWT_SECRET: jwtSecret,
    ...env,
  });
  const logs = new LogCapture();
  const service = await startService(config, { log: createLogger("info", logs), db, shutdownGraceMs: 1_000 });
  const client = secretsClient(`127.0.0.1:${service.port}`);
  return {
    service,
    client,
    proxy,
    logs,
    token: (subject, scopes = ["secrets:read", "secrets:write", "secrets:access"]) =>
      mintHs256Token(new TextEncoder().encode(jwtSecret), { subject, scopes, ttlSeconds: 600 }),
    async stop() {
      client.close();
      await service.stop();
      await db.close();
      await proxy.close();
      await testDb.cleanup();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
