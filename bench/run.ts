import { fork, spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, mkdirSync, openSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import { Redis } from "ioredis";
import pg from "pg";
import { mintHs256Token } from "../src/auth/token-issuer.js";
import type { Scope } from "../src/auth/principal.js";
import { developerPrefix, nameKeys } from "../src/cache/secret-cache.js";
import { loadConfig } from "../src/app/config.js";
import { openPostgres } from "../src/store/pg-db.js";
import { migrate } from "../src/store/migrate.js";
import { sampleAuditGrowth } from "./audit-growth.js";
import { machineDelta, sampleMachine, type MachineDelta } from "./machine.js";
import { activateHsmKey, createBenchToken, describeHsmUnwraps, HSM_PHASE, measureHsmUnwraps, type BenchToken, type HsmUnwrapReport } from "./hsm-unwraps.js";
import { describeRewrap, measureRewrap, REWRAP_PHASE, REWRAP_TARGET, rewrapFailed, type RewrapRead, type RewrapReport } from "./rewrap.js";
import { seedDevelopers, seedSecrets } from "./seed.js";
import { describeWatch, measureWatch, WATCH_PHASE, WATCH_TARGETS, type WatchReport } from "./watch.js";
import { percentile, ratioInterval, type Interval } from "./stats.js";
import type { WorkerResult, WorkerStop, WorkerTask } from "./worker.js";

/**
 * `npm run bench [-- --quick] [-- --profile]`: the service's speed, measured as a
 * user would meet it. Starts three server processes from the build (Redis cache;
 * no value cache; Redis cache with strict audit) on a fresh Postgres database,
 * drives them from two client processes over loopback, and reports, per phase and
 * at 1 and 64 calls in flight: calls/s, p50, p99, each as a ratio to the ceiling
 * (an empty Health/Check on the same server), and the server's own CPU per call
 * (process.cpuUsage, read from its /metrics) as a ratio to the ceiling's, and
 * the client processes' CPU per call (which, with Postgres and Redis, shares the
 * machine's two cores with the server, and so weighs in its calls/s); a second
 * table adds Redis's CPU (its INFO), every postgres process's (/proc) and the
 * machine's idle time, all per call (bench/machine.ts). A server's phases and its ceiling are measured in interleaved rounds (see
 * measureGroup), since ratios, not absolute figures, are what compare on a shared
 * machine. Last, the "master-key rewrap" phase (bench/rewrap.ts): with 100,000 data
 * keys (5,000 with --quick) seeded in Postgres, reads on two servers before and
 * while RotateMasterKey's rewrap runs on every server; the rewrap's data keys/s and
 * the reads' p50 and p99 during it against just before it. The "many developers"
 * phases read from 10,000 developers with 10 secrets each (500 with --quick), seeded
 * through the store, each call a developer and a secret drawn uniformly at random
 * with that developer's own token: data keys, tokens and cache entries cold and warm.
 * The key job runs with the servers' defaults unless SECRETS_KEY_JOB_BATCH /
 * SECRETS_KEY_JOB_PAUSE_MS are set in the bench's environment, which passes them on,
 * as it does SECRETS_LOG_CALLS.
 * Then the PKCS#11 provider's data-key unwraps per second through a SoftHSM2 token, in-process
 * (bench/hsm-unwraps.ts; skipped where SoftHSM2 is not installed). `--hsm` runs every server phase
 * with a SoftHSM2 master key active (see HSM below).
 * Ends by scanning Redis for any seeded value in the clear.
 * `--profile [nocache|strict]` runs the cache (or the named) server under `node --cpu-prof` (profiles in
 * bench/results/profiles/; summarize one phase with
 * `node .bench-build/bench/profile-summary.js FILE --results RESULTS.json --phase TEXT`).
 */

const here = dirname(fileURLToPath(import.meta.url));
const ROOT = join(here, "..", "..");
const MAIN = join(ROOT, "dist", "main.js");

const argv = process.argv.slice(2);
const args = new Set(argv);
const QUICK = args.has("--quick");
const PROFILE = args.has("--profile");
/** `--profile [SERVER]`: which server runs under the profiler (cache, nocache or strict; default cache). */
const PROFILED = PROFILE && argv[argv.indexOf("--profile") + 1]?.match(/^(cache|nocache|strict|watch-b)$/) ? (argv[argv.indexOf("--profile") + 1] as string) : "cache";
/** `--only TEXT`: run only the phases whose name contains TEXT (and the ceilings), e.g. to profile one path. */
const ONLY = argv.includes("--only") ? argv[argv.indexOf("--only") + 1] : undefined;
/**
 * `--baseline DIR`: also start a cache and a no-cache server from DIR/dist/main.js
 * (another build, e.g. a worktree of the previous commit) and measure their phases
 * interleaved with this build's, for a before/after comparison within one run.
 */
const BASELINE = argv.includes("--baseline") ? argv[argv.indexOf("--baseline") + 1] : undefined;
/**
 * `--hsm`: the servers also hold a master key in a SoftHSM2 token (bench/hsm-unwraps.ts), made active
 * before the phases, so data keys are wrapped in the HSM: what the cache-hit targets are worth with
 * the HSM provider configured. The rewrap phase (which seeds with the keyring) is skipped.
 */
const HSM = args.has("--hsm");
if (HSM && BASELINE) throw new Error("--hsm and --baseline do not go together: a baseline build's servers lack the HSM key, so it cannot be activated");
/**
 * `--server-node-args "ARGS"`: extra node options for the cache server of this build
 * (space-separated), e.g. `--perf-prof` so that `perf record -k mono -p PID` and
 * `perf inject --jit` can name the JIT's code (V8's own profiler samples wall time;
 * perf samples CPU, kernel included).
 */
const SERVER_NODE_ARGS = argv.includes("--server-node-args") ? (argv[argv.indexOf("--server-node-args") + 1] ?? "").split(" ").filter(Boolean) : [];
/** Each phase is measured in ROUNDS segments (`--rounds N` to change) of SEGMENT_MS (after SEGMENT_WARMUP_MS unmeasured), interleaved. */
const ROUNDS = argv.includes("--rounds") ? Number(argv[argv.indexOf("--rounds") + 1]) : QUICK ? 3 : 8;
/**
 * Reads at 64 in flight, where the ratio targets are read, get twice the rounds in a
 * full run: a round's ratio to the ceiling varies by ~0.1 on this machine, so eight
 * rounds left the hit's ratio uncertain by ±0.06 (95 %) or more, as wide as its margin.
 */
const READ_ROUNDS_AT_64 = QUICK || argv.includes("--rounds") ? ROUNDS : 2 * ROUNDS;
const SEGMENT_MS = QUICK ? 500 : 1_000;
const SEGMENT_WARMUP_MS = 100;
/** Once per phase and number in flight, before its rounds. */
const WARMUP_MS = QUICK ? 300 : 1_000;
const MAX_CALLS = 2_000_000;
const ADMIN_URL = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL = process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379";
const LARGE_SEED = QUICK ? 0 : 100_000;
/**
 * The many-developers phases: this many developers with MANY_SECRETS secrets each,
 * one token each. The server's token cache and in-memory data-key cache hold 10,000
 * entries by default, so a full run's callers fill them (the bench's other tokens and
 * the service's own key come on top) and their churn is part of what is measured.
 */
const MANY_DEVELOPERS = QUICK ? 500 : 10_000;
const MANY_SECRETS = 10;
/** Developers seeded per transaction, and transactions at once (each holds one of the seeding pool's connections). */
const MANY_SEED = { batch: 500, concurrency: 4 };
const MANY_PHASE = `AccessSecret, many developers (${MANY_DEVELOPERS.toLocaleString("en")} × ${MANY_SECRETS} secrets)`;
/**
 * The same reads, warm: before each of its segments every one of its developers
 * (another MANY_DEVELOPERS of them) resolves all its secrets once, outside the
 * measured window, so that the segment's reads find their token, data key and
 * cache entry in place. The phase above keeps them cold: at its rate a secret is
 * read less often than an entry lives, so its reads are value-cache misses.
 */
const MANY_WARM_PHASE = `${MANY_PHASE}, warm`;
/** The rewrap phase's data keys, and its bounds: a rewrap that has not finished by the deadline is reported as such. */
const REWRAP_DATA_KEYS = QUICK ? 5_000 : 100_000;
const REWRAP_DEADLINE_MS = QUICK ? 60_000 : 600_000;
/** Reads measured just before the rewrap, for the ratio; about as long as a rewrap at the target rate. */
const REWRAP_BEFORE_MS = QUICK ? 2_000 : 10_000;
const REWRAP_POLL_MS = QUICK ? 100 : 250;
const REWRAP_SETTLE_MS = QUICK ? 2_000 : 5_000;
/**
 * Settings passed on to the servers when set here (the key job's pace, which calls get a
 * log line); otherwise the servers' defaults apply.
 */
const PASSED_ENV = Object.fromEntries(
  ["SECRETS_KEY_JOB_BATCH", "SECRETS_KEY_JOB_PAUSE_MS", "SECRETS_LOG_CALLS"].flatMap((k) => (process.env[k] ? [[k, process.env[k] as string]] : [])),
);

interface Server {
  name: string;
  child: ChildProcess;
  address: string;
  metrics: string;
  logFile: string;
}

interface PhaseResult {
  phase: string;
  server: string;
  inFlight: number;
  calls: number;
  errors: number;
  callsPerSecond: number;
  p50Us: number;
  p99Us: number;
  cpuUsPerCall: number;
  /** The client processes' own CPU per call: the rest of what the machine spends on a call, beside Redis and Postgres. */
  clientCpuUsPerCall: number;
  /** Redis's CPU per call (its INFO cpu). */
  redisCpuUsPerCall: number;
  /** Redis commands per call (its INFO commandstats): how many calls share a round trip (a coalesced MGET serves many). */
  redisCommandsPerCall: number;
  /** Every postgres process's CPU per call on this machine (undefined where /proc cannot be read). */
  postgresCpuUsPerCall: number | undefined;
  /** Growth of audit_log (table and indexes) per call: every call writes one audit event. */
  auditBytesPerCall: number;
  /** The fraction of the machine's CPU time left idle while the phase ran. */
  machineIdle: number | undefined;
  /** The server's GC pauses per call, µs: scavenges, and the rest (mark-compact, incremental marking, weak callbacks). */
  gcUsPerCall: { minor: number; other: number };
  rssMb: number;
  /** Secrets delivered per call (ResolveSecrets: 10). */
  secretsPerCall: number;
  /** The share of the server's value-cache lookups that hit (its secrets_cache_lookups_total); undefined with no cache. */
  cacheHitShare: number | undefined;
  ratio?: { throughput: number; p50: number; p99: number; cpu: number };
  /** Each round's segment, for the spread between rounds. */
  rounds: { callsPerSecond: number; cpuUsPerCall: number }[];
  /** Per round, this phase against the ceiling's segment of the same round. */
  roundRatios?: { throughput: number; cpu: number }[];
}

type Round = PhaseResult["rounds"][number];

function startServer(name: string, env: Record<string, string>, main = MAIN): Promise<Server> {
  const logFile = join(tmpdir(), `secrets-bench-${name}-${process.pid}.log`);
  const fd = openSync(logFile, "w");
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("SECRETS_") && k !== "DATABASE_URL" && k !== "REDIS_URL"),
  );
  const nodeArgs = [
    ...(PROFILE && name === PROFILED ? ["--cpu-prof", `--cpu-prof-dir=${join(ROOT, "bench", "results", "profiles")}`] : []),
    ...(name === "cache" ? SERVER_NODE_ARGS : []),
  ];
  const child = spawn(process.execPath, [...nodeArgs, main], {
    cwd: ROOT,
    env: { ...clean, ...env, SECRETS_GRPC_ADDR: "127.0.0.1:0", SECRETS_METRICS_ADDR: "127.0.0.1:0" },
    stdio: ["ignore", fd, fd],
  });
  closeSync(fd);
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 60_000;
    const poll = () => {
      const text = readFileSync(logFile, "utf8");
      const m = text.match(/"port":(\d+),"metricsPort":(\d+)[^\n]*"msg":"serving"/);
      if (m) {
        if (nodeArgs.length > 0) console.log(`server ${name}: pid ${child.pid}, node ${nodeArgs.join(" ")}`);
        return resolve({ name, child, address: `127.0.0.1:${m[1]}`, metrics: `http://127.0.0.1:${m[2]}/metrics`, logFile });
      }
      if (child.exitCode !== null || Date.now() > deadline) return reject(new Error(`server ${name} did not start:\n${text.slice(-2000)}`));
      setTimeout(poll, 50);
    };
    poll();
  });
}

