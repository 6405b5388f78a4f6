import { randomBytes } from "node:crypto";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Writable } from "node:stream";
import { AuditService } from "../../src/api/gen/secrets/v1/audit_pb.js";
import { KeyService } from "../../src/api/gen/secrets/v1/keys_pb.js";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import type { Scope } from "../../src/auth/principal.js";
import { mintHs256Token } from "../../src/auth/token-issuer.js";
import { loadConfig } from "../../src/app/config.js";
import { startService, type RunningService } from "../../src/app/service.js";
import { SecretsClient, type SecretsClientOptions } from "@secrets-service/client";
import { createLogger } from "../../src/observability/logger.js";
import type { Db } from "../../src/store/db.js";
import { openPostgres } from "../../src/store/pg-db.js";
import { createTestClient, secretsClient, type TestClient } from "./grpc-client.js";
import { startTcpProxy, type TcpProxy } from "./tcp-proxy.js";
import { createTestDb, type TestDb } from "./test-db.js";

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

/** The scopes of a developer who reads, reveals and writes their own secrets. */
export const USER_SCOPES: Scope[] = ["secrets:read", "secrets:access", "secrets:write"];

/** A master key entry `id:base64` for tests. */
export function masterKey(id: string): string {
  return `${id}:${randomBytes(32).toString("base64")}`;
}

/** A random secret for signing test tokens (SECRETS_JWT_SECRET). */
export function newJwtSecret(): string {
  return randomBytes(32).toString("base64url");
}

/** A token signed with `jwtSecret`, as the service's own token issuer makes them. */
export function mintToken(jwtSecret: string, subject: string, options: { scopes?: Scope[]; allowlist?: string[]; ttlSeconds: number }): Promise<string> {
  return mintHs256Token(new TextEncoder().encode(jwtSecret), {
    subject,
    scopes: options.scopes ?? USER_SCOPES,
    ttlSeconds: options.ttlSeconds,
    ...(options.allowlist ? { allowlist: options.allowlist } : {}),
  });
}

/**
 * A whole service in this process on 127.0.0.1:0, with a token minter and gRPC
 * clients of its three services (closed by `stop`).
 */
export interface TestService {
  address: string;
  db: Db;
  dbUrl: string | undefined;
  service: RunningService;
  logs: LogCapture;
  masterKeys: string;
  jwtSecret: string;
  secrets: TestClient<typeof SecretService>;
  keys: TestClient<typeof KeyService>;
  audit: TestClient<typeof AuditService>;
  /** Set with `proxy`: the proxy between the service and Postgres. */
  proxy: TcpProxy | undefined;
  token(subject: string, options?: { scopes?: Scope[]; allowlist?: string[]; ttlSeconds?: number }): Promise<string>;
  /** An SDK client acting as `developer`, closed by `stop`. */
  connectClient(developer: string, options?: Partial<SecretsClientOptions>): Promise<SecretsClient>;
  stop(): Promise<void>;
}

export interface TestServiceOptions {
  /**
   * Reach Postgres through a TCP proxy the test can cut, for tests of what happens
   * while the database is unreachable. Postgres only (DATABASE_URL must be set).
   */
  proxy?: boolean;
  /**
   * Run on this database, which the caller opened and migrated and keeps (it is not
   * closed by `stop`), instead of a fresh test database. `url` is its DATABASE_URL.
   */
  database?: { db: Db; url: string };
  /** The keyring (SECRETS_MASTER_KEYS) and the token secret, to share them with other services. */
  masterKeys?: string;
  jwtSecret?: string;
  /** The service's log level (default debug: the capture sees every line). */
  logLevel?: string;
  /** The service's clock (StartOptions.clock), for tests that move time. */
  clock?: () => Date;
  /** StartOptions.lifecycleJobs: "manual" for tests that run the lifecycle job by hand. */
  lifecycleJobs?: "timer" | "manual";
}

/** Starts a service over a fresh test database (see the options); `env` adds or overrides settings. */
export function startTestService(env: Record<string, string>, options: TestServiceOptions & { proxy: true }): Promise<TestService & { proxy: TcpProxy }>;
export function startTestService(env?: Record<string, string>, options?: TestServiceOptions): Promise<TestService>;
export async function startTestService(env: Record<string, string> = {}, options: TestServiceOptions = {}): Promise<TestService> {
  const cleanups: (() => Promise<void> | void)[] = [];
  const cleanUp = async () => {
    for (const fn of cleanups.splice(0).reverse()) await fn();
  };
  try {
    let testDb: TestDb | undefined;
    let db: Db;
    let dbUrl: string | undefined;
    if (options.database) {
      ({ db, url: dbUrl } = options.database);
    } else {
      testDb = await createTestDb();
      cleanups.push(() => testDb?.cleanup());
      ({ db, url: dbUrl } = testDb);
    }
    let proxy: TcpProxy | undefined;
    if (options.proxy) {
      if (!dbUrl) throw new Error("a proxied service needs Postgres: set DATABASE_URL");
      const target = new URL(dbUrl);
      const started = await startTcpProxy(target.hostname, Number(target.port || 5432));
      proxy = started;
      cleanups.push(() => started.close());
      const viaProxy = new URL(target);
      viaProxy.port = String(started.port);
      dbUrl = viaProxy.toString();
      const pool = await openPostgres(dbUrl, { maxConnections: 4 });
      cleanups.push(() => pool.close());
      db = pool;
    }
    const dataDir = mkdtempSync(join(tmpdir(), "secrets-svc-"));
    cleanups.push(() => rmSync(dataDir, { recursive: true, force: true }));
    const masterKeys = options.masterKeys ?? masterKey("k1");
    const jwtSecret = options.jwtSecret ?? newJwtSecret();
    const config = loadConfig({
      SECRETS_GRPC_ADDR: "127.0.0.1:0",
      SECRETS_DATA_DIR: dataDir,
      SECRETS_MASTER_KEYS: masterKeys,
      SECRETS_JWT_SECRET: jwtSecret,
      ...(dbUrl ? { DATABASE_URL: dbUrl } : {}),
      ...env,
    });
    const logs = new LogCapture();
    const service = await startService(config, { log: createLogger(options.logLevel ?? "debug", logs), db, shutdownGraceMs: 2_000, clock: options.clock, lifecycleJobs: options.lifecycleJobs });
    cleanups.push(() => service.stop());
    const address = `127.0.0.1:${service.port}`;
    const clients: { close(): void }[] = [];
    const closedOnStop = <C extends { close(): void }>(client: C): C => {
      clients.push(client);
      return client;
    };
    cleanups.push(() => {
      for (const c of clients) c.close();
    });
    const token: TestService["token"] = (subject, o = {}) => mintToken(jwtSecret, subject, { ...o, ttlSeconds: o.ttlSeconds ?? 600 });
    return {
      address,
      db,
      dbUrl,
      service,
      logs,
      masterKeys,
      jwtSecret,
      secrets: closedOnStop(secretsClient(address)),
      keys: closedOnStop(createTestClient(KeyService, address)),
      audit: closedOnStop(createTestClient(AuditService, address)),
      proxy,
      token,
      connectClient: async (developer, o = {}) => closedOnStop(new SecretsClient({ address, token: await token(developer), ...o })),
      stop: cleanUp,
    };
  } catch (e) {
    await cleanUp();
    throw e;
  }
}
