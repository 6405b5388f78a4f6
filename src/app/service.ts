import { randomBytes } from "node:crypto";
import { accessSync, constants, statSync } from "node:fs";
import { hostname } from "node:os";
import type * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";

import { cachingVerifier } from "../auth/token-cache.js";
import { mintHs256Token } from "../auth/token-issuer.js";
import { createTokenVerifier, type VerificationKey } from "../auth/token-verifier.js";
import { createMemoryCache } from "../cache/memory-cache.js";
import { createRedisCache, type RedisTopology } from "../cache/redis-cache.js";
import { noCache, type SecretCache } from "../cache/secret-cache.js";
import { createDekCache } from "../keys/dek-cache.js";
import type { KeyBytes } from "../crypto/key-bytes.js";
import { auditObserver, cacheObserver, callObserver, createMetrics, watchObserver, type CacheObserver } from "../observability/metrics.js";
import { createDataKeys } from "../keys/data-keys.js";
import { createAuditLog } from "../audit/audit-log.js";
import { createAuditRetention } from "../audit/audit-retention.js";
import { openSinks } from "../audit/audit-sink.js";
import { lifecycleAuditEvent } from "../audit/audit-policy.js";
import { createAuditService } from "../audit/audit-service.js";
import { loadCacheEntryKey } from "../keys/cache-entry-key.js";
import { createKeyLifecycle } from "../keys/key-lifecycle.js";
import { MasterKeyMissing, checkMasterKeys } from "../keys/master-keys.js";
import { createLifecycleJobs, type LifecycleCounts } from "../secrets/lifecycle-jobs.js";
import { createWatchHub } from "../secrets/watch-hub.js";
import { createRateLimiter } from "../secrets/rate-limiter.js";
import { createSecretService } from "../secrets/secret-service.js";
import { startMetricsHttp } from "../observability/metrics-http.js";
import { serverCredentials } from "../server/tls.js";
import { startGrpcServer } from "../server/server.js";
import type { Db } from "../store/db.js";
import { DataDirInUse, openDatabase } from "../store/index.js";
import { schemaIsCurrent } from "../store/migrate.js";
import { ConfigError, type Config } from "./config.js";
import { createKeyProviders } from "./key-providers.js";
import { loadOrCreateDevSecrets } from "./dev-mode.js";
import { holdListenAddress, listenRefusal, type AddressHold } from "./listen-address.js";

/**
 * The composition root: the only place that wires the parts together, from a
 * `Config`. `startService` is what `main.ts` runs and what tests start in-process.
 */

/** A running service. */
export interface RunningService {
  readonly port: number;
  /** Set when SECRETS_METRICS_ADDR is: the port of /metrics, /healthz, /readyz. */
  readonly metricsPort: number | undefined;
  /** Set in dev mode: the developer token printed at start. */
  readonly devToken: string | undefined;
  /** Runs the lifecycle job now (expiry, due rotations, the bin's purge; its timer runs it too); returns its counts. */
  runLifecycleJobs(): Promise<LifecycleCounts>;
  /** Graceful stop in the order docs/configuration.md gives (Shutdown); resolves when everything is closed. */
  stop(): Promise<void>;
}

export interface StartOptions {
  log: Logger;
  /** A database opened (and migrated) by the caller, which keeps ownership of it. */
  db?: Db;
  /** Milliseconds in-flight calls get on shutdown before they are cut. */
  shutdownGraceMs?: number;
  /** The clock time-driven behaviour reads (the recovery bin, expiry, rotation schedules); tests move it instead of sleeping. */
  clock?: () => Date;
  /** "manual": the lifecycle job runs only through `runLifecycleJobs` (tests that drive it by hand); default "timer". */
  lifecycleJobs?: "timer" | "manual";
}

export async function startService(config: Config, options: StartOptions): Promise<RunningService> {
  // Before anything is created (data directory, keys, migrations): an address in use stops start-up here.
  const addressHold = await holdListenAddress(config.grpcAddr);
  try {
    return await wire(config, options, addressHold);
  } finally {
    await addressHold.release();
  }
}