/** The server's value-cache lookups so far: all of them, and those that hit. */
interface Lookups {
  all: number;
  hits: number;
}

/** The server's GC pauses so far, in seconds (prom-client's nodejs_gc_duration_seconds, main thread). */
interface GcSeconds {
  /** Scavenges (young generation). */
  minor: number;
  /** Mark-compact, incremental marking steps and weak callbacks. */
  other: number;
}

async function serverStats(server: Server): Promise<{ cpuSeconds: number; rssBytes: number; gc: GcSeconds; lookups: Lookups }> {
  const text = await (await fetch(server.metrics)).text();
  const read = (metric: string) => Number(text.match(new RegExp(`^${metric} ([0-9.e+-]+)`, "m"))?.[1] ?? NaN);
  let minor = 0;
  let other = 0;
  for (const m of text.matchAll(/^nodejs_gc_duration_seconds_sum\{kind="(\w+)"\} ([0-9.e+-]+)/gm)) {
    if (m[1] === "minor") minor += Number(m[2]);
    else other += Number(m[2]);
  }
  const lookups = { all: 0, hits: 0 };
  for (const m of text.matchAll(/^secrets_cache_lookups_total\{result="(\w+)"\} ([0-9.e+-]+)/gm)) {
    lookups.all += Number(m[2]);
    if (m[1] === "hit") lookups.hits += Number(m[2]);
  }
  return { cpuSeconds: read("process_cpu_seconds_total"), rssBytes: read("process_resident_memory_bytes"), gc: { minor, other }, lookups };
}

/**
 * The client processes, started once and kept for the whole run (each keeps its
 * connections), so that a measurement can be cut into short segments.
 */
class Workers {
  private constructor(private readonly children: ChildProcess[]) {}

  static start(n: number): Workers {
    return new Workers(Array.from({ length: n }, () => fork(join(here, "worker.js"), [], { stdio: ["ignore", "inherit", "inherit", "ipc"] })));
  }

  /** Runs `task` on worker `i` and resolves with its result. */
  run(i: number, task: WorkerTask): Promise<WorkerResult> {
    const child = this.children[i];
    if (!child) throw new Error(`no worker ${i}`);
    return new Promise((resolve, reject) => {
      const onExit = (code: number | null) => reject(new Error(`worker exited ${code}`));
      child.once("exit", onExit);
      child.once("message", (m) => {
        child.off("exit", onExit);
        resolve(m as WorkerResult);
      });
      child.send(task);
    });
  }

