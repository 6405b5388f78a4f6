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
}

/** Readings taken when Prometheus scrapes. */
export interface MetricsSources {
  dekCacheSize?: () => number;
  poolStats?: () => { total: number; idle: number; waiting: number };
  auditQueueDepth?: () => number;
  /** Data keys awaiting rewrap under the active master key, and values awaiting re-encryption. */
  keyJobsPending?: () => Promise<{ rewrap: number; reencrypt: number }>;
  /** WatchSecrets streams open on this replica. */
  openWatches?: () => number;
  /** Whether every master-key provider can wrap and unwrap now (an HSM: a logged-in session answers). */
  keyProviderUp?: () => Promise<boolean>;
}

export function createMetrics(sources: MetricsSources = {}): Metrics {
  const registry = new Registry();
  collectDefaultMetrics({ register: registry });
  const dekSize = sources.dekCacheSize;
  const { poolStats, auditQueueDepth, keyJobsPending, keyProviderUp, openWatches } = sources;
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
