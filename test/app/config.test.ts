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

  it("takes the audit partition size in hours that divide a day, a day by default, and an export directory", () => {
    expect(loadConfig({})).toMatchObject({ auditPartitionHours: 24, auditExportDir: undefined });
    expect(loadConfig({ SECRETS_AUDIT_PARTITION_HOURS: "6", SECRETS_AUDIT_EXPORT_DIR: "/var/lib/audit" })).toMatchObject({
      auditPartitionHours: 6,
      auditExportDir: "/var/lib/audit",
    });
    for (const bad of ["5", "0", "48", "1.5", "day"]) expect(error({ SECRETS_AUDIT_PARTITION_HOURS: bad })).toMatch(/SECRETS_AUDIT_PARTITION_HOURS must be one of 1, 2, 3, 4, 6, 8, 12, 24/);
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
  it("reads SECRETS_PKCS11_*: module, one token selector, one PIN source, id:label keys; never echoes the PIN", () => {
    const hsm = { SECRETS_PKCS11_MODULE: "/usr/lib/softhsm/libsofthsm2.so", SECRETS_PKCS11_TOKEN_LABEL: "secrets", SECRETS_PKCS11_PIN: "pin-1234", SECRETS_PKCS11_KEYS: "h1:mk-2026, h2:mk-2027" };
    const { SECRETS_MASTER_KEYS: _unused, ...prodWithoutKeyring } = prod;
    const c = loadConfig({ ...prodWithoutKeyring, ...hsm });
    expect(c.masterKeys).toBeUndefined();
    expect(c.pkcs11).toMatchObject({ modulePath: hsm.SECRETS_PKCS11_MODULE, token: { label: "secrets" }, pinSource: "SECRETS_PKCS11_PIN", sessions: 4 });
    expect([...(c.pkcs11?.keys ?? [])]).toEqual([["h1", "mk-2026"], ["h2", "mk-2027"]]);
    expect(c.pkcs11?.pin.exposeSecretBytes().toString()).toBe("pin-1234");
    expect(JSON.stringify(c)).not.toContain("pin-1234");
    expect(loadConfig({ ...prod, ...hsm, SECRETS_PKCS11_TOKEN_LABEL: "", SECRETS_PKCS11_SLOT: "7" }).pkcs11?.token).toEqual({ slot: 7 });

    expect(error({ ...prod, SECRETS_PKCS11_KEYS: "h1:mk" })).toMatch(/SECRETS_PKCS11_KEYS needs SECRETS_PKCS11_MODULE/);
    expect(error({ ...prod, ...hsm, SECRETS_PKCS11_SLOT: "1" })).toMatch(/exactly one of SECRETS_PKCS11_TOKEN_LABEL and SECRETS_PKCS11_SLOT/);
    expect(error({ ...prod, ...hsm, SECRETS_PKCS11_PIN_FILE: "/p" })).toMatch(/exactly one of SECRETS_PKCS11_PIN and SECRETS_PKCS11_PIN_FILE/);
    expect(error({ ...prod, ...hsm, SECRETS_PKCS11_PIN: "", SECRETS_PKCS11_PIN_FILE: "/nonexistent/pin" })).toBe("SECRETS_PKCS11_PIN_FILE cannot be read");
    expect(error({ ...prod, ...hsm, SECRETS_PKCS11_KEYS: "h1:mk,h1:other" })).toMatch(/entry 2 repeats master key id "h1"/);
    const bad = error({ ...prod, ...hsm, SECRETS_PKCS11_KEYS: "pin-1234" });
    expect(bad).toMatch(/entry 1 is not id:label/);
    expect(bad).not.toContain("pin-1234");
    expect(error({ ...prodWithoutKeyring })).toBe(
      "SECRETS_MASTER_KEYS or SECRETS_MASTER_KEY_FILE is required when DATABASE_URL is set (or master keys in an HSM: SECRETS_PKCS11_*)",
    );
  });
});
