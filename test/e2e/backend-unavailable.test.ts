import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { mintHs256Token } from "../../src/auth/token-issuer.js";
import { loadConfig } from "../../src/config.js";
import { createLogger, startService, type RunningService } from "../../src/main.js";
import type { Db } from "../../src/store/db.js";
import { openPostgres } from "../../src/store/pg-db.js";
import { expectCallError, secretsClient, type TestClient } from "../support/grpc-client.js";
import { startTcpProxy, type TcpProxy } from "../support/tcp-proxy.js";
import { LogCapture } from "../support/test-service.js";
import { createTestDb, type TestDb } from "../support/test-db.js";
import type { SecretService } from "../../src/gen/secrets/v1/secrets_pb.js";

// Postgres unreachable → UNAVAILABLE (BACKEND_UNAVAILABLE), and the service recovers
// by itself. The service reaches Postgres through a proxy this test cuts; the
// machine's shared Postgres is never touched.

describe.runIf(process.env["DATABASE_URL"])("Postgres unreachable", () => {
  let testDb: TestDb;
  let proxy: TcpProxy;
  let db: Db;
  let service: RunningService;
  let client: TestClient<typeof SecretService>;
  let token: string;
  const dataDir = mkdtempSync(join(tmpdir(), "secrets-unavail-"));

  beforeAll(async () => {
    testDb = await createTestDb();
    const target = new URL(testDb.url as string);
    proxy = await startTcpProxy(target.hostname, Number(target.port || 5432));
    const viaProxy = new URL(target);
    viaProxy.port = String(proxy.port);
    db = await openPostgres(viaProxy.toString(), { maxConnections: 4 });
    const jwtSecret = "u".repeat(40);
    const config = loadConfig({
      SECRETS_GRPC_ADDR: "127.0.0.1:0",
      SECRETS_DATA_DIR: dataDir,
      DATABASE_URL: viaProxy.toString(),
      SECRETS_MASTER_KEYS: `k1:${Buffer.alloc(32, 3).toString("base64")}`,
      SECRETS_JWT_SECRET: jwtSecret,
    });
    service = await startService(config, { log: createLogger("warn", new LogCapture()), db, shutdownGraceMs: 1_000 });
    client = secretsClient(`127.0.0.1:${service.port}`);
    token = await mintHs256Token(new TextEncoder().encode(jwtSecret), {
      subject: "unavail-dev",
      scopes: ["secrets:read", "secrets:write", "secrets:access"],
      ttlSeconds: 600,
    });
  });

  afterAll(async () => {
    client?.close();
    await service?.stop();
    await db?.close();
    await proxy?.close();
    await testDb?.cleanup();
    rmSync(dataDir, { recursive: true, force: true });
  });

  it("fails reads and writes UNAVAILABLE while Postgres is down, writes nothing, and recovers", async () => {
    await client.createSecret({ name: "before_outage", value: "v-before" }, token);
    await proxy.down();
    for (const call of [
      () => client.accessSecret({ name: "before_outage" }, token),
      () => client.createSecret({ name: "during_outage", value: "v-during" }, token),
      () => client.listSecrets({}, token),
    ]) {
      const err = await expectCallError(call);
      expect(err.code).toBe(status.UNAVAILABLE);
      expect(err.reason).toBe("BACKEND_UNAVAILABLE");
      expect(err.details).not.toMatch(/postgres|127\.0\.0\.1|password/i);
    }
    await proxy.up();
    let value: string | undefined;
    for (let i = 0; i < 50 && value === undefined; i++) {
      value = await client.accessSecret({ name: "before_outage" }, token).then(
        (r) => r.value,
        () => new Promise<undefined>((r) => setTimeout(() => r(undefined), 100)),
      );
    }
    expect(value).toBe("v-before");
    expect((await client.listSecrets({}, token)).secrets.map((s) => s.name)).toEqual(["before_outage"]);
  });
});
