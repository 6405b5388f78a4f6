import { spawn, type ChildProcess } from "node:child_process";
import { randomBytes } from "node:crypto";
import { closeSync, openSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";
import * as grpc from "@grpc/grpc-js";
import { create, type DescMessage } from "@bufbuild/protobuf";
import pg from "pg";
import type { Scope } from "../src/auth/principal.js";
import { mintHs256Token } from "../src/auth/token-issuer.js";
import { SecretService } from "../src/api/gen/secrets/v1/secrets_pb.js";
import { Health } from "../src/api/gen/grpc/health/v1/health_pb.js";
import { serviceDefinition } from "../src/server/grpc-adapter.js";
import { sampleAuditGrowth, walBetween } from "./audit-growth.js";
import { postgresCpuSeconds } from "./machine.js";
import { prng } from "./stats.js";

/**
 * `npm run soak [-- --minutes N] [-- --rate R] [-- --sample-seconds S] [-- --max-growth-percent P]`
 *
 * Does the server's memory level off under steady load? Starts one production-mode
 * server from the build (a fresh Postgres database, dropped afterwards; the
 * machine's Redis), drives it from this process at a steady rate of mixed calls
 * (reads, resolves, lists, updates, creates, deletes, not-found lookups) for
 * several developers, samples its resident memory from its own /metrics
 * (`process_resident_memory_bytes`) every few seconds, prints a table of memory
 * over time, and ends with a verdict: RSS levels off when the median of the last
 * third of the samples is less than `--max-growth-percent` (default 5) above the
 * median of the middle third (medians, because RSS follows the garbage
 * collector's sawtooth). Exit code 0 when it levels off, the rate was held and no
 * call failed unexpectedly; 1 otherwise.
 *
 * `--full-speed [--round-seconds S] [--max-decline-percent P]`: instead of a steady
 * rate, rounds at full speed (64 calls in flight) that alternate empty calls
 * (Health/Check) and cache-hit reads (AccessSecret), so that each read round has an
 * empty round beside it measured on the same machine a moment before: the ratio
 * reads ÷ empty tells a decline of the service from the machine's drift. Each read
 * round also reports the server's and Postgres's CPU per read (which the machine's
 * load moves far less than throughput), the audit table's growth (partitions with
 * indexes) and the WAL per read. Verdict: the median ratio of the last third of the rounds is less than
 * `--max-decline-percent` (default 10) below that of the first third, and RSS levels
 * off as above.
 *
 * Not part of CI (it takes minutes). Bounded in time and count; loopback only.
 */

const here = dirname(fileURLToPath(import.meta.url));
const ROOT = join(here, "..", "..");
const MAIN = join(ROOT, "dist", "main.js");

const argv = process.argv.slice(2);
function numberArg(flag: string, fallback: number): number {
  const i = argv.indexOf(flag);
  if (i < 0) return fallback;
  const v = Number(argv[i + 1]);
  if (!Number.isFinite(v) || v <= 0) throw new Error(`${flag} wants a positive number`);
  return v;
}
const MINUTES = numberArg("--minutes", 5);
const RATE = numberArg("--rate", 300);
const SAMPLE_SECONDS = numberArg("--sample-seconds", 5);
const MAX_GROWTH_PERCENT = numberArg("--max-growth-percent", 5);
const FULL_SPEED = argv.includes("--full-speed");
const ROUND_SECONDS = numberArg("--round-seconds", 15);
const MAX_DECLINE_PERCENT = numberArg("--max-decline-percent", 10);
const FULL_SPEED_IN_FLIGHT = 64;
const ADMIN_URL = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL = process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379";

const DEVELOPERS = 20;
const HOT_PER_DEVELOPER = 20;
const MAX_IN_FLIGHT = 512;
const TICK_MS = 10;
const CALL_TIMEOUT_MS = 10_000;

interface Server {
  child: ChildProcess;
  address: string;
  metricsUrl: string;
  logFile: string;
  exited: Promise<number | string>;
}

function startServer(env: Record<string, string>): Promise<Server> {
  const logFile = join(tmpdir(), `secrets-soak-${process.pid}.log`);
  const fd = openSync(logFile, "w");
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("SECRETS_") && k !== "DATABASE_URL" && k !== "REDIS_URL"),
  );
  const child = spawn(process.execPath, [MAIN], {
    cwd: ROOT,
    env: { ...clean, ...env, SECRETS_GRPC_ADDR: "127.0.0.1:0", SECRETS_METRICS_ADDR: "127.0.0.1:0" },
    stdio: ["ignore", fd, fd],
  });
  closeSync(fd);
  const exited = new Promise<number | string>((resolve) => child.once("exit", (code, signal) => resolve(code ?? signal ?? -1)));
  return new Promise((resolve, reject) => {
    const deadline = Date.now() + 60_000;
    const poll = () => {
      const text = readFileSync(logFile, "utf8");
      const m = text.match(/"port":(\d+),"metricsPort":(\d+)[^\n]*"msg":"serving"/);
      if (m) return resolve({ child, address: `127.0.0.1:${m[1]}`, metricsUrl: `http://127.0.0.1:${m[2]}/metrics`, logFile, exited });
      if (child.exitCode !== null || Date.now() > deadline) return reject(new Error(`the server did not start:\n${text.slice(-2000)}`));
      setTimeout(poll, 50);
    };
    poll();
  });
}

