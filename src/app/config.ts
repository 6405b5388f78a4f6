import { readFileSync } from "node:fs";
import { isIP } from "node:net";
import { KeyBytes } from "../crypto/key-bytes.js";
import type { VerificationKey } from "../auth/token-verifier.js";
import { MIN_HMAC_SECRET_BYTES } from "../auth/token-verifier.js";
import { parseSinkSpecs, type SinkSpec } from "../audit/audit-sink.js";
import { AUDIT_PARTITION_HOURS } from "../store/audit-store.js";
import { MAX_RECOVERY_WINDOW_DAYS } from "../secrets/validation.js";
import type { CallLogPolicy } from "../server/interceptors/call-log.js";

/**
 * Environment → one frozen, validated Config. Errors name the variable and what is
 * wrong with it, never its value. Secrets (master keys, the JWT secret) are read
 * here as text and turned into keys by the composition root.
 */

export type Mode = "dev" | "production";

export interface Config {
  /** dev: no DATABASE_URL (embedded PGlite, generated keys, loopback only). */
  readonly mode: Mode;
  readonly grpcAddr: string;
  readonly databaseUrl: string | undefined;
  readonly redisUrl: string | undefined;
  /** Redis Sentinel: sentinel addresses and the monitored master's name (REDIS_URL then only carries credentials/TLS). */
  readonly redisSentinels: readonly { host: string; port: number }[];
  readonly redisSentinelName: string | undefined;
  /** Redis Cluster: seed node addresses. */
  readonly redisClusterNodes: readonly { host: string; port: number }[];
  readonly dataDir: string;
  /** Keyring text (`id:base64[,…]`), from SECRETS_MASTER_KEYS or SECRETS_MASTER_KEY_FILE; dev mode may generate it. */
  readonly masterKeys: string | undefined;
  /** Which variable the keyring came from, for error messages. */
  readonly masterKeysSource: string;
  /** Master keys in a PKCS#11 token (SECRETS_PKCS11_*); alongside or instead of the keyring. */
  readonly pkcs11: Pkcs11Config | undefined;
  /** Unset only in dev mode, where a secret is generated into the data directory. */
  readonly jwtKey: VerificationKey | undefined;
  readonly jwtAudience: string | undefined;
  readonly jwtIssuer: string | undefined;
  readonly jwtMaxTtlSeconds: number;
  readonly cacheTtlSeconds: number;
  readonly maxVersions: number;
  /** Days a deleted secret stays in the recovery bin when its delete names none. */
  readonly recoveryWindowDays: number;
  /** Open WatchSecrets streams a developer may hold on one replica, and a replica may serve. */
  readonly watchMaxPerDeveloper: number;
  readonly watchMaxPerReplica: number;
  /** Hours the change log keeps a change (a watch may resume from within them). */
  readonly watchRetentionHours: number;
  /** Seconds an idle watch waits before a progress response (its keepalive through proxies). */
  readonly watchProgressSeconds: number;
  readonly tls: { certFile: string; keyFile: string; clientCaFile: string | undefined } | undefined;
  readonly operatorIdentities: readonly string[];
  readonly allowPlaintext: boolean;
  readonly metricsAddr: string | undefined;
  readonly auditStrict: boolean;
  /** SECRETS_AUDIT_RETENTION_DAYS: audit partitions (days) older than this are dropped; 0 keeps them all. */
  readonly auditRetentionDays: number;
  /** SECRETS_AUDIT_PARTITION_HOURS: the hours a new audit partition spans (a divisor of 24; default a day). */
  readonly auditPartitionHours: number;
  /** SECRETS_AUDIT_EXPORT_DIR: where each audit partition is exported before retention drops it; unset, none is. */
  readonly auditExportDir: string | undefined;
  /** SECRETS_AUDIT_SINKS: JSON-lines sinks that get every audit event besides Postgres. */
  readonly auditSinks: readonly SinkSpec[];
  /** SECRETS_DB_SCOPE_CHECKS: a development check with a cost on every call (store/db.ts, ScopeGuard). */
  readonly dbScopeChecks: boolean;
  readonly logLevel: string;
  /** Which calls get their log line (SECRETS_LOG_CALLS): all, only those that fail, or failures and one in N of the rest. */
  readonly logCalls: CallLogPolicy;
  /** Background key jobs (rewrap, re-encryption): rows per batch and a pause between batches. */
  readonly keyJobBatch: number;
  readonly keyJobPauseMs: number;
  /** Per-developer limits; rates are per replica, 0 turns a rate limit off. */
  readonly maxSecretsPerDeveloper: number;
  readonly readRatePerSecond: number;
  readonly writeRatePerSecond: number;
}