/** Everything after the listen address is held; the hold is released just before grpc-js binds it. */
async function wire(config: Config, options: StartOptions, addressHold: AddressHold): Promise<RunningService> {
  const { log } = options;
  const clock = options.clock ?? (() => new Date());
  let masterKeys = config.masterKeys;
  let jwtKey: VerificationKey | undefined = config.jwtKey;
  if (config.mode === "dev") {
    const dev = loadOrCreateDevSecrets(config.dataDir);
    masterKeys ??= dev.masterKeys;
    jwtKey ??= { kind: "hmac", secret: dev.jwtSecret };
  }
  if (!jwtKey) throw new ConfigError("SECRETS_JWT_SECRET or SECRETS_JWT_PUBLIC_KEY is required");
  const keyProvider = await createKeyProviders(config, masterKeys, log);

  const ownsDb = options.db === undefined;
  const db =
    options.db ??
    (await openDatabase({ databaseUrl: config.databaseUrl, dataDir: config.dataDir, scopeChecks: config.dbScopeChecks }).catch((e: unknown) => {
      if (e instanceof DataDirInUse) throw new ConfigError(`${e.message}; stop that server or set SECRETS_DATA_DIR to another directory`);
      throw e;
    }));
  /** What to close, newest first, whether start-up finishes or fails half-way. */
  const closers: (() => Promise<void> | void)[] = [() => keyProvider.destroy()];
  if (ownsDb) closers.unshift(() => db.close());
  const closeAll = async () => {
    for (const close of closers) await close();
  };
  try {
    let activeKekId: string;
    try {
      activeKekId = await checkMasterKeys(db, keyProvider);
    } catch (e) {
      if (e instanceof MasterKeyMissing) throw new ConfigError(`${masterKeySources(config, masterKeys)} ${e.message}`);
      throw e;
    }

    const dekCache = createDekCache();
    const metrics = createMetrics({
      dekCacheSize: () => dekCache.size,
      poolStats: () => db.poolStats(),
      // These are created below; Prometheus scrapes only after start-up.
      auditQueueDepth: () => auditLog.queueDepth,
      auditSinks: () => auditSinks,
      keyJobsPending: () => keys.pendingJobs(),
      openWatches: () => watchHub.size,
      keyProviderUp: async () => (await keyProvider.health()).ok,
    });
    const dataKeys = createDataKeys({ db, keyProvider, cache: dekCache });
    const cache = await createCache(config, db, log, cacheObserver(metrics), () => loadCacheEntryKey(dataKeys));
    closers.unshift(() => cache.close());
    const replicaId = `${hostname()}-${process.pid}-${randomBytes(3).toString("hex")}`;
    const keys = createKeyLifecycle({
      db,
      keyProvider,
      dataKeys,
      cache,
      replicaId,
      initialActiveKekId: activeKekId,
      batchSize: config.keyJobBatch,
      pauseMs: config.keyJobPauseMs,
      onError: (what, e) => log.warn({ err: e }, `${what} failed; will retry`),
      onEvent: (what, fields) => log.info(fields, what),
    });
    await keys.start();
    closers.unshift(() => keys.stop());
    const auditMetrics = auditObserver(metrics);
    const auditSinks = openSinks(config.auditSinks);
    // Closed after the audit log's last write (closers run newest first).
    closers.unshift(async () => {
      for (const sink of auditSinks) await sink.close();
    });
    const auditLog = createAuditLog({
      db,
      sinks: auditSinks,
      partitionHours: config.auditPartitionHours,
      writerId: `${replicaId}:${Date.now()}`,
      onError: (e, pending) => {
        auditMetrics.writeFailed();
        log.error({ err: e, pending }, "audit events could not be written; retrying (calls slow down rather than lose them)");
      },
    });
    // Flushed after the server has drained (closers run newest first); bounded, so a
    // database that stays down cannot hold the process forever: what is lost is logged.
    closers.unshift(async () => {
      const timeout = new Promise<"timeout">((r) => setTimeout(() => r("timeout"), 10_000).unref());
      if ((await Promise.race([auditLog.close(), timeout])) === "timeout") {
        log.error({ lost: auditLog.queueDepth }, "audit events not written before shutdown");
      }
    });
    // Makes the audit partitions ahead and drops those past the retention (one replica a run).
    if (config.auditExportDir !== undefined) checkExportDir(config.auditExportDir);
    const auditRetention = createAuditRetention({
      db,
      retentionDays: config.auditRetentionDays,
      partitionHours: config.auditPartitionHours,
      exportDir: config.auditExportDir,
      onError: (e) => {
        auditMetrics.retentionFailed();
        log.warn({ err: e }, "audit partition job failed; will retry");
      },
      onRun: (run) => {
        auditMetrics.retentionRan(run);
        if (run.dropped.length > 0) log.info({ dropped: run.dropped }, "audit partitions past the retention dropped");
        if (run.exportFailed !== undefined) {
          log.error({ err: run.exportFailed.error, partition: run.exportFailed.partition }, "audit partition not exported, so not dropped; will retry");
        }
      },
    });
    auditRetention.start();
    closers.unshift(() => auditRetention.stop());
    const lifecycle = createLifecycleJobs({
      db,
      cache,
      now: clock,
      recoveryWindowDays: config.recoveryWindowDays,
      changeRetentionMs: config.watchRetentionHours * 3_600_000,
      batchSize: 500,
      intervalMs: 60_000,
      events: {
        expired: (row) => auditLog.record(lifecycleAuditEvent("expired", row, replicaId, clock())),
        rotationDue: (row) => auditLog.record(lifecycleAuditEvent("rotationDue", row, replicaId, clock())),
        purged: (row) => auditLog.record(lifecycleAuditEvent("purged", row, replicaId, clock())),
      },
      onError: (what, e) => log.warn({ err: e }, `${what} failed; will retry`),
    });
    if (options.lifecycleJobs !== "manual") lifecycle.start();
    // Stopped before the audit log closes (closers run newest first): every change it made is recorded.
    closers.unshift(() => lifecycle.stop());
    const watchHub = createWatchHub({
      db,
      maxPerDeveloper: config.watchMaxPerDeveloper,
      maxPerReplica: config.watchMaxPerReplica,
      progressIntervalMs: config.watchProgressSeconds * 1000,
    });
    await watchHub.start();
    closers.unshift(() => watchHub.close());
    const secrets = createSecretService({
      db,
      dataKeys,
      cache,
      maxVersions: config.maxVersions,
      recoveryWindowDays: config.recoveryWindowDays,
      now: clock,
      scheduled: (at) => lifecycle.wake(at),
      watchHub,
      onWatchEventsSent: watchObserver(metrics),
      limits: {
        maxSecrets: config.maxSecretsPerDeveloper,
        reads: createRateLimiter({ ratePerSecond: config.readRatePerSecond, kind: "read" }),
        writes: createRateLimiter({ ratePerSecond: config.writeRatePerSecond, kind: "write" }),
      },
    });
    const verifier = cachingVerifier(
      createTokenVerifier({
        key: jwtKey,
        audience: config.jwtAudience,
        issuer: config.jwtIssuer,
        maxTtlSeconds: config.jwtMaxTtlSeconds,
      }),
    );
    await addressHold.release();
    const server = await startGrpcServer(config.grpcAddr, {
      secrets,
      keys,
      auditService: createAuditService({ db }),
      auditLog,
      auditStrict: config.auditStrict,
      verifier,
      log,
      onCallEnd: callObserver(metrics),
      logCalls: config.logCalls,
      credentials: tlsCredentials(config),
      ...(config.tls?.clientCaFile ? { operatorIdentities: new Set(config.operatorIdentities) } : {}),
    }).catch(async (e: unknown) => {
      // Taken by another process since it was released: the same one line as at the start.
      throw (await listenRefusal(config.grpcAddr)) ?? e;
    });
    let metricsPort: number | undefined;
    if (config.metricsAddr) {
      const http = await startMetricsHttp(config.metricsAddr, { registry: metrics.registry, ready: () => schemaIsCurrent(db) });
      closers.unshift(() => http.close());
      metricsPort = http.port;
    }
    closers.unshift(async () => {
      // Watches never finish by themselves: they end first, UNAVAILABLE, so their
      // clients resume on another replica while the unary calls drain.
      await watchHub.close();
      await server.shutdown(options.shutdownGraceMs ?? 10_000);
    });

    let devToken: string | undefined;
    if (config.mode === "dev" && jwtKey.kind === "hmac") {
      devToken = await mintHs256Token(jwtKey.secret, {
        subject: "dev",
        scopes: ["secrets:read", "secrets:access", "secrets:write", "secrets:keys"],
        ttlSeconds: Math.min(86_400, config.jwtMaxTtlSeconds),
        ...(config.jwtAudience ? { audience: config.jwtAudience } : {}),
        ...(config.jwtIssuer ? { issuer: config.jwtIssuer } : {}),
      });
    }
    log.info({ port: server.port, metricsPort, mode: config.mode, cache: cache.kind, activeMasterKey: keys.activeKekId(), replicaId }, "serving");

    let stopping: Promise<void> | undefined;
    return {
      port: server.port,
      metricsPort,
      devToken,
      runLifecycleJobs: () => lifecycle.runDue(),
      stop() {
        // Server first (health NOT_SERVING, drain in-flight calls), then metrics, cache, database, keys.
        stopping ??= closeAll().then(() => log.info("stopped"));
        return stopping;
      },
    };
  } catch (e) {
    await closeAll();
    throw e;
  }
}