  /** Ends worker `i`'s running task early; its result still arrives through `run`. */
  stop(i: number): void {
    const child = this.children[i];
    if (child?.connected) child.send({ stop: true } satisfies WorkerStop);
  }

  close(): void {
    for (const c of this.children) if (c.connected) c.disconnect();
  }
}

interface PhaseSpec {
  phase: string;
  server: Server;
  service: WorkerTask["service"];
  method: string;
  requests: unknown[];
  token?: string;
  /** One token per developer: each call picks a developer and a request at random (WorkerTask.tokens). */
  tokens?: string[];
  secretsPerCall?: number;
  /** The phase a target compares this one with: measured with it when --only selects this one. */
  reference?: string;
  /** Runs before each of the phase's segments, warm-up included, outside what is measured. */
  prepare?: (spec: PhaseSpec) => Promise<void>;
  /**
   * Writes leave work behind (audit rows, fences, Postgres's own) that would land in
   * whatever segment follows: they are measured in rounds of their own, after the
   * reads and the ceiling, and compared with the ceiling of the read rounds.
   */
  writes?: boolean;
}

/** One measured stretch of one phase. */
interface Segment {
  calls: number;
  errors: number;
  firstError: string | undefined;
  seconds: number;
  latenciesUs: number[];
  cpuSeconds: number;
  /** Calls the server's CPU window covered: the measured ones plus, by rate, those of the warm-up. */
  windowCalls: number;
  rssBytes: number;
  /** The server's GC pauses over the same window as its CPU. */
  gc: GcSeconds;
  /** The server's value-cache lookups over the same window. */
  lookups: Lookups;
  /** The clients' CPU over the segment, warm-up included, and the calls they made in it. */
  clientCpuSeconds: number;
  clientCalls: number;
  /** Redis's and Postgres's CPU and the machine's idle time over the same window as the server's CPU. */
  machine: MachineDelta;
  /** How much audit_log grew over the segment, warm-up included. */
  auditBytes: number;
}

let counterBase = 0;
/** With --profile: when each measured segment ran, for `profile-summary --phase`. */
const profileWindows: { phase: string; inFlight: number; startUs: number; endUs: number }[] = [];
/** Asks Redis for its own CPU and command counts (INFO cpu, commandstats) around each segment. */
const redisInfo = new Redis(REDIS_URL);
/** Reads audit_log's size around each segment, outside the machine's CPU window; connected once the database exists. */
let auditDb: pg.Client | undefined;
const auditSize = async () => (auditDb ? (await sampleAuditGrowth(auditDb)).bytes : 0);

async function runSegment(workers: Workers, spec: PhaseSpec, inFlight: number, warmupMs: number, durationMs: number): Promise<Segment> {
  const count = inFlight === 1 ? 1 : 2;
  const auditBefore = await auditSize();
  const machineBefore = await sampleMachine(redisInfo);
  const before = await serverStats(spec.server);
  const startNs = process.hrtime.bigint();
  const results = await Promise.all(
    Array.from({ length: count }, (_, w) =>
      workers.run(w, {
        address: spec.server.address,
        service: spec.service,
        method: spec.method,
        requests: spec.requests,
        ...(spec.token ? { token: spec.token } : {}),
        ...(spec.tokens ? { tokens: spec.tokens } : {}),
        inFlight: inFlight / count,
        warmupMs,
        durationMs,
        maxCalls: MAX_CALLS,
        counterBase: (counterBase += 10_000_000) + w * 1_000_000,
      }),
    ),
  );
  const endNs = process.hrtime.bigint();
  const after = await serverStats(spec.server);
  const machine = machineDelta(machineBefore, await sampleMachine(redisInfo));
  // The events of the segment's last calls reach the table within the audit log's batch interval (100 ms).
  await new Promise((r) => setTimeout(r, 150));
  const auditBytes = (await auditSize()) - auditBefore;
  // From the end of the warm-up (the clock V8 stamps profile samples with: monotonic, µs).
  profileWindows.push({ phase: spec.phase, inFlight, startUs: Number(startNs / 1000n) + warmupMs * 1000, endUs: Number(endNs / 1000n) });
  const calls = results.reduce((n, r) => n + r.calls, 0);
  return {
    calls,
    errors: results.reduce((n, r) => n + r.errors, 0),
    firstError: results.find((r) => r.firstError)?.firstError,
    seconds: Math.max(...results.map((r) => r.elapsedMs)) / 1000,
    latenciesUs: results.flatMap((r) => r.latenciesUs),
    cpuSeconds: after.cpuSeconds - before.cpuSeconds,
    windowCalls: calls * ((durationMs + warmupMs) / durationMs),
    rssBytes: after.rssBytes,
    gc: { minor: after.gc.minor - before.gc.minor, other: after.gc.other - before.gc.other },
    lookups: { all: after.lookups.all - before.lookups.all, hits: after.lookups.hits - before.lookups.hits },
    clientCpuSeconds: results.reduce((n, r) => n + r.cpuUs, 0) / 1e6,
    clientCalls: results.reduce((n, r) => n + r.issued, 0),
    machine,
    auditBytes,
  };
}

/**
 * Measures a server's phases, its ceiling first, at one number of calls in flight:
 * each phase is warmed up once, then run in `rounds` short segments, interleaved
 * with the other phases and the ceiling (the order reversed every other round),
 * so that a ratio to the ceiling compares stretches of time a few seconds apart
 * rather than phases a minute apart on a machine whose speed drifts.
 */
async function measureGroup(workers: Workers, specs: PhaseSpec[], inFlight: number, rounds: number): Promise<PhaseResult[]> {
  const segments = new Map<PhaseSpec, Segment[]>(specs.map((s) => [s, []]));
  for (const spec of specs) {
    process.stdout.write(`  ${spec.phase} at ${inFlight} in flight: warm-up… `);
    await spec.prepare?.(spec);
    const w = await runSegment(workers, spec, inFlight, 0, WARMUP_MS);
    console.log(`${(w.calls / w.seconds).toFixed(0)} calls/s`);
  }
  for (let round = 0; round < rounds; round++) {
    const order = round % 2 === 0 ? specs : [...specs].reverse();
    for (const spec of order) {
      await spec.prepare?.(spec);
      segments.get(spec)?.push(await runSegment(workers, spec, inFlight, SEGMENT_WARMUP_MS, SEGMENT_MS));
    }
  }
  const results = specs.map((spec) => {
    const segs = segments.get(spec) ?? [];
    const sum = (f: (s: Segment) => number) => segs.reduce((n, s) => n + f(s), 0);
    const latencies = segs.flatMap((s) => s.latenciesUs).sort((a, b) => a - b);
    const errors = sum((s) => s.errors);
    if (errors > 0) console.error(`  ${spec.phase} x${inFlight}: ${errors} errors, first: ${segs.find((s) => s.firstError)?.firstError}`);
    const result: PhaseResult = {
      phase: spec.phase,
      server: spec.server.name,
      inFlight,
      calls: sum((s) => s.calls),
      errors,
      callsPerSecond: sum((s) => s.calls) / sum((s) => s.seconds),
      p50Us: percentile(latencies, 50),
      p99Us: percentile(latencies, 99),
      cpuUsPerCall: (sum((s) => s.cpuSeconds) * 1e6) / sum((s) => s.windowCalls),
      clientCpuUsPerCall: (sum((s) => s.clientCpuSeconds) * 1e6) / sum((s) => s.clientCalls),
      redisCpuUsPerCall: (sum((s) => s.machine.redisCpuSeconds) * 1e6) / sum((s) => s.windowCalls),
      redisCommandsPerCall: sum((s) => s.machine.redisCommands) / sum((s) => s.windowCalls),
      postgresCpuUsPerCall: segs.every((s) => s.machine.postgresCpuSeconds !== undefined)
        ? (sum((s) => s.machine.postgresCpuSeconds ?? 0) * 1e6) / sum((s) => s.windowCalls)
        : undefined,
      auditBytesPerCall: sum((s) => s.auditBytes) / sum((s) => s.clientCalls),
      machineIdle: segs.every((s) => s.machine.ticks !== undefined)
        ? sum((s) => s.machine.ticks?.idle ?? 0) / sum((s) => s.machine.ticks?.total ?? 0)
        : undefined,
      rssMb: Math.max(...segs.map((s) => s.rssBytes)) / 2 ** 20,
      gcUsPerCall: {
        minor: (sum((s) => s.gc.minor) * 1e6) / sum((s) => s.windowCalls),
        other: (sum((s) => s.gc.other) * 1e6) / sum((s) => s.windowCalls),
      },
      secretsPerCall: spec.secretsPerCall ?? 1,
      cacheHitShare: sum((s) => s.lookups.all) > 0 ? sum((s) => s.lookups.hits) / sum((s) => s.lookups.all) : undefined,
      rounds: segs.map((s) => ({ callsPerSecond: s.calls / s.seconds, cpuUsPerCall: (s.cpuSeconds * 1e6) / s.windowCalls })),
    };
    console.log(`  ${spec.phase} at ${inFlight} in flight: ${result.callsPerSecond.toFixed(0)} calls/s`);
    return result;
  });
  return results;
}