/** Samples of the server's own metrics. */
interface ServerSample {
  rssBytes: number;
  heapUsedBytes: number;
  heapTotalBytes: number;
  externalBytes: number;
  cpuSeconds: number;
  auditQueue: number;
  dekCache: number;
}

async function sampleServer(server: Server): Promise<ServerSample> {
  const text = await (await fetch(server.metricsUrl, { signal: AbortSignal.timeout(5_000) })).text();
  const read = (sample: string) => {
    const escaped = sample.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
    return Number(text.match(new RegExp(`^${escaped}(?:\\{[^}]*\\})? ([0-9.e+-]+)`, "m"))?.[1] ?? NaN);
  };
  return {
    rssBytes: read("process_resident_memory_bytes"),
    heapUsedBytes: read("nodejs_heap_size_used_bytes"),
    heapTotalBytes: read("nodejs_heap_size_total_bytes"),
    externalBytes: read("nodejs_external_memory_bytes"),
    cpuSeconds: read("process_cpu_seconds_total"),
    auditQueue: read("secrets_audit_queue_depth"),
    dekCache: read("secrets_dek_cache_entries"),
  };
}

type Client = grpc.Client & Record<string, Function>;

function makeClient(address: string): Client {
  const Ctor = grpc.makeGenericClientConstructor(serviceDefinition(SecretService), SecretService.typeName);
  return new Ctor(address, grpc.credentials.createInsecure()) as Client;
}

/** One unary call; resolves with the status code (0 = OK). */
function call(client: Client, method: string, request: unknown, token: string): Promise<grpc.status> {
  const desc = SecretService.methods.find((m) => m.localName === method);
  if (!desc) throw new Error(`no method ${method}`);
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  return new Promise((resolve) => {
    (client[method] as Function).call(
      client,
      create(desc.input as DescMessage, request as never),
      metadata,
      { deadline: Date.now() + CALL_TIMEOUT_MS },
      (err: grpc.ServiceError | null) => resolve(err ? err.code : grpc.status.OK),
    );
  });
}

interface Interval {
  calls: number;
  unexpected: number;
  notFound: number;
  skipped: number;
  latenciesMs: number[];
}

const newInterval = (): Interval => ({ calls: 0, unexpected: 0, notFound: 0, skipped: 0, latenciesMs: [] });