/** SECRETS_PKCS11_*: the module, the token, its user PIN and which key label each master key id names. */
export interface Pkcs11Config {
  readonly modulePath: string;
  readonly token: { readonly label: string } | { readonly slot: number };
  /** The variable the token came from (SECRETS_PKCS11_TOKEN_LABEL or SECRETS_PKCS11_SLOT), for errors. */
  readonly tokenSource: string;
  /** The user PIN, in the type that prints as [REDACTED]. */
  readonly pin: KeyBytes;
  readonly pinSource: string;
  /** Master key id → key label, in the order given. */
  readonly keys: ReadonlyMap<string, string>;
  readonly sessions: number;
}

/** A configuration problem; the message names the variable. */
export class ConfigError extends Error {
  override readonly name = "ConfigError";
}

type Env = Readonly<Record<string, string | undefined>>;

const LOG_LEVELS = new Set(["fatal", "error", "warn", "info", "debug", "trace", "silent"]);

export function loadConfig(env: Env): Config {
  const get = (name: string): string | undefined => {
    const v = env[name];
    return v === undefined || v.trim() === "" ? undefined : v.trim();
  };
  const int = (name: string, fallback: number, min: number, max: number): number => {
    const raw = get(name);
    if (raw === undefined) return fallback;
    const n = Number(raw);
    if (!Number.isInteger(n) || n < min || n > max) {
      throw new ConfigError(`${name} must be a whole number from ${min} to ${max}`);
    }
    return n;
  };
  const flag = (name: string): boolean => {
    const raw = get(name);
    if (raw === undefined) return false;
    if (["1", "true", "yes"].includes(raw.toLowerCase())) return true;
    if (["0", "false", "no"].includes(raw.toLowerCase())) return false;
    throw new ConfigError(`${name} must be 1 or 0`);
  };

  const databaseUrl = get("DATABASE_URL");
  const mode: Mode = databaseUrl ? "production" : "dev";
  const grpcAddr = get("SECRETS_GRPC_ADDR") ?? "127.0.0.1:50051";
  const host = hostOf(grpcAddr);
  if (host === undefined) throw new ConfigError("SECRETS_GRPC_ADDR must be host:port (IPv6 in brackets)");
  const loopback = isLoopback(host);

  const tlsCert = get("SECRETS_TLS_CERT");
  const tlsKey = get("SECRETS_TLS_KEY");
  if ((tlsCert === undefined) !== (tlsKey === undefined)) {
    throw new ConfigError("SECRETS_TLS_CERT and SECRETS_TLS_KEY must be set together");
  }
  const clientCa = get("SECRETS_TLS_CLIENT_CA");
  if (clientCa && !tlsCert) throw new ConfigError("SECRETS_TLS_CLIENT_CA needs SECRETS_TLS_CERT and SECRETS_TLS_KEY");
  const tls = tlsCert && tlsKey ? { certFile: tlsCert, keyFile: tlsKey, clientCaFile: clientCa } : undefined;
  const allowPlaintext = flag("SECRETS_ALLOW_PLAINTEXT");

  if (mode === "dev" && !loopback) {
    throw new ConfigError(
      "SECRETS_GRPC_ADDR must be a loopback address in dev mode (DATABASE_URL unset); set DATABASE_URL to run in production mode",
    );
  }
  if (mode === "production" && !loopback && !tls && !allowPlaintext) {
    throw new ConfigError(
      "SECRETS_GRPC_ADDR is not loopback and TLS is off: set SECRETS_TLS_CERT and SECRETS_TLS_KEY, or SECRETS_ALLOW_PLAINTEXT=1 behind a mesh that terminates mTLS",
    );
  }

  const keysInline = get("SECRETS_MASTER_KEYS");
  const keyFile = get("SECRETS_MASTER_KEY_FILE");
  if (keysInline && keyFile) throw new ConfigError("set only one of SECRETS_MASTER_KEYS and SECRETS_MASTER_KEY_FILE");
  let masterKeys = keysInline;
  if (keyFile) {
    try {
      masterKeys = readFileSync(keyFile, "utf8");
    } catch {
      throw new ConfigError("SECRETS_MASTER_KEY_FILE cannot be read");
    }
  }
  const pkcs11 = loadPkcs11Config(get, int);
  if (mode === "production" && !masterKeys && !pkcs11) {
    throw new ConfigError("SECRETS_MASTER_KEYS or SECRETS_MASTER_KEY_FILE is required when DATABASE_URL is set (or master keys in an HSM: SECRETS_PKCS11_*)");
  }

  const jwtSecret = env["SECRETS_JWT_SECRET"];
  const jwtPublicKey = get("SECRETS_JWT_PUBLIC_KEY");
  if (jwtSecret && jwtPublicKey) throw new ConfigError("set only one of SECRETS_JWT_SECRET and SECRETS_JWT_PUBLIC_KEY");
  let jwtKey: VerificationKey | undefined;
  if (jwtSecret) {
    const secret = new TextEncoder().encode(jwtSecret);
    if (secret.length < MIN_HMAC_SECRET_BYTES) {
      throw new ConfigError(`SECRETS_JWT_SECRET must be at least ${MIN_HMAC_SECRET_BYTES} bytes`);
    }
    jwtKey = { kind: "hmac", secret };
  } else if (jwtPublicKey) {
    jwtKey = { kind: "public", pem: jwtPublicKey.replace(/\\n/g, "\n") };
  }
  if (mode === "production" && !jwtKey) {
    throw new ConfigError("SECRETS_JWT_SECRET or SECRETS_JWT_PUBLIC_KEY is required when DATABASE_URL is set");
  }

  const hostList = (name: string): { host: string; port: number }[] =>
    (get(name) ?? "")
      .split(",")
      .map((s) => s.trim())
      .filter(Boolean)
      .map((entry) => {
        const host = hostOf(entry);
        if (host === undefined) throw new ConfigError(`${name} must be a comma-separated list of host:port`);
        return { host, port: Number(entry.slice(entry.lastIndexOf(":") + 1)) };
      });
  const redisSentinels = hostList("SECRETS_REDIS_SENTINELS");
  const redisSentinelName = get("SECRETS_REDIS_SENTINEL_NAME");
  const redisClusterNodes = hostList("SECRETS_REDIS_CLUSTER_NODES");
  if (redisSentinels.length > 0 && !redisSentinelName) {
    throw new ConfigError("SECRETS_REDIS_SENTINEL_NAME (the monitored master's name) is required with SECRETS_REDIS_SENTINELS");
  }
  if (redisSentinels.length > 0 && redisClusterNodes.length > 0) {
    throw new ConfigError("set only one of SECRETS_REDIS_SENTINELS and SECRETS_REDIS_CLUSTER_NODES");
  }

  const metricsAddr = get("SECRETS_METRICS_ADDR");
  if (metricsAddr !== undefined && hostOf(metricsAddr) === undefined) {
    throw new ConfigError("SECRETS_METRICS_ADDR must be host:port (IPv6 in brackets)");
  }

  const logLevel = get("SECRETS_LOG_LEVEL") ?? "info";
  if (!LOG_LEVELS.has(logLevel)) throw new ConfigError(`SECRETS_LOG_LEVEL must be one of ${[...LOG_LEVELS].join(", ")}`);
  const logCalls = parseCallLogPolicy(get("SECRETS_LOG_CALLS") ?? "all");

  return Object.freeze({
    mode,
    grpcAddr,
    databaseUrl,
    redisUrl: get("REDIS_URL"),
    redisSentinels: Object.freeze(redisSentinels),
    redisSentinelName,
    redisClusterNodes: Object.freeze(redisClusterNodes),
    dataDir: get("SECRETS_DATA_DIR") ?? ".secrets-data",
    masterKeys,
    masterKeysSource: keyFile ? "SECRETS_MASTER_KEY_FILE" : "SECRETS_MASTER_KEYS",
    pkcs11,
    jwtKey,
    jwtAudience: get("SECRETS_JWT_AUDIENCE"),
    jwtIssuer: get("SECRETS_JWT_ISSUER"),
    jwtMaxTtlSeconds: int("SECRETS_JWT_MAX_TTL_SECONDS", 86_400, 60, 31 * 86_400),
    cacheTtlSeconds: int("SECRETS_CACHE_TTL_SECONDS", 30, 1, 3600),
    maxVersions: int("SECRETS_MAX_VERSIONS", 20, 1, 10_000),
    recoveryWindowDays: int("SECRETS_RECOVERY_WINDOW_DAYS", 7, 1, MAX_RECOVERY_WINDOW_DAYS),
    watchMaxPerDeveloper: int("SECRETS_WATCH_MAX_PER_DEVELOPER", 32, 1, 100_000),
    watchMaxPerReplica: int("SECRETS_WATCH_MAX_PER_REPLICA", 10_000, 1, 1_000_000),
    watchRetentionHours: int("SECRETS_WATCH_RETENTION_HOURS", 24, 1, 24 * 365),
    watchProgressSeconds: int("SECRETS_WATCH_PROGRESS_SECONDS", 30, 1, 3600),
    tls,
    operatorIdentities: Object.freeze((get("SECRETS_OPERATOR_IDENTITIES") ?? "").split(",").map((s) => s.trim()).filter(Boolean)),
    allowPlaintext,
    metricsAddr,
    auditStrict: flag("SECRETS_AUDIT_STRICT"),
    auditRetentionDays: int("SECRETS_AUDIT_RETENTION_DAYS", 0, 0, 36_500),
    auditPartitionHours: auditPartitionHours(get("SECRETS_AUDIT_PARTITION_HOURS")),
    auditExportDir: get("SECRETS_AUDIT_EXPORT_DIR"),
    auditSinks: Object.freeze(auditSinks(get("SECRETS_AUDIT_SINKS"))),
    dbScopeChecks: flag("SECRETS_DB_SCOPE_CHECKS"),
    logLevel,
    logCalls,
    keyJobBatch: int("SECRETS_KEY_JOB_BATCH", 500, 1, 10_000),
    keyJobPauseMs: int("SECRETS_KEY_JOB_PAUSE_MS", 0, 0, 60_000),
    maxSecretsPerDeveloper: int("SECRETS_MAX_SECRETS_PER_DEVELOPER", 10_000, 1, 10_000_000),
    readRatePerSecond: int("SECRETS_READ_RATE", 10_000, 0, 10_000_000),
    writeRatePerSecond: int("SECRETS_WRITE_RATE", 1_000, 0, 10_000_000),
  });
}