/** The ceiling a phase is compared with: its server's, at its number in flight. */
function ceilingOf(rows: readonly PhaseResult[], r: PhaseResult): PhaseResult | undefined {
  return rows.find((c) => c.phase.startsWith("ceiling") && c.server === r.server && c.inFlight === r.inFlight);
}

function markdownTable(head: string[], body: string[][]): string {
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] as string).length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] as number)).join(" | ")} |`;
  return [line(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...body.map(line)].join("\n");
}

function table(rows: PhaseResult[]): string {
  const head = ["phase", "in flight", "calls/s", "secrets/s", "p50 µs", "p99 µs", "× ceiling calls/s", "× ceiling p99", "CPU µs/call", "× ceiling CPU", "client CPU µs/call", "RSS MB", "errors"];
  const body = rows.map((r) => [
    r.phase,
    String(r.inFlight),
    r.callsPerSecond.toFixed(0),
    (r.callsPerSecond * r.secretsPerCall).toFixed(0),
    r.p50Us.toFixed(0),
    r.p99Us.toFixed(0),
    r.ratio ? r.ratio.throughput.toFixed(2) : "",
    r.ratio ? r.ratio.p99.toFixed(2) : "",
    r.cpuUsPerCall.toFixed(0),
    r.ratio ? r.ratio.cpu.toFixed(2) : "",
    r.clientCpuUsPerCall.toFixed(0),
    r.rssMb.toFixed(0),
    String(r.errors),
  ]);
  return markdownTable(head, body);
}

/** The machine's CPU per call, process by process: the server, the clients, Redis and Postgres. */
function machineTable(rows: PhaseResult[]): string {
  const all = (r: PhaseResult) => r.cpuUsPerCall + r.clientCpuUsPerCall + r.redisCpuUsPerCall + (r.postgresCpuUsPerCall ?? NaN);
  const head = ["phase", "in flight", "server", "clients", "Redis", "Redis cmds/call", "Postgres", "all", "× ceiling all", "× ceiling calls/s", "machine idle %"];
  const body = rows.map((r) => {
    const ceiling = ceilingOf(rows, r);
    return [
      r.phase,
      String(r.inFlight),
      r.cpuUsPerCall.toFixed(0),
      r.clientCpuUsPerCall.toFixed(0),
      r.redisCpuUsPerCall.toFixed(1),
      r.redisCommandsPerCall.toFixed(3),
      r.postgresCpuUsPerCall === undefined ? "n/a" : r.postgresCpuUsPerCall.toFixed(1),
      Number.isNaN(all(r)) ? "n/a" : all(r).toFixed(0),
      ceiling && !Number.isNaN(all(r)) ? (all(r) / all(ceiling)).toFixed(2) : "",
      r.ratio ? r.ratio.throughput.toFixed(2) : "",
      r.machineIdle === undefined ? "n/a" : (r.machineIdle * 100).toFixed(0),
    ];
  });
  return markdownTable(head, body);
}

/**
 * The server's GC pauses per call (main thread, as prom-client reports them from
 * Node's `gc` performance entries), part of its CPU above: garbage is a large share
 * of every call's cost, an empty one's too.
 */
function gcTable(rows: PhaseResult[]): string {
  const head = ["phase", "in flight", "scavenges µs/call", "other GC µs/call", "GC share of server CPU %"];
  const body = rows.map((r) => [
    r.phase,
    String(r.inFlight),
    r.gcUsPerCall.minor.toFixed(1),
    r.gcUsPerCall.other.toFixed(1),
    (((r.gcUsPerCall.minor + r.gcUsPerCall.other) / r.cpuUsPerCall) * 100).toFixed(0),
  ]);
  return markdownTable(head, body);
}

/**
 * MANY_WARM_PHASE's preparation. The developers' cache entries are dropped first:
 * a lookup that hits does not renew an entry, so one filled by an earlier warming
 * could expire during the segment. Then each developer resolves all its secrets once
 * (two workers, 32 calls in flight each), which fills every entry afresh and puts
 * the developer's token and data key in the server's caches. Bounded like any task;
 * a failed call stops the run, since the phase would then not be warm.
 */
async function warmEveryDeveloper(
  workers: Workers,
  server: Server,
  population: { developers: readonly string[]; tokens: readonly string[] },
  request: { names: string[] },
): Promise<void> {
  const started = performance.now();
  const entries = population.developers.flatMap((d) => request.names.map((n) => nameKeys(developerPrefix(d), n).entry));
  for (let i = 0; i < entries.length; i += 1_000) await redisInfo.unlink(...entries.slice(i, i + 1_000));
  const tokens = population.tokens;
  const half = Math.ceil(tokens.length / 2);
  const results = await Promise.all(
    [tokens.slice(0, half), tokens.slice(half)].map((part, w) =>
      workers.run(w, {
        address: server.address,
        service: "secrets",
        method: "resolveSecrets",
        requests: [request],
        tokens: part,
        eachTokenOnce: true,
        inFlight: 32,
        warmupMs: 0,
        durationMs: 120_000,
        maxCalls: part.length,
        counterBase: (counterBase += 10_000_000),
      }),
    ),
  );
  const asked = results.reduce((n, r) => n + r.calls, 0);
  const failed = results.find((r) => r.errors > 0);
  if (failed || asked !== tokens.length) throw new Error(`warming the many developers failed (${asked} of ${tokens.length}): ${failed?.firstError}`);
  warmingSeconds.push((performance.now() - started) / 1000);
}
/** How long each warming of MANY_WARM_PHASE took: it must stay well inside a cache entry's lifetime. */
const warmingSeconds: number[] = [];

/**
 * What the many-developers phases mean: every call is a developer's own token, so
 * the server's bounded token cache (10,000 by default) and data-key cache (10,000,
 * 5 minutes) are exercised with the rest, and the value cache's hit share says how
 * many reads were warm. Each phase's ratios are printed beside it, the cold phase's
 * too, which no target bounds: its reads are misses (docs/performance.md).
 */
function describeMany(rows: readonly PhaseResult[], phases: readonly string[], developers: number, seedSeconds: number | undefined): string[] {
  const lines = [
    `many developers: ${developers.toLocaleString("en")} developers × ${MANY_SECRETS} secrets for the cold phases and as many for the warm one, ` +
      `seeded through the store in ${seedSeconds?.toFixed(1)} s; every call draws a developer and one of its secrets uniformly at random ` +
      `and presents that developer's own token (verifying the tokens and the server's bounded token cache are part of what is measured). ` +
      `A value-cache entry lives SECRETS_CACHE_TTL_SECONDS (30 s by default): in the cold phases a secret is read less often than that, ` +
      `so reads miss; the warm phase first has every developer resolve its secrets once, outside the measured window` +
      (warmingSeconds.length > 0
        ? ` (${warmingSeconds.length} warmings, ${Math.min(...warmingSeconds).toFixed(1)}–${Math.max(...warmingSeconds).toFixed(1)} s each).`
        : "."),
  ];
  for (const r of rows.filter((x) => phases.includes(x.phase))) {
    const hits = r.cacheHitShare === undefined ? "no value cache" : `value-cache hits ${(r.cacheHitShare * 100).toFixed(0)} % of lookups`;
    const hit = rows.find((x) => x.phase === "AccessSecret, cache hit" && x.inFlight === r.inFlight);
    const ratios = [
      r.ratio ? `${r.ratio.throughput.toFixed(2)} × ceiling calls/s` : undefined,
      hit ? `p50 ${(r.p50Us / hit.p50Us).toFixed(2)} × the one-developer hit's` : undefined,
    ].filter((x) => x !== undefined);
    lines.push(`  ${r.phase} at ${r.inFlight} in flight: ${r.calls.toLocaleString("en")} calls, ${hits}; ${ratios.join(", ")}`);
  }
  return lines;
}

