import { collectDefaultMetrics, Counter, Gauge, Histogram, Registry } from "prom-client";

/**
 * The service's Prometheus metrics, in one registry. Parts of the service get only
 * the narrow hooks they need (see `callObserver`, `cacheObserver`), so no domain
 * folder depends on prom-client. Default process metrics (CPU seconds from
 * process.cpuUsage, resident memory) are included; the benchmark reads them.
 */
export interface Metrics {
  readonly registry: Registry;
  readonly calls: Counter<"method" | "code">;
  readonly callSeconds: Histogram<"method">;
  readonly cacheLookups: Counter<"result">;
  readonly dekCacheSize: Gauge;
  readonly watchEvents: Counter;
  readonly watchLagSeconds: Histogram;
  readonly auditWriteFailures: Counter;
  readonly auditRetentionRuns: Counter<"result">;
  readonly auditPartitionsDropped: Counter;
  readonly auditEventsDropped: Counter;
}

/** Readings taken when Prometheus scrapes. */
export interface MetricsSources {
  dekCacheSize?: () => number;
  poolStats?: () => { total: number; idle: number; waiting: number };
  auditQueueDepth?: () => number;
  /** The JSON-lines audit sinks (SECRETS_AUDIT_SINKS), each by name, and whether it is up now. */
  auditSinks?: () => readonly { readonly name: string; readonly up: boolean }[];
  /** Data keys awaiting rewrap under the active master key, and values awaiting re-encryption. */
  keyJobsPending?: () => Promise<{ rewrap: number; reencrypt: number }>;
  /** WatchSecrets streams open on this replica. */
  openWatches?: () => number;
  /** Whether every master-key provider can wrap and unwrap now (an HSM: a logged-in session answers). */
  keyProviderUp?: () => Promise<boolean>;
}

/** The results a run of the audit partition job is counted under (secrets_audit_retention_runs_total). */
const RETENTION_RESULTS = ["ok", "failed", "export_failed", "skipped"] as const;

export function createMetrics(sources: MetricsSources = {}): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const dekSize = sources.dekCacheSize;
  const { poolStats, auditQueueDepth, auditSinks, keyJobsPending, keyProviderUp, openWatches } = sources;
  new Gauge({
    name: "secrets_watches_open",
    help: "WatchSecrets streams open on this replica",
    registers: [registry],
    collect() {
      if (openWatches) this.set(openWatches());
    },
  });
  new Gauge({
    name: "secrets_db_pool_connections",
    help: "Postgres pool connections by state (total, idle, waiting requests)",
    labelNames: ["state"],
    registers: [registry],
    collect() {
      if (!poolStats) return;
      const s = poolStats();
      this.set({ state: "total" }, s.total);
      this.set({ state: "idle" }, s.idle);
      this.set({ state: "waiting" }, s.waiting);
    },
  });
  new Gauge({
    name: "secrets_audit_queue_depth",
    help: "Audit events recorded and not yet committed",
    registers: [registry],
    collect() {
      if (auditQueueDepth) this.set(auditQueueDepth());
    },
  });
  new Gauge({
    name: "secrets_audit_sink_up",
    help: "1 while a JSON-lines audit sink takes lines, 0 while it is down (its last write or connection failed): events wait for it, strict value reads are refused",
    labelNames: ["sink"],
    registers: [registry],
    collect() {
      if (!auditSinks) return;
      for (const sink of auditSinks()) this.set({ sink: sink.name }, sink.up ? 1 : 0);
    },
  });
  new Gauge({
    name: "secrets_key_jobs_pending",
    help: "Key rotation progress: data keys to rewrap (job=rewrap), secret versions to re-encrypt (job=reencrypt)",
    labelNames: ["job"],
    registers: [registry],
    async collect() {
      if (!keyJobsPending) return;
      const p = await keyJobsPending();
      this.set({ job: "rewrap" }, p.rewrap);
      this.set({ job: "reencrypt" }, p.reencrypt);
    },
  });
  new Gauge({
    name: "secrets_key_provider_up",
    help: "1 when every master-key provider can wrap and unwrap (for an HSM: a logged-in session answers), else 0; a scrape also lets an HSM reconnect",
    registers: [registry],
    async collect() {
      if (keyProviderUp) this.set((await keyProviderUp()) ? 1 : 0);
    },
  });
  const retentionRuns = new Counter({
    name: "secrets_audit_retention_runs_total",
    help: "Runs of the audit partition job: ok, failed (an error; nothing dropped), export_failed (a partition not exported, so it and newer ones kept), skipped (another replica held the lock)",
    labelNames: ["result"],
    registers: [registry],
  });
  // Every result from the start at 0, so that increase() sees the first failure.
  for (const result of RETENTION_RESULTS) retentionRuns.inc({ result }, 0);
  return {
    registry,
    calls: new Counter({ name: "secrets_grpc_calls_total", help: "gRPC calls by method and status code", labelNames: ["method", "code"], registers: [registry] }),
    callSeconds: new Histogram({
      name: "secrets_grpc_call_duration_seconds",
      help: "gRPC call latency, from the interceptor's start to the status",
      labelNames: ["method"],
      buckets: [0.0002, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5],
      registers: [registry],
    }),
    cacheLookups: new Counter({
      name: "secrets_cache_lookups_total",
      help: "Value cache lookups per name: hit, miss, rejected (entry malformed or failing its MAC), expired (entry past its expiry), or error (Redis unreachable)",
      labelNames: ["result"],
      registers: [registry],
    }),
    watchEvents: new Counter({ name: "secrets_watch_events_sent_total", help: "Events WatchSecrets streams sent", registers: [registry] }),
    watchLagSeconds: new Histogram({
      name: "secrets_watch_delivery_lag_seconds",
      help: "From a change's commit to its event leaving on a watch",
      buckets: [0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 1, 5, 30],
      registers: [registry],
    }),
    auditWriteFailures: new Counter({
      name: "secrets_audit_write_failures_total",
      help: "Audit batch writes that failed (Postgres or a sink) and will be retried; their events wait in the queue",
      registers: [registry],
    }),
    auditRetentionRuns: retentionRuns,
    auditPartitionsDropped: new Counter({
      name: "secrets_audit_partitions_dropped_total",
      help: "Audit partitions the retention job dropped (each exported first when SECRETS_AUDIT_EXPORT_DIR is set)",
      registers: [registry],
    }),
    auditEventsDropped: new Counter({
      name: "secrets_audit_events_dropped_total",
      help: "Audit events in the partitions the retention job dropped",
      registers: [registry],
    }),
    dekCacheSize: new Gauge({
      name: "secrets_dek_cache_entries",
      help: "Unwrapped data keys held in memory",
      registers: [registry],
      collect() {
        if (dekSize) this.set(dekSize());
      },
    }),
  };
}