const PKCS11_KEY_ID = /^[A-Za-z0-9_-]{1,64}$/;
const PKCS11_LABEL = /^[A-Za-z0-9._-]{1,64}$/;

/** SECRETS_PKCS11_*: all unset (no HSM), or a module, one token selector, one PIN source and the keys. */
function loadPkcs11Config(
  get: (name: string) => string | undefined,
  int: (name: string, fallback: number, min: number, max: number) => number,
): Pkcs11Config | undefined {
  const modulePath = get("SECRETS_PKCS11_MODULE");
  const keysText = get("SECRETS_PKCS11_KEYS");
  const tokenLabel = get("SECRETS_PKCS11_TOKEN_LABEL");
  const slotText = get("SECRETS_PKCS11_SLOT");
  const pinInline = get("SECRETS_PKCS11_PIN");
  const pinFile = get("SECRETS_PKCS11_PIN_FILE");
  if (!modulePath && !keysText) {
    if (tokenLabel || slotText || pinInline || pinFile) throw new ConfigError("SECRETS_PKCS11_* is set without SECRETS_PKCS11_MODULE and SECRETS_PKCS11_KEYS");
    return undefined;
  }
  if (!modulePath) throw new ConfigError("SECRETS_PKCS11_KEYS needs SECRETS_PKCS11_MODULE (the PKCS#11 module's path)");
  if (!keysText) throw new ConfigError("SECRETS_PKCS11_MODULE needs SECRETS_PKCS11_KEYS (id:label[,id:label...])");
  if ((tokenLabel === undefined) === (slotText === undefined)) throw new ConfigError("set exactly one of SECRETS_PKCS11_TOKEN_LABEL and SECRETS_PKCS11_SLOT");
  const slot = int("SECRETS_PKCS11_SLOT", 0, 0, 2 ** 32 - 1);
  if ((pinInline === undefined) === (pinFile === undefined)) throw new ConfigError("set exactly one of SECRETS_PKCS11_PIN and SECRETS_PKCS11_PIN_FILE");
  let pin = pinInline;
  if (pinFile) {
    try {
      pin = readFileSync(pinFile, "utf8").trim();
    } catch {
      throw new ConfigError("SECRETS_PKCS11_PIN_FILE cannot be read");
    }
    if (!pin) throw new ConfigError("SECRETS_PKCS11_PIN_FILE is empty");
  }
  const keys = new Map<string, string>();
  keysText
    .split(/[,\n]/)
    .map((entry) => entry.trim())
    .filter(Boolean)
    .forEach((entry, index) => {
      const [id, label, ...rest] = entry.split(":");
      if (id === undefined || label === undefined || rest.length > 0 || !PKCS11_KEY_ID.test(id) || !PKCS11_LABEL.test(label)) {
        throw new ConfigError(`SECRETS_PKCS11_KEYS entry ${index + 1} is not id:label (id [A-Za-z0-9_-], label [A-Za-z0-9._-], 1 to 64 each)`);
      }
      if (keys.has(id)) throw new ConfigError(`SECRETS_PKCS11_KEYS entry ${index + 1} repeats master key id "${id}"`);
      keys.set(id, label);
    });
  if (keys.size === 0) throw new ConfigError("SECRETS_PKCS11_KEYS names no master key");
  return Object.freeze({
    modulePath,
    token: tokenLabel !== undefined ? { label: tokenLabel } : { slot },
    tokenSource: tokenLabel !== undefined ? "SECRETS_PKCS11_TOKEN_LABEL" : "SECRETS_PKCS11_SLOT",
    pin: KeyBytes.from(Buffer.from(pin as string, "utf8")),
    pinSource: pinFile ? "SECRETS_PKCS11_PIN_FILE" : "SECRETS_PKCS11_PIN",
    keys,
    sessions: int("SECRETS_PKCS11_SESSIONS", 4, 1, 64),
  });
}