async function main(): Promise<void> {
  const started = Date.now();
  const dbName = `secrets_bench_${Date.now()}_${process.pid}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const dbUrl = new URL(ADMIN_URL);
  dbUrl.pathname = `/${dbName}`;
  // Two master keys: k1 is recorded as active by the first server; the rewrap phase rotates to k2.
  const masterKeys = `k1:${randomBytes(32).toString("base64")},k2:${randomBytes(32).toString("base64")}`;
  const jwtSecret = randomBytes(32).toString("base64url");
  const servers: Server[] = [];
  const workers = Workers.start(2);
  const developers = { hit: `bench-hit-${process.pid}`, small: `bench-1k-${process.pid}`, large: `bench-100k-${process.pid}`, writes: `bench-w-${process.pid}` };
  const seededValue = (dev: string, i: number) => `bench-value-${dev}-${i}-${"x".repeat(24)}`;
  const manyPhases = [MANY_PHASE, `${MANY_PHASE}, cache off`, MANY_WARM_PHASE];
  const population = (tag: string) => Array.from({ length: MANY_DEVELOPERS }, (_, i) => `bench-${tag}-${process.pid}-${i}`);
  const manyDevelopers = manyPhases.slice(0, 2).some((p) => !ONLY || p.includes(ONLY)) ? population("many") : [];
  const warmDevelopers = !ONLY || MANY_WARM_PHASE.includes(ONLY) ? population("warm") : [];
  let manySeedSeconds: number | undefined;
  let exitCode = 0;
  let benchToken: BenchToken | undefined;

  try {
    const db = await openPostgres(dbUrl.toString(), { maxConnections: MANY_SEED.concurrency });
    await migrate(db);
    auditDb = new pg.Client({ connectionString: dbUrl.toString() });
    await auditDb.connect();
    console.log(`seeding (1,000${LARGE_SEED ? ` and ${LARGE_SEED.toLocaleString("en")}` : ""} secrets, directly through the store)…`);
    await seedSecrets(db, masterKeys, developers.small, 1_000, (i) => seededValue(developers.small, i), (i) => `secret_${i}`);
    if (LARGE_SEED) await seedSecrets(db, masterKeys, developers.large, LARGE_SEED, (i) => seededValue(developers.large, i), (i) => `secret_${i}`);
    if (manyDevelopers.length + warmDevelopers.length > 0) {
      const t0 = performance.now();
      const seeded = [...manyDevelopers, ...warmDevelopers];
      await seedDevelopers(db, masterKeys, seeded, MANY_SECRETS, seededValue, (i) => `secret_${i}`, MANY_SEED);
      manySeedSeconds = (performance.now() - t0) / 1000;
      console.log(
        `  many developers: ${seeded.length.toLocaleString("en")} developers × ${MANY_SECRETS} secrets, one data key each, ` +
          `seeded in ${manySeedSeconds.toFixed(1)} s (${MANY_SEED.batch} developers to a transaction, ${MANY_SEED.concurrency} at once)`,
      );
    }
    await db.close();

    // The per-developer rate limits are off: the bench's one developer reads far past the
    // default 10,000 secrets/s (ResolveSecrets(10) alone asks for over 20,000), and what is
    // measured is the service, not its protection (test/e2e/limits.test.ts covers that).
    // So is the quota: a full run's creates pass the default 10,000 secrets of one
    // developer (they did, at 800 creates/s, and every call after was QUOTA_EXCEEDED).
    if (HSM) {
      const created = await createBenchToken();
      if ("skipped" in created) throw new Error(`--hsm: ${created.skipped}`);
      benchToken = created;
    }
    const common = {
      ...benchToken?.env,
      DATABASE_URL: dbUrl.toString(),
      SECRETS_MASTER_KEYS: masterKeys,
      SECRETS_JWT_SECRET: jwtSecret,
      SECRETS_READ_RATE: "0",
      SECRETS_WRITE_RATE: "0",
      SECRETS_MAX_SECRETS_PER_DEVELOPER: "10000000",
      ...PASSED_ENV,
    };
    servers.push(await startServer("cache", { ...common, REDIS_URL }));
    servers.push(await startServer("nocache", common));
    servers.push(await startServer("strict", { ...common, REDIS_URL, SECRETS_AUDIT_STRICT: "1" }));
    // Server name → the baseline build's server of the same kind.
    const baselines = new Map<string, Server>();
    if (BASELINE) {
      const main = join(BASELINE, "dist", "main.js");
      baselines.set("cache", await startServer("cache [baseline]", { ...common, REDIS_URL }, main));
      baselines.set("nocache", await startServer("nocache [baseline]", common, main));
      servers.push(...baselines.values());
    }
    const [cached, uncached, strict] = servers as [Server, Server, Server];

    const secret = new TextEncoder().encode(jwtSecret);
    const scopes: Scope[] = ["secrets:read", "secrets:access", "secrets:write"];
    const token = (subject: string) => mintHs256Token(secret, { subject, scopes, ttlSeconds: 3_600 });
    const tokens = {
      hit: await token(developers.hit),
      small: await token(developers.small),
      large: await token(developers.large),
      writes: await token(developers.writes),
    };
    const manyTokens: string[] = [];
    for (const dev of manyDevelopers) manyTokens.push(await token(dev));
    const warmTokens: string[] = [];
    for (const dev of warmDevelopers) warmTokens.push(await token(dev));

    if (benchToken) {
      const operator = await mintHs256Token(secret, { subject: "bench-operator", scopes: ["secrets:operator"], ttlSeconds: 3_600 });
      await activateHsmKey(cached.address, operator, (line) => console.log(line));
    }

    // Ten secrets for the hit and resolve phases, created through the API.
    const setup = await workers.run(0, {
      address: cached.address,
      service: "secrets",
      method: "createSecret",
      requests: Array.from({ length: 10 }, (_, i) => ({ name: `hot_${i}`, value: seededValue(developers.hit, i) })),
      token: tokens.hit,
      inFlight: 1,
      warmupMs: 0,
      durationMs: 60_000,
      maxCalls: 10,
      counterBase: 0,
    });
    if (setup.errors > 0) throw new Error(`setup failed: ${setup.firstError}`);
    // Twenty secrets to update.
    await workers.run(0, {
      address: cached.address,
      service: "secrets",
      method: "createSecret",
      requests: Array.from({ length: 20 }, (_, i) => ({ name: `upd_${i}`, value: "initial-value" })),
      token: tokens.writes,
      inFlight: 1,
      warmupMs: 0,
      durationMs: 60_000,
      maxCalls: 20,
      counterBase: 0,
    });

    const tenNames = Array.from({ length: 10 }, (_, i) => `hot_${i}`);
    const sampleNames = (n: number) => Array.from({ length: 200 }, (_, i) => ({ name: `secret_${Math.floor((i * 7919) % n)}` }));
    const specs: PhaseSpec[] = [
      { phase: "ceiling: Health/Check (cache server)", server: cached, service: "health", method: "check", requests: [{}] },
      { phase: "AccessSecret, cache hit", server: cached, service: "secrets", method: "accessSecret", requests: tenNames.map((name) => ({ name })), token: tokens.hit },
      { phase: "ResolveSecrets(10), cache hit", server: cached, service: "secrets", method: "resolveSecrets", requests: [{ names: tenNames }], token: tokens.hit, secretsPerCall: 10 },
      { phase: "CreateSecret", writes: true, server: cached, service: "secrets", method: "createSecret", requests: [{ name: "new_{n}", value: "bench-created-value-{n}" }], token: tokens.writes },
      { phase: "UpdateSecret (new value)", writes: true, server: cached, service: "secrets", method: "updateSecret", requests: Array.from({ length: 20 }, (_, i) => ({ name: `upd_${i}`, value: "bench-updated-value-{n}" })), token: tokens.writes },
      { phase: "ceiling: Health/Check (no-cache server)", server: uncached, service: "health", method: "check", requests: [{}] },
      { phase: "AccessSecret, cache off", server: uncached, service: "secrets", method: "accessSecret", requests: tenNames.map((name) => ({ name })), token: tokens.hit },
      { phase: "AccessSecret, 1,000 stored, cache off", server: uncached, service: "secrets", method: "accessSecret", requests: sampleNames(1_000), token: tokens.small },
    ];
    specs.push(
      { phase: "ceiling: Health/Check (strict-audit server)", server: strict, service: "health", method: "check", requests: [{}] },
      { phase: "AccessSecret, cache hit, SECRETS_AUDIT_STRICT=1", server: strict, service: "secrets", method: "accessSecret", requests: tenNames.map((name) => ({ name })), token: tokens.hit },
    );
    const names = Array.from({ length: MANY_SECRETS }, (_, i) => ({ name: `secret_${i}` }));
    if (manyDevelopers.length > 0) {
      specs.push(
        { phase: manyPhases[0] as string, server: cached, service: "secrets", method: "accessSecret", requests: names, tokens: manyTokens, reference: "AccessSecret, cache hit" },
        { phase: manyPhases[1] as string, server: uncached, service: "secrets", method: "accessSecret", requests: names, tokens: manyTokens },
      );
    }
    if (warmDevelopers.length > 0) {
      const all = { names: names.map((n) => n.name) };
      specs.push({
        phase: MANY_WARM_PHASE,
        server: cached,
        service: "secrets",
        method: "accessSecret",
        requests: names,
        tokens: warmTokens,
        reference: "AccessSecret, cache hit",
        prepare: (spec) => warmEveryDeveloper(workers, spec.server, { developers: warmDevelopers, tokens: warmTokens }, all),
      });
    }
    if (LARGE_SEED) {
      specs.push({ phase: "AccessSecret, 100,000 stored, cache off", server: uncached, service: "secrets", method: "accessSecret", requests: sampleNames(LARGE_SEED), token: tokens.large });
    }

    const results: PhaseResult[] = [];
    const chosen = specs.filter((s) => !ONLY || s.phase.startsWith("ceiling") || s.phase.includes(ONLY));
    const selected = specs.filter((s) => chosen.includes(s) || chosen.some((c) => c.reference === s.phase));
    // The baseline build's copies of its servers' phases, measured in the same rounds.
    for (const spec of [...selected]) {
      const b = baselines.get(spec.server.name);
      if (b) selected.push({ ...spec, phase: `${spec.phase} [baseline]`, server: b });
    }
    for (const server of servers) {
      if (server.name.endsWith("[baseline]")) continue;
      const group = selected.filter((s) => s.server === server || s.server === baselines.get(server.name));
      if (!group.some((s) => !s.phase.startsWith("ceiling"))) continue;
      for (const inFlight of [1, 64]) {
        results.push(...(await measureGroup(workers, group.filter((s) => !s.writes), inFlight, inFlight === 64 ? READ_ROUNDS_AT_64 : ROUNDS)));
        const writes = group.filter((s) => s.writes);
        if (writes.length > 0) results.push(...(await measureGroup(workers, writes, inFlight, ROUNDS)));
      }
    }
    if (results.some((r) => r.errors > 0)) exitCode = 1;

    // After every other phase: it leaves k2 active and the data keys rewrapped.
    let rewrap: RewrapReport | undefined;
    if (HSM) console.log(`${REWRAP_PHASE}: skipped with --hsm`);
    else if (!ONLY || REWRAP_PHASE.includes(ONLY)) {
      console.log(`${REWRAP_PHASE}:`);
      // 64 in flight in all, as the other phases' reads, on two replicas: hits (Redis and the
      // in-memory data key) and misses (Postgres, where the rewrap works too).
      const reads: RewrapRead[] = [
        {
          phase: "AccessSecret, cache hit",
          server: cached.name,
          task: { address: cached.address, service: "secrets", method: "accessSecret", requests: tenNames.map((name) => ({ name })), token: tokens.hit, inFlight: 32 },
        },
        {
          phase: "AccessSecret, 1,000 stored, cache off",
          server: uncached.name,
          task: { address: uncached.address, service: "secrets", method: "accessSecret", requests: sampleNames(1_000), token: tokens.small, inFlight: 32 },
        },
      ];
      const db = await openPostgres(dbUrl.toString(), { maxConnections: 4 });
      try {
        // What the servers run with, read the way they read it.
        const serverConfig = loadConfig({ ...common, REDIS_URL, SECRETS_GRPC_ADDR: "127.0.0.1:0" });
        rewrap = await measureRewrap({
          db,
          keyring: masterKeys,
          dataKeys: REWRAP_DATA_KEYS,
          operator: { address: cached.address, token: await mintHs256Token(secret, { subject: "bench-operator", scopes: ["secrets:operator"], ttlSeconds: 3_600 }) },
          replicas: servers.map((s) => ({ name: s.name, address: s.address, logFile: s.logFile })),
          load: workers,
          reads,
          warmupMs: WARMUP_MS,
          beforeMs: REWRAP_BEFORE_MS,
          pollMs: REWRAP_POLL_MS,
          deadlineMs: REWRAP_DEADLINE_MS,
          settleMs: REWRAP_SETTLE_MS,
          keyJob: { batch: serverConfig.keyJobBatch, pauseMs: serverConfig.keyJobPauseMs },
          log: (line) => console.log(line),
        });
        if (rewrapFailed(rewrap)) exitCode = 1;
      } catch (e) {
        console.error(`${REWRAP_PHASE} failed:`, e);
        exitCode = 1;
      } finally {
        await db.close();
      }
    }
    // Two servers of their own, so that 10,000 open watches weigh on nothing else measured.
    let watch: WatchReport | undefined;
    if (!ONLY || WATCH_PHASE.includes(ONLY)) {
      console.log(`${WATCH_PHASE}:`);
      try {
        const env = { ...common, SECRETS_WATCH_MAX_PER_DEVELOPER: "100", SECRETS_WATCH_MAX_PER_REPLICA: "20000" };
        const writer = await startServer("watch-a", env);
        servers.push(writer);
        const watcher = await startServer("watch-b", env);
        servers.push(watcher);
        watch = await measureWatch({
          writer,
          watcher,
          token,
          counts: QUICK ? [1_000] : [1_000, 10_000],
          writesPerSecond: 20,
          writeSeconds: QUICK ? 3 : 10,
          idleSeconds: QUICK ? 5 : 30,
          log: (line) => console.log(line),
        });
        if (watch.delivery.some((d) => d.events < d.writes * 10)) {
          console.error(`${WATCH_PHASE}: events were lost`);
          exitCode = 1;
        }
      } catch (e) {
        console.error(`${WATCH_PHASE} failed:`, e);
        exitCode = 1;
      }
    }
    // In-process, after the servers' phases: the PKCS#11 provider's unwraps (a DEK cache miss with the master key in an HSM).
    let hsmUnwraps: HsmUnwrapReport | undefined;
    if (!ONLY || HSM_PHASE.includes(ONLY)) {
      hsmUnwraps = await measureHsmUnwraps({ seconds: QUICK ? 1 : 5, ...(benchToken ? { token: benchToken } : {}) });
      console.log(describeHsmUnwraps(hsmUnwraps).join("\n"));
    }
    for (const r of results) {
      const ceiling = ceilingOf(results, r);
      if (ceiling) {
        r.ratio = {
          throughput: r.callsPerSecond / ceiling.callsPerSecond,
          p50: r.p50Us / ceiling.p50Us,
          p99: r.p99Us / ceiling.p99Us,
          cpu: r.cpuUsPerCall / ceiling.cpuUsPerCall,
        };
        r.roundRatios = r.rounds.map((round, i) => ({
          throughput: round.callsPerSecond / (ceiling.rounds[i]?.callsPerSecond ?? NaN),
          cpu: round.cpuUsPerCall / (ceiling.rounds[i]?.cpuUsPerCall ?? NaN),
        }));
      }
    }

    // Redis must hold none of the seeded values in the clear. One pass over the
    // cache's keys (the many developers' prefixes are too many to scan one by one),
    // keeping those of the bench's developers.
    const redis = new Redis(REDIS_URL);
    let scanned = 0;
    const leaks: string[] = [];
    const benchPrefixes = new Set([...Object.values(developers), ...manyDevelopers, ...warmDevelopers].map(developerPrefix));
    try {
      const benchKeys: string[] = [];
      let cursor = "0";
      do {
        const [next, keys] = await redis.scan(cursor, "MATCH", "sec:{*", "COUNT", 1000);
        const mine = keys.filter((key) => benchPrefixes.has(key.slice(0, key.indexOf("}:") + 2)));
        benchKeys.push(...mine);
        const values = mine.length > 0 ? await redis.mgetBuffer(...mine) : [];
        mine.forEach((key, k) => {
          scanned += 1;
          const value = values[k] ?? Buffer.alloc(0);
          for (let i = 0; i < 10; i++) if (value.includes(seededValue(developers.hit, i))) leaks.push(key);
          if (value.includes("bench-value-") || value.includes("bench-updated-value-") || value.includes("bench-created-value-")) leaks.push(key);
        });
        cursor = next;
      } while (cursor !== "0");
      // Leave the shared Redis as it was.
      for (let i = 0; i < benchKeys.length; i += 500) await redis.unlink(...benchKeys.slice(i, i + 500));
    } finally {
      redis.disconnect();
    }
    if (leaks.length > 0) exitCode = 1;

    const hit = (n: number) => results.find((r) => r.phase === "AccessSecret, cache hit" && r.inFlight === n);
    const off = (n: number) => results.find((r) => r.phase === "AccessSecret, cache off" && r.inFlight === n);
    const resolve = (n: number) => results.find((r) => r.phase.startsWith("ResolveSecrets") && r.inFlight === n);
    const small = results.find((r) => r.phase.includes("1,000 stored") && r.inFlight === 1);
    const large = results.find((r) => r.phase.includes("100,000 stored") && r.inFlight === 1);
    const many = (n: number) => results.find((r) => r.phase === MANY_WARM_PHASE && r.inFlight === n);
    const manyThroughput = "AccessSecret, many developers (warm) ≥ 0.7 × ceiling calls/s (64 in flight)";
    const targets = [
      ["AccessSecret hit ≥ 0.8 × ceiling calls/s (64 in flight)", hit(64)?.ratio?.throughput, 0.8, ">="],
      ["AccessSecret hit ≤ 1.5 × ceiling p99 (64 in flight)", hit(64)?.ratio?.p99, 1.5, "<="],
      ["AccessSecret hit ≤ 1.5 × ceiling CPU/call (64 in flight)", hit(64)?.ratio?.cpu, 1.5, "<="],
      ["AccessSecret cache off ≥ 0.5 × ceiling calls/s (64 in flight)", off(64)?.ratio?.throughput, 0.5, ">="],
      [
        "ResolveSecrets(10) secrets/s ≥ 5 × AccessSecret hit calls/s (64 in flight)",
        resolve(64) && hit(64) ? (resolve(64)!.callsPerSecond * 10) / hit(64)!.callsPerSecond : undefined,
        5,
        ">=",
      ],
      ["p50 at 100,000 stored ≤ 1.2 × p50 at 1,000 (1 in flight)", large && small ? large.p50Us / small.p50Us : undefined, 1.2, "<="],
      [manyThroughput, many(64)?.ratio?.throughput, 0.7, ">="],
      [
        "AccessSecret, many developers (warm) p50 ≤ 1.3 × one-developer hit p50 (1 in flight)",
        many(1) && hit(1) ? many(1)!.p50Us / hit(1)!.p50Us : undefined,
        1.3,
        "<=",
      ],
      // Unfinished, the figure bounds its rate from above (the keys over the time polled), far below the target.
      [REWRAP_TARGET.name, rewrap?.progress.keysPerSecond, REWRAP_TARGET.keysPerSecond, ">="],
      [WATCH_TARGETS.delivery1k.name, watch?.delivery.find((d) => d.watches === 1_000)?.p99Ms, WATCH_TARGETS.delivery1k.limit, "<="],
      [WATCH_TARGETS.cacheLookups.name, watch?.cache?.lookupsPerSecond, WATCH_TARGETS.cacheLookups.limit, ">="],
      [WATCH_TARGETS.delivery10k.name, watch?.delivery.find((d) => d.watches === 10_000)?.p99Ms, WATCH_TARGETS.delivery10k.limit, "<="],
      [WATCH_TARGETS.idleRss.name, watch?.idle?.watches === 10_000 ? watch.idle.rssMbAdded : undefined, WATCH_TARGETS.idleRss.limit, "<="],
      [
        WATCH_TARGETS.idleCpu.name,
        watch?.idle?.watches === 10_000 ? watch.idle.cpuPercent - watch.idle.cpuPercentBefore : undefined,
        WATCH_TARGETS.idleCpu.limit,
        "<=",
      ],
    ] as const;

    // Each ratio target's phase and figure, by round: how far its ratio could move with the machine's noise.
    const byRound: Record<string, [PhaseResult | undefined, "throughput" | "cpu"]> = {
      [targets[0][0]]: [hit(64), "throughput"],
      [targets[2][0]]: [hit(64), "cpu"],
      [targets[3][0]]: [off(64), "throughput"],
      [manyThroughput]: [many(64), "throughput"],
    };
    const figure = { throughput: (r: Round) => r.callsPerSecond, cpu: (r: Round) => r.cpuUsPerCall };
    const spread: Record<string, number[] | undefined> = {};
    const intervals: Record<string, Interval | undefined> = {};
    for (const [name, [phase, kind]] of Object.entries(byRound)) {
      const ceiling = phase && ceilingOf(results, phase);
      if (!phase || !ceiling) continue;
      spread[name] = phase.roundRatios?.map((r) => r[kind]);
      intervals[name] = ratioInterval(phase.rounds.map(figure[kind]), ceiling.rounds.map(figure[kind]));
    }

    const report = {
      when: new Date().toISOString(),
      quick: QUICK,
      hsm: HSM,
      rounds: ROUNDS,
      readRoundsAt64: READ_ROUNDS_AT_64,
      segmentSeconds: SEGMENT_MS / 1000,
      machine: { cpus: (await import("node:os")).cpus().length, node: process.version },
      results,
      targets: targets.map(([name, value, bound, op]) => ({
        name,
        value,
        bound,
        holds: value === undefined ? null : op === ">=" ? value >= bound : value <= bound,
        interval: intervals[name],
      })),
      ...(manyDevelopers.length + warmDevelopers.length > 0
        ? {
            manyDevelopers: {
              developers: manyDevelopers.length,
              warmDevelopers: warmDevelopers.length,
              secretsPerDeveloper: MANY_SECRETS,
              distinctTokens: manyTokens.length + warmTokens.length,
              seedSeconds: manySeedSeconds,
              seedBatch: MANY_SEED.batch,
              seedConcurrency: MANY_SEED.concurrency,
            },
          }
        : {}),
      ...(rewrap ? { rewrap } : {}),
      ...(watch ? { watch } : {}),
      ...(hsmUnwraps ? { hsmUnwraps } : {}),
      redisScan: { keys: scanned, plaintextValuesFound: leaks.length },
      ...(PROFILE || SERVER_NODE_ARGS.length > 0 ? { profileWindows } : {}),
    };
    console.log(`\n${table(results)}\n`);
    console.log("CPU µs per call by process (Postgres: every postgres process on this machine), Redis commands per call, and the machine's idle time:");
    console.log(`\n${machineTable(results)}\n`);
    for (const r of results.filter((x) => x.phase.includes("cache hit"))) {
      const postgres = r.postgresCpuUsPerCall === undefined ? "n/a" : r.postgresCpuUsPerCall.toFixed(1);
      console.log(`${r.phase} at ${r.inFlight} in flight: audit ${r.auditBytesPerCall.toFixed(0)} B/call (audit_log, table and indexes), Postgres ${postgres} µs/call`);
    }
    console.log("");
    console.log("The server's GC pauses per call (main thread; part of its CPU above):");
    console.log(`\n${gcTable(results)}\n`);
    if (manyDevelopers.length + warmDevelopers.length > 0) console.log(`${describeMany(results, manyPhases, MANY_DEVELOPERS, manySeedSeconds).join("\n")}\n`);
    if (rewrap) console.log(`${describeRewrap(rewrap, markdownTable).join("\n")}\n`);
    if (watch) console.log(`${WATCH_PHASE}:\n${describeWatch(watch, markdownTable).join("\n")}\n`);
    if (hsmUnwraps) console.log(`${describeHsmUnwraps(hsmUnwraps).join("\n")}\n`);
    for (const t of report.targets) {
      const rounds = spread[t.name];
      const interval = t.interval ? `; 95 % interval ${t.interval.low.toFixed(2)}–${t.interval.high.toFixed(2)}` : "";
      const range = rounds ? ` (${rounds.length} rounds ${Math.min(...rounds).toFixed(2)}–${Math.max(...rounds).toFixed(2)}${interval})` : "";
      // A quick run's verdicts are in lower case: indicative only.
      const verdict = t.holds === null ? "n/a " : QUICK ? (t.holds ? "holds" : "misses") : t.holds ? "HOLDS" : "MISSES";
      const value = t.value === undefined ? "not measured" : Math.abs(t.value) >= 100 ? t.value.toFixed(0) : t.value.toFixed(2);
      const unfinished = t.name === REWRAP_TARGET.name && rewrap && !rewrap.progress.finished ? " (did not finish: at most)" : "";
      console.log(`${verdict}  ${t.name}: ${value}${unfinished}${range}`);
    }
    if (QUICK) {
      console.log(
        "(quick: 3 rounds of 0.5 s are too few to judge a ratio target, whose rounds vary by ±0.1 or more here; a full run, `npm run bench`, is the measurement)",
      );
    }
    if (baselines.size > 0) {
      console.log("\nthis build against the baseline build (same rounds; below 1 is less CPU, above 1 more calls/s):");
      for (const b of results.filter((r) => r.server.endsWith("[baseline]"))) {
        const mine = results.find((r) => `${r.phase} [baseline]` === b.phase && r.inFlight === b.inFlight);
        if (!mine) continue;
        const cpu = mine.cpuUsPerCall / b.cpuUsPerCall;
        const rounds = mine.rounds.map((r, i) => r.cpuUsPerCall / (b.rounds[i]?.cpuUsPerCall ?? NaN));
        console.log(
          `  ${mine.phase} at ${mine.inFlight}: CPU/call ${cpu.toFixed(2)} (rounds ${Math.min(...rounds).toFixed(2)}–${Math.max(...rounds).toFixed(2)}), ` +
            `calls/s ${(mine.callsPerSecond / b.callsPerSecond).toFixed(2)}, ratio to own ceiling ${mine.ratio?.cpu.toFixed(2)} vs ${b.ratio?.cpu.toFixed(2)}`,
        );
      }
    }
    console.log(`\nRedis after the run: ${scanned} keys of the bench's developers scanned, ${leaks.length} holding a seeded value in the clear.`);
    const outDir = join(ROOT, "bench", "results");
    mkdirSync(outDir, { recursive: true });
    const outFile = join(outDir, `${QUICK ? "quick" : "full"}-${report.when.replace(/[:.]/g, "-")}.json`);
    writeFileSync(outFile, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`results: ${outFile} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  } finally {
    workers.close();
    redisInfo.disconnect();
    for (const s of servers) s.child.kill("SIGTERM");
    await Promise.all(servers.map((s) => (s.child.exitCode !== null ? undefined : new Promise((r) => s.child.once("exit", r)))));
    for (const s of servers) rmSync(s.logFile, { force: true });
    benchToken?.close();
    await auditDb?.end();
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
  }
  process.exit(exitCode);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