function percentile(values: number[], p: number): number {
  if (values.length === 0) return NaN;
  const sorted = [...values].sort((a, b) => a - b);
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

function median(values: number[]): number {
  return percentile(values, 50);
}

/** Least-squares slope of y over x. */
function slope(points: [number, number][]): number {
  const n = points.length;
  if (n < 2) return NaN;
  const mx = points.reduce((a, [x]) => a + x, 0) / n;
  const my = points.reduce((a, [, y]) => a + y, 0) / n;
  const sxy = points.reduce((a, [x, y]) => a + (x - mx) * (y - my), 0);
  const sxx = points.reduce((a, [x]) => a + (x - mx) ** 2, 0);
  return sxx === 0 ? NaN : sxy / sxx;
}

const mb = (bytes: number) => (bytes / 1_048_576).toFixed(1);

/** One empty Health/Check; resolves with the status code. */
function healthCheck(client: grpc.Client & Record<string, Function>): Promise<grpc.status> {
  const desc = Health.methods.find((m) => m.localName === "check");
  if (!desc) throw new Error("no Health/Check");
  return new Promise((resolve) => {
    (client["check"] as Function).call(client, create(desc.input, {}), new grpc.Metadata(), { deadline: Date.now() + CALL_TIMEOUT_MS }, (err: grpc.ServiceError | null) =>
      resolve(err ? err.code : grpc.status.OK),
    );
  });
}

/** Calls `one` with FULL_SPEED_IN_FLIGHT in flight for `seconds`; returns the calls completed and those that failed. */
async function closedLoop(seconds: number, one: () => Promise<grpc.status>): Promise<{ calls: number; failed: number; seconds: number }> {
  const started = performance.now();
  const end = started + seconds * 1000;
  let calls = 0;
  let failed = 0;
  const worker = async () => {
    while (performance.now() < end) {
      const code = await one();
      calls += 1;
      if (code !== grpc.status.OK) failed += 1;
    }
  };
  await Promise.all(Array.from({ length: FULL_SPEED_IN_FLIGHT }, worker));
  return { calls, failed, seconds: (performance.now() - started) / 1000 };
}

/**
 * The `--full-speed` soak (see the module comment): alternating empty and read
 * rounds for MINUTES; prints one row per pair and the verdict; returns the exit code.
 */
async function fullSpeed(
  server: Server,
  client: Client,
  tokens: readonly string[],
  hot: readonly string[],
  dbUrl: string,
  interrupted: () => boolean,
): Promise<number> {
  const HealthClient = grpc.makeGenericClientConstructor(serviceDefinition(Health), Health.typeName);
  const health = new HealthClient(server.address, grpc.credentials.createInsecure()) as grpc.Client & Record<string, Function>;
  const db = new pg.Client({ connectionString: dbUrl });
  await db.connect();
  try {
    const auditBytes = () => sampleAuditGrowth(db);
    let n = 0;
    const read = () => {
      n += 1;
      return call(client, "accessSecret", { name: hot[n % hot.length] }, tokens[n % tokens.length] as string);
    };
    const head = ["t (s)", "empty/s", "reads/s", "ratio", "server µs/read", "pg µs/read", "audit B/read", "WAL B/read", "RSS MB", "failed"];
    const widths = [6, 8, 8, 6, 14, 10, 12, 10, 7, 7];
    const row = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i] as number)).join("  ");
    console.log(`
full speed: rounds of ${ROUND_SECONDS} s, empty calls then cache-hit reads, ${FULL_SPEED_IN_FLIGHT} in flight
${row(head)}`);
    const rounds: { t: number; ratio: number; rss: number; serverUs: number; postgresUs: number; auditPerRead: number; walPerRead: number }[] = [];
    let failed = 0;
    const started = performance.now();
    while (!interrupted() && performance.now() - started < MINUTES * 60_000) {
      const empty = await closedLoop(ROUND_SECONDS, () => healthCheck(health));
      const before = await auditBytes();
      const serverBefore = await sampleServer(server);
      const postgresBefore = postgresCpuSeconds() ?? NaN;
      const reads = await closedLoop(ROUND_SECONDS, read);
      await new Promise((r) => setTimeout(r, 300)); // the audit log's last batch
      const postgresAfter = postgresCpuSeconds() ?? NaN;
      const after = await auditBytes();
      const sample = await sampleServer(server);
      // CPU per read does not move with the machine's load as throughput does: a service that slows shows here.
      const serverUs = ((sample.cpuSeconds - serverBefore.cpuSeconds) / reads.calls) * 1e6;
      const postgresUs = ((postgresAfter - postgresBefore) / reads.calls) * 1e6;
      failed += empty.failed + reads.failed;
      const ratio = reads.calls / reads.seconds / (empty.calls / empty.seconds);
      const auditPerRead = (after.bytes - before.bytes) / reads.calls;
      const walPerRead = (await walBetween(db, before.lsn, after.lsn)) / reads.calls;
      const t = (performance.now() - started) / 1000;
      rounds.push({ t, ratio, rss: sample.rssBytes, serverUs, postgresUs, auditPerRead, walPerRead });
      console.log(
        row([
          t.toFixed(0),
          (empty.calls / empty.seconds).toFixed(0),
          (reads.calls / reads.seconds).toFixed(0),
          ratio.toFixed(2),
          serverUs.toFixed(0),
          postgresUs.toFixed(0),
          auditPerRead.toFixed(0),
          walPerRead.toFixed(0),
          mb(sample.rssBytes),
          String(empty.failed + reads.failed),
        ]),
      );
    }
    const third = Math.floor(rounds.length / 3);
    if (third < 1) {
      console.log("verdict: NO VERDICT (fewer than 3 rounds: run longer or use shorter rounds)");
      return 1;
    }
    const firstRatio = median(rounds.slice(0, third).map((r) => r.ratio));
    const lastRatio = median(rounds.slice(-third).map((r) => r.ratio));
    const decline = ((firstRatio - lastRatio) / firstRatio) * 100;
    const middleRss = median(rounds.slice(third, rounds.length - third).map((r) => r.rss));
    const lastRss = median(rounds.slice(-third).map((r) => r.rss));
    const growth = ((lastRss - middleRss) / middleRss) * 100;
    const steady = decline < MAX_DECLINE_PERCENT;
    const levelsOff = !(growth >= MAX_GROWTH_PERCENT);
    const thirds = (pick: (r: (typeof rounds)[number]) => number) =>
      `${median(rounds.slice(0, third).map(pick)).toFixed(0)} → ${median(rounds.slice(-third).map(pick)).toFixed(0)}`;
    console.log(`CPU per read, first third → last third (medians): server ${thirds((r) => r.serverUs)} µs, Postgres ${thirds((r) => r.postgresUs)} µs`);
    console.log(
      `audit per read: median ${median(rounds.map((r) => r.auditPerRead)).toFixed(0)} B of table and indexes, ` +
        `${median(rounds.map((r) => r.walPerRead)).toFixed(0)} B of WAL (all WAL of the round ÷ reads)`,
    );
    console.log(
      `verdict: reads ÷ empty ${firstRatio.toFixed(2)} over the first third, ${lastRatio.toFixed(2)} over the last ` +
        `(${decline.toFixed(1)} % decline, limit ${MAX_DECLINE_PERCENT} %): ${steady ? "NO DECLINE beyond the machine's drift" : "DECLINES"}; ` +
        `RSS ${levelsOff ? "levels off" : "DOES NOT LEVEL OFF"} (${Number.isNaN(growth) ? "-" : growth.toFixed(1)} %); ` +
        `${failed === 0 ? "no failed calls" : `${failed} FAILED CALLS`}`,
    );
    return steady && levelsOff && failed === 0 && !interrupted() ? 0 : 1;
  } finally {
    health.close();
    await db.end();
  }
}