/** The host part of `host:port` / `[v6]:port`, or undefined if malformed. */
export function hostOf(address: string): string | undefined {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:\[\]]+)):(\d{1,5})$/.exec(address);
  if (!m) return undefined;
  const port = Number(m[3]);
  if (port > 65_535) return undefined;
  return m[1] ?? m[2];
}

export function isLoopback(host: string): boolean {
  if (host === "localhost") return true;
  if (isIP(host) === 4) return host.startsWith("127.");
  if (isIP(host) === 6) return host === "::1" || host === "0:0:0:0:0:0:0:1";
  return false;
}

/** SECRETS_LOG_CALLS: `all`, `errors` or `sample:N` (N from 2 to 1,000,000). */
export function parseCallLogPolicy(text: string): CallLogPolicy {
  if (text === "all" || text === "errors") return { kind: text };
  const m = /^sample:(\d{1,7})$/.exec(text);
  const every = m ? Number(m[1]) : NaN;
  if (!(every >= 2 && every <= 1_000_000)) throw new ConfigError("SECRETS_LOG_CALLS must be all, errors or sample:N (N from 2 to 1000000)");
  return { kind: "sample", every };
}

/** SECRETS_AUDIT_PARTITION_HOURS: whole hours that divide a day, so partitions stay aligned to UTC midnight. */
function auditPartitionHours(text: string | undefined): number {
  if (text === undefined) return 24;
  const n = Number(text);
  if (!AUDIT_PARTITION_HOURS.includes(n)) throw new ConfigError(`SECRETS_AUDIT_PARTITION_HOURS must be one of ${AUDIT_PARTITION_HOURS.join(", ")}`);
  return n;
}

/** SECRETS_AUDIT_SINKS, its errors as ConfigError. */
function auditSinks(text: string | undefined): SinkSpec[] {
  try {
    return parseSinkSpecs(text);
  } catch (e) {
    throw new ConfigError(e instanceof Error ? e.message : "SECRETS_AUDIT_SINKS is invalid");
  }
}