/** The variables the master keys came from, for the start-up refusal that names a missing key. */
function masterKeySources(config: Config, keyringText: string | undefined): string {
  const sources = [keyringText ? config.masterKeysSource : undefined, config.pkcs11 ? "SECRETS_PKCS11_KEYS" : undefined];
  return sources.filter(Boolean).join(" + ");
}

/** Server credentials from the TLS files; a file that cannot be read stops start-up naming its variable. */
function tlsCredentials(config: Config): grpc.ServerCredentials {
  try {
    return serverCredentials(config.tls);
  } catch (e) {
    throw new ConfigError(`SECRETS_TLS_CERT, SECRETS_TLS_KEY or SECRETS_TLS_CLIENT_CA cannot be read or parsed (${(e as NodeJS.ErrnoException).code ?? "invalid"})`);
  }
}

/**
 * The value cache docs/design.md describes: Redis when REDIS_URL is set; the in-process one
 * only with the embedded database (one process); none with Postgres and no Redis,
 * because several replicas could not keep an in-process cache coherent. Entries are
 * authenticated under the entry key, loaded only when there is a cache; the cache
 * derives its own key from it, and it is zeroized here once the cache exists.
 */
async function createCache(
  config: Config,
  db: Db,
  log: Logger,
  observe: CacheObserver,
  loadEntryKey: () => Promise<KeyBytes>,
): Promise<SecretCache> {
  const ttlMs = config.cacheTtlSeconds * 1000;
  // Refused entries are counted in the metrics, and logged at most once a minute.
  const rejectedLogIntervalMs = 60_000;
  let rejectedSinceLog = 0;
  let loggedAt = -Infinity;
  const onLookup: CacheObserver = (result, count) => {
    observe(result, count);
    if (result !== "rejected") return;
    // Names, keys and values stay out of the line: only how many, since the last one.
    rejectedSinceLog += count;
    const at = Date.now();
    if (at - loggedAt < rejectedLogIntervalMs) return;
    log.warn(
      { rejectedEntries: rejectedSinceLog },
      "cache entries failed authentication and were treated as misses (altered or forged in Redis, or sealed under another cache entry key)",
    );
    rejectedSinceLog = 0;
    loggedAt = at;
  };
  const topology: RedisTopology | undefined =
    config.redisSentinels.length > 0
      ? { kind: "sentinel", sentinels: config.redisSentinels, name: config.redisSentinelName as string, url: config.redisUrl }
      : config.redisClusterNodes.length > 0
        ? { kind: "cluster", nodes: config.redisClusterNodes, url: config.redisUrl }
        : config.redisUrl
          ? { kind: "single", url: config.redisUrl }
          : undefined;
  if (!topology && db.kind !== "pglite") return noCache();
  const entryKey = await loadEntryKey();
  try {
    if (!topology) return createMemoryCache({ ttlMs, entryKey, onLookup });
    return await createRedisCache({
      topology,
      ttlMs,
      entryKey,
      onLookup,
      onOutage: (event, error) =>
        event === "down"
          ? log.warn({ err: error }, "redis unreachable: reads go to the database, writes fail until it is back")
          : log.info("redis reachable again"),
    });
  } finally {
    entryKey.zeroize();
  }
}

/** SECRETS_AUDIT_EXPORT_DIR must be a directory the service can write: found at start-up, not at the first drop. */
function checkExportDir(dir: string): void {
  try {
    if (!statSync(dir).isDirectory()) throw new Error("not a directory");
    accessSync(dir, constants.W_OK);
  } catch {
    throw new ConfigError("SECRETS_AUDIT_EXPORT_DIR must be a directory the service can write");
  }
}
