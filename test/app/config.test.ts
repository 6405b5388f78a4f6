import { describe, expect, it } from "vitest";
import { ConfigError, loadConfig } from "../../src/app/config.js";

const prod = {
  DATABASE_URL: "postgres://u@db/secrets",
  SECRETS_MASTER_KEYS: `k1:${Buffer.alloc(32, 1).toString("base64")}`,
  SECRETS_JWT_SECRET: "s".repeat(32),
};

function error(env: Record<string, string>): string {
  try {
    loadConfig(env);
  } catch (e) {
    expect(e).toBeInstanceOf(ConfigError);
    return (e as Error).message;
  }
  throw new Error("expected a configuration error");
}

describe("configuration", () => {
  it("defaults to dev mode on loopback with the documented defaults", () => {
    const c = loadConfig({});
    expect(c).toMatchObject({ mode: "dev", grpcAddr: "127.0.0.1:50051", dataDir: ".secrets-data", cacheTtlSeconds: 30, maxVersions: 20 });
    expect(c.jwtMaxTtlSeconds).toBe(86_400);
    expect(c.dbScopeChecks).toBe(false);
  });

  it("turns on the store's development check with SECRETS_DB_SCOPE_CHECKS", () => {
    expect(loadConfig({ SECRETS_DB_SCOPE_CHECKS: "1" }).dbScopeChecks).toBe(true);
    expect(error({ SECRETS_DB_SCOPE_CHECKS: "maybe" })).toMatch(/SECRETS_DB_SCOPE_CHECKS/);
  });

  it("dev mode refuses a non-loopback address; production needs TLS or SECRETS_ALLOW_PLAINTEXT there", () => {
    expect(error({ SECRETS_GRPC_ADDR: "0.0.0.0:50051" })).toMatch(/SECRETS_GRPC_ADDR/);
    expect(error({ ...prod, SECRETS_GRPC_ADDR: "0.0.0.0:50051" })).toMatch(/SECRETS_ALLOW_PLAINTEXT/);
    expect(loadConfig({ ...prod, SECRETS_GRPC_ADDR: "0.0.0.0:50051", SECRETS_ALLOW_PLAINTEXT: "1" }).mode).toBe("production");
    expect(loadConfig({ SECRETS_GRPC_ADDR: "[::1]:7000" }).grpcAddr).toBe("[::1]:7000");
  });

  it("production mode names each missing variable and never echoes a value", () => {
    expect(error({ DATABASE_URL: prod.DATABASE_URL, SECRETS_JWT_SECRET: prod.SECRETS_JWT_SECRET })).toMatch(/SECRETS_MASTER_KEYS/);
    expect(error({ DATABASE_URL: prod.DATABASE_URL, SECRETS_MASTER_KEYS: prod.SECRETS_MASTER_KEYS })).toMatch(/SECRETS_JWT_SECRET/);
    const short = error({ ...prod, SECRETS_JWT_SECRET: "too-short-secret" });
    expect(short).toMatch(/at least 32 bytes/);
    expect(short).not.toContain("too-short-secret");
    expect(error({ ...prod, SECRETS_JWT_PUBLIC_KEY: "-----BEGIN PUBLIC KEY-----" })).toMatch(/only one/);
    expect(error({ ...prod, SECRETS_TLS_CERT: "/c.pem" })).toMatch(/SECRETS_TLS_KEY/);
  });

  it("accepts Redis Sentinel and Cluster topologies", () => {
    const s = loadConfig({ ...prod, SECRETS_REDIS_SENTINELS: "10.0.0.1:26379, 10.0.0.2:26379", SECRETS_REDIS_SENTINEL_NAME: "secrets" });
    expect(s.redisSentinels).toEqual([
      { host: "10.0.0.1", port: 26379 },
      { host: "10.0.0.2", port: 26379 },
    ]);
    expect(s.redisSentinelName).toBe("secrets");
    const c = loadConfig({ ...prod, SECRETS_REDIS_CLUSTER_NODES: "redis-0:6379,[fd00::1]:6379" });
    expect(c.redisClusterNodes).toEqual([
      { host: "redis-0", port: 6379 },
      { host: "fd00::1", port: 6379 },
    ]);
    expect(error({ ...prod, SECRETS_REDIS_SENTINELS: "10.0.0.1:26379" })).toMatch(/SECRETS_REDIS_SENTINEL_NAME/);
    expect(error({ ...prod, SECRETS_REDIS_CLUSTER_NODES: "no-port" })).toMatch(/SECRETS_REDIS_CLUSTER_NODES/);
    expect(
      error({ ...prod, SECRETS_REDIS_CLUSTER_NODES: "a:1", SECRETS_REDIS_SENTINELS: "b:2", SECRETS_REDIS_SENTINEL_NAME: "m" }),
    ).toMatch(/only one/);
  });

  it("validates numbers and levels", () => {
    expect(error({ SECRETS_MAX_VERSIONS: "0" })).toMatch(/SECRETS_MAX_VERSIONS/);
    expect(error({ SECRETS_CACHE_TTL_SECONDS: "abc" })).toMatch(/SECRETS_CACHE_TTL_SECONDS/);
    expect(error({ SECRETS_LOG_LEVEL: "loud" })).toMatch(/SECRETS_LOG_LEVEL/);
    expect(error({ SECRETS_METRICS_ADDR: "nowhere" })).toMatch(/SECRETS_METRICS_ADDR/);
    expect(loadConfig({ SECRETS_READ_RATE: "0" }).readRatePerSecond).toBe(0);
  });

  it("reads the recovery window: 7 days by default, 1 to 365", () => {
    expect(loadConfig({}).recoveryWindowDays).toBe(7);
    expect(loadConfig({ SECRETS_RECOVERY_WINDOW_DAYS: "30" }).recoveryWindowDays).toBe(30);
    for (const bad of ["0", "366", "-1", "7d"]) {
      expect(error({ SECRETS_RECOVERY_WINDOW_DAYS: bad })).toMatch(/SECRETS_RECOVERY_WINDOW_DAYS/);
    }
  });
});
