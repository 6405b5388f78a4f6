import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import type { Scope } from "../../src/auth/principal.js";
import { mintHs256Token } from "../../src/auth/token-issuer.js";
import { loadConfig } from "../../src/app/config.js";
import { startService, type RunningService } from "../../src/app/service.js";
import { createLogger } from "../../src/observability/logger.js";
import type { Db } from "../../src/store/db.js";
import { createTestDb } from "./test-db.js";

/** Everything the service wrote to its log, as text, for tests that grep it. */
export class LogCapture extends Writable {
  readonly chunks: string[] = [];
  override _write(chunk: Buffer, _enc: BufferEncoding, done: () => void): void {
    this.chunks.push(chunk.toString("utf8"));
    done();
  }
  get text(): string {
    return this.chunks.join("");
  }
  lines(): Record<string, unknown>[] {
    return this.text
      .split("\n")
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>);
  }
}

export const ALL_SCOPES: Scope[] = ["secrets:read", "secrets:access", "secrets:write"];

/** A whole service on 127.0.0.1:0 over a fresh test database, with a token minter. */
export interface TestService {
  address: string;
  db: Db;
  dbUrl: string | undefined;
  service: RunningService;
  logs: LogCapture;
  masterKeys: string;
  jwtSecret: string;
  token(subject: string, options?: { scopes?: Scope[]; allowlist?: string[]; ttlSeconds?: number }): Promise<string>;
  stop(): Promise<void>;
}

export async function startTestService(env: Record<string, string> = {}): Promise<TestService> {
  const testDb = await createTestDb();
  const dataDir = mkdtempSync(join(tmpdir(), "secrets-svc-"));
  const masterKeys = `k1:${randomBytes(32).toString("base64")}`;
  const jwtSecret = randomBytes(32).toString("base64url");
  const config = loadConfig({
    SECRETS_GRPC_ADDR: "127.0.0.1:0",
    SECRETS_DATA_DIR: dataDir,
    SECRETS_MASTER_KEYS: masterKeys,
    SECRETS_JWT_SECRET: jwtSecret,
    ...(testDb.url ? { DATABASE_URL: testDb.url } : {}),
    ...env,
  });
  const logs = new LogCapture();
  const service = await startService(config, { log: createLogger("debug", logs), db: testDb.db, shutdownGraceMs: 2_000 });
  const secret = new TextEncoder().encode(jwtSecret);
  return {
    address: `127.0.0.1:${service.port}`,
    db: testDb.db,
    dbUrl: testDb.url,
    service,
    logs,
    masterKeys,
    jwtSecret,
    token: (subject, options = {}) =>
      mintHs256Token(secret, {
        subject,
        scopes: options.scopes ?? ALL_SCOPES,
        ttlSeconds: options.ttlSeconds ?? 600,
        ...(options.allowlist ? { allowlist: options.allowlist } : {}),
      }),
    async stop() {
      await service.stop();
      await testDb.cleanup();
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