/** The interceptor's hook: one call ended. */
export type CallObserver = (method: string, code: string, seconds: number) => void;

export function callObserver(m: Metrics): CallObserver {
  // prom-client hashes the label values on every inc/observe; the label-bound
  // children are kept instead (per call, that hashing showed in profiles). Bounded,
  // since a client can name any method path.
  const children = new Map<string, { calls: { inc(): void }; seconds: { observe(v: number): void } }>();
  return (method, code, seconds) => {
    const key = `${method} ${code}`;
    let c = children.get(key);
    if (c === undefined) {
      if (children.size >= 1_000) children.clear();
      c = { calls: m.calls.labels(method, code), seconds: m.callSeconds.labels(method) };
      children.set(key, c);
    }
    c.calls.inc();
    c.seconds.observe(seconds);
  };
}

/** The cache's hook: lookups by result. */
export type CacheObserver = (result: "hit" | "miss" | "rejected" | "expired" | "error", count: number) => void;

export function cacheObserver(m: Metrics): CacheObserver {
  return (result, count) => {
    if (count > 0) m.cacheLookups.inc({ result }, count);
  };
}

/** The watches' hook: the events one response sent, and each one's delivery lag. */
export type WatchObserver = (events: number, lagSeconds: readonly number[]) => void;

export function watchObserver(m: Metrics): WatchObserver {
  return (events, lagSeconds) => {
    m.watchEvents.inc(events);
    for (const lag of lagSeconds) m.watchLagSeconds.observe(lag);
  };
}

/** What the metrics read of one run of the audit partition job (audit-retention.ts's AuditRetentionRun). */
export interface RetentionRunReading {
  /** False when another replica held the lock and this one skipped the run. */
  readonly ran: boolean;
  readonly dropped: readonly { readonly events: number }[];
  /** Set when a partition could not be exported (it and newer ones were kept). */
  readonly exportFailed?: unknown;
}

/** The audit trail's hooks: a batch write that failed, and the partition job's runs. */
export interface AuditObserver {
  writeFailed(): void;
  retentionRan(run: RetentionRunReading): void;
  /** A run that threw (the job retries at its next run). */
  retentionFailed(): void;
}

export function auditObserver(m: Metrics): AuditObserver {
  return {
    writeFailed: () => m.auditWriteFailures.inc(),
    retentionRan(run) {
      const result = !run.ran ? "skipped" : run.exportFailed !== undefined ? "export_failed" : "ok";
      m.auditRetentionRuns.inc({ result });
      // A run whose export failed may have dropped older partitions before it stopped.
      if (run.dropped.length === 0) return;
      m.auditPartitionsDropped.inc(run.dropped.length);
      m.auditEventsDropped.inc(run.dropped.reduce((sum, d) => sum + d.events, 0));
    },
    retentionFailed: () => m.auditRetentionRuns.inc({ result: "failed" }),
  };
}