async function main(): Promise<void> {
  const dbName = `secrets_soak_${Date.now()}_${process.pid}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL, connectionTimeoutMillis: 5_000 });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const dbUrl = new URL(ADMIN_URL);
  dbUrl.pathname = `/${dbName}`;
  const jwtSecret = randomBytes(32).toString("base64url");
  let server: Server | undefined;
  let client: Client | undefined;
  let exitCode = 1;
  let interrupted = false;
  const onSigint = () => {
    interrupted = true;
  };
  process.on("SIGINT", onSigint);
  let keepLog = false;

  try {
    console.log(
      FULL_SPEED
        ? `soak: ${MINUTES} min at full speed, empty and read rounds alternating; verdict: reads ÷ empty declines < ${MAX_DECLINE_PERCENT} %, RSS levels off`
        : `soak: ${MINUTES} min at ${RATE} calls/s (mixed), memory sampled every ${SAMPLE_SECONDS} s; ` +
            `verdict: median RSS of the last third < ${MAX_GROWTH_PERCENT} % above the middle third's`,
    );
    server = await startServer({
      DATABASE_URL: dbUrl.toString(),
      REDIS_URL,
      SECRETS_MASTER_KEYS: `k1:${randomBytes(32).toString("base64")}`,
      SECRETS_JWT_SECRET: jwtSecret,
    });
    client = makeClient(server.address);
    const secret = new TextEncoder().encode(jwtSecret);
    const scopes: Scope[] = ["secrets:read", "secrets:access", "secrets:write"];
    const tokens = await Promise.all(
      Array.from({ length: DEVELOPERS }, (_, d) => mintHs256Token(secret, { subject: `soak-${process.pid}-${d}`, scopes, ttlSeconds: 3_600 })),
    );

    const random = prng(7);
    const pick = <T>(items: readonly T[]): T => items[Math.floor(random() * items.length)] as T;
    const value = () => randomBytes(8 + Math.floor(random() * 1_500)).toString("base64");
    const hot = Array.from({ length: HOT_PER_DEVELOPER }, (_, i) => `hot_${i}`);

    // Setup: every developer's hot secrets, a few at a time.
    for (let d = 0; d < DEVELOPERS; d++) {
      const codes = await Promise.all(hot.map((name) => call(client as Client, "createSecret", { name, value: value(), metadata: { team: `t${d % 3}` } }, tokens[d] as string)));
      if (codes.some((c) => c !== grpc.status.OK)) throw new Error(`setup failed: ${codes.map((c) => grpc.status[c]).join(",")}`);
    }

    if (FULL_SPEED) {
      exitCode = await fullSpeed(server, client, tokens, hot, dbUrl.toString(), () => interrupted);
      keepLog = exitCode !== 0;
      // Returning skips the process.exit below; the process ends once everything is closed.
      process.exitCode = exitCode;
      return;
    }

    /** Per developer: temporary secrets created and not yet deleted, oldest first. */
    const temporary: string[][] = Array.from({ length: DEVELOPERS }, () => []);
    let tmpCounter = 0;
    let inFlight = 0;
    let interval = newInterval();
    const totals = { calls: 0, unexpected: 0, notFound: 0, skipped: 0 };
    const unexpectedCodes = new Map<string, number>();

    /** One call of the mix; the weights add up to 100. */
    const oneCall = async () => {
      const d = Math.floor(random() * DEVELOPERS);
      const token = tokens[d] as string;
      const roll = random() * 100;
      let method: string;
      let request: unknown;
      let expectNotFound = false;
      let onOk: (() => void) | undefined;
      if (roll < 48) [method, request] = ["accessSecret", { name: pick(hot) }];
      else if (roll < 58) {
        const names = new Set(Array.from({ length: 5 }, () => pick(hot)));
        [method, request] = ["resolveSecrets", { names: [...names] }];
      } else if (roll < 65) [method, request] = ["getSecret", { name: pick(hot) }];
      else if (roll < 69) [method, request] = ["listSecrets", { pageSize: 50, metadataFilter: random() < 0.5 ? { team: `t${d % 3}` } : {} }];
      else if (roll < 71) [method, request] = ["listSecretVersions", { name: pick(hot), pageSize: 10 }];
      else if (roll < 73) {
        [method, request] = ["accessSecret", { name: `missing_${Math.floor(random() * 1_000)}` }];
        expectNotFound = true;
      } else if (roll < 88) [method, request] = ["updateSecret", { name: pick(hot), value: value() }];
      else {
        const queue = temporary[d] as string[];
        // Creates and deletes balance, so the number of live secrets stays steady.
        if (roll < 94 || queue.length === 0) {
          const name = `tmp_${tmpCounter++}`;
          [method, request] = ["createSecret", { name, value: value(), description: "soak" }];
          onOk = () => queue.push(name);
        } else [method, request] = ["deleteSecret", { name: queue.shift() as string }];
      }
      const started = performance.now();
      const code = await call(client as Client, method, request, token);
      interval.latenciesMs.push(performance.now() - started);
      interval.calls += 1;
      if (code === grpc.status.OK && !expectNotFound) onOk?.();
      else if (code === grpc.status.NOT_FOUND && expectNotFound) interval.notFound += 1;
      else {
        interval.unexpected += 1;
        const key = `${method}: ${grpc.status[code]}`;
        unexpectedCodes.set(key, (unexpectedCodes.get(key) ?? 0) + 1);
      }
    };

    // Open loop: a steady schedule of RATE calls/s, whatever the latency; calls
    // beyond MAX_IN_FLIGHT are skipped (and counted), never queued without bound.
    const durationMs = MINUTES * 60_000;
    const maxCalls = Math.ceil(RATE * (durationMs / 1000) * 1.01);
    const started = performance.now();
    let issued = 0;
    const samples: { t: number; server: ServerSample; interval: Interval }[] = [];
    const head = ["t (s)", "RSS MB", "heap used MB", "heap total MB", "external MB", "calls/s", "p50 ms", "p99 ms", "errors", "skipped", "audit queue", "DEKs", "CPU %"];
    const widths = [6, 7, 12, 13, 11, 8, 7, 7, 7, 8, 11, 5, 6];
    const row = (cells: string[]) => cells.map((c, i) => c.padStart(widths[i] as number)).join("  ");
    console.log(`\n${row(head)}`);
    let lastSampleAt = started;
    const first = await sampleServer(server);
    let lastCpu = first.cpuSeconds;
    samples.push({ t: 0, server: first, interval: newInterval() });
    console.log(row(["0", mb(first.rssBytes), mb(first.heapUsedBytes), mb(first.heapTotalBytes), mb(first.externalBytes), "-", "-", "-", "-", "-", String(first.auditQueue), String(first.dekCache), "-"]));

    /** Sample the server, close the client's interval, print a row. */
    const takeSample = async () => {
      const now = performance.now();
      const s = await sampleServer(server as Server);
      const seconds = (now - lastSampleAt) / 1000;
      const cpuPercent = ((s.cpuSeconds - lastCpu) / seconds) * 100;
      lastCpu = s.cpuSeconds;
      lastSampleAt = now;
      const done = interval;
      interval = newInterval();
      const elapsed = now - started;
      samples.push({ t: elapsed / 1000, server: s, interval: done });
      totals.calls += done.calls;
      totals.unexpected += done.unexpected;
      totals.notFound += done.notFound;
      totals.skipped += done.skipped;
      console.log(
        row([
          (elapsed / 1000).toFixed(0),
          mb(s.rssBytes),
          mb(s.heapUsedBytes),
          mb(s.heapTotalBytes),
          mb(s.externalBytes),
          (done.calls / seconds).toFixed(0),
          percentile(done.latenciesMs, 50).toFixed(1),
          percentile(done.latenciesMs, 99).toFixed(1),
          String(done.unexpected),
          String(done.skipped),
          String(s.auditQueue),
          String(s.dekCache),
          cpuPercent.toFixed(0),
        ]),
      );
    };

    const pending = new Set<Promise<void>>();
    while (!interrupted) {
      const now = performance.now();
      const elapsed = now - started;
      if (elapsed >= durationMs || issued >= maxCalls) break;
      const due = Math.min(maxCalls, Math.floor((elapsed / 1000) * RATE)) - issued;
      for (let i = 0; i < due; i++) {
        issued += 1;
        if (inFlight >= MAX_IN_FLIGHT) {
          interval.skipped += 1;
          continue;
        }
        inFlight += 1;
        const p = oneCall().finally(() => {
          inFlight -= 1;
          pending.delete(p);
        });
        pending.add(p);
      }
      if (now - lastSampleAt >= SAMPLE_SECONDS * 1000) await takeSample();
      await new Promise((r) => setTimeout(r, TICK_MS));
    }
    await Promise.all(pending);
    const elapsedS = (performance.now() - started) / 1000;
    await takeSample();

    // Verdict. RSS follows the garbage collector's sawtooth (tens of MB at this
    // rate), so single samples say little: compare the median RSS of the last third
    // with that of the middle third. A leak shows as a higher plateau (growth of
    // about leak rate × a third of the run); a level series as ±noise. The least-
    // squares slope over the last two thirds is printed alongside.
    const series = samples.map((s) => ({ t: s.t, rss: s.server.rssBytes, heap: s.server.heapUsedBytes }));
    const end = series.at(-1)?.t ?? 0;
    const middleThird = series.filter((s) => s.t >= end / 3 && s.t < (2 * end) / 3);
    const last = series.filter((s) => s.t >= (2 * end) / 3);
    const middleRss = median(middleThird.map((s) => s.rss));
    const lastRss = median(last.map((s) => s.rss));
    const growthPercent = ((lastRss - middleRss) / middleRss) * 100;
    const slopeMbPerMin = slope(series.filter((s) => s.t >= end / 3).map((s) => [s.t / 60, s.rss / 1_048_576]));
    const heapSlopeMbPerMin = slope(series.filter((s) => s.t >= end / 3).map((s) => [s.t / 60, s.heap / 1_048_576]));
    const peak = Math.max(...series.map((s) => s.rss));
    const achieved = totals.calls / elapsedS;
    const levelsOff = middleThird.length >= 3 && last.length >= 3 && growthPercent < MAX_GROWTH_PERCENT;
    const rateHeld = achieved >= RATE * 0.95 && totals.skipped === 0;

    console.log(`\ncalls: ${totals.calls} in ${elapsedS.toFixed(0)} s (${achieved.toFixed(0)}/s of ${RATE}/s asked), ` + `${totals.notFound} expected NOT_FOUND, ${totals.unexpected} unexpected errors, ${totals.skipped} skipped (over ${MAX_IN_FLIGHT} in flight)`);
    if (unexpectedCodes.size > 0) console.log(`unexpected: ${[...unexpectedCodes].map(([k, n]) => `${k} ×${n}`).join(", ")}`);
    console.log(
      `RSS: ${mb(series[0]?.rss ?? NaN)} MB at start; median ${mb(middleRss)} MB over the middle third, ${mb(lastRss)} MB over the last third ` +
        `(growth ${growthPercent.toFixed(1)} %); peak ${mb(peak)} MB; trend over the last two thirds ${slopeMbPerMin.toFixed(2)} MB/min ` +
        `(heap used ${heapSlopeMbPerMin.toFixed(2)} MB/min)`,
    );
    const memoryVerdict =
      middleThird.length < 3 || last.length < 3
        ? "NO VERDICT (fewer than 3 samples in a third: run longer or sample more often)"
        : `${levelsOff ? "LEVELS OFF" : "DOES NOT LEVEL OFF"} (median RSS of the last third ${growthPercent.toFixed(1)} % above the middle third's, limit ${MAX_GROWTH_PERCENT} %)`;
    console.log(
      `verdict: RSS ${memoryVerdict}; ` +
        `rate ${rateHeld ? "held" : "NOT held"}; ${totals.unexpected === 0 ? "no unexpected errors" : `${totals.unexpected} UNEXPECTED ERRORS`}`,
    );
    exitCode = levelsOff && rateHeld && totals.unexpected === 0 && !interrupted ? 0 : 1;
    keepLog = exitCode !== 0;
  } finally {
    client?.close();
    if (server) {
      if (server.child.exitCode === null) server.child.kill("SIGTERM");
      const code = await Promise.race([server.exited, new Promise((r) => setTimeout(() => r("still running 20 s after SIGTERM"), 20_000))]);
      if (code !== 0) {
        console.log(`server exit: ${String(code)}`);
        server.child.kill("SIGKILL");
        keepLog = true;
      }
      if (keepLog) console.log(`server log kept: ${server.logFile}`);
      else rmSync(server.logFile, { force: true });
    }
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`).catch((e: unknown) => console.error(`could not drop ${dbName}:`, e));
    await admin.end();
    process.off("SIGINT", onSigint);
  }
  process.exit(exitCode);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
