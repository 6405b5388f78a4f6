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
import { developerPrefix } from "../src/cache/secret-cache.js";
import { openPostgres } from "../src/store/pg-db.js";
import { migrate } from "../src/store/migrate.js";
import { seedSecrets } from "./seed.js";
import type { WorkerResult, WorkerTask } from "./worker.js";

/**
 * `npm run bench [-- --quick] [-- --profile]`: the service's speed, measured as a
 * user would meet it. Starts two server processes from the build (one with the
 * Redis cache, one with no value cache) on a fresh Postgres database, drives them
 * from separate client processes over loopback, and reports, per phase and at 1
 * and 64 calls in flight: calls/s, p50, p99, each as a ratio to the ceiling (an
 * empty Health/Check on the same server, measured in the same run), and the
 * server's own CPU per call (process.cpuUsage, read from its /metrics) as a ratio
 * to the ceiling's. Ratios, not absolute figures, are what compare across runs on
 * a shared machine. Ends by scanning Redis for any seeded value in the clear.
 * `--profile` runs the cache server under `node --cpu-prof` (profiles in
 * bench/results/profiles/; summarize with `node .bench-build/bench/profile-summary.js FILE`).
 */

const here = dirname(fileURLToPath(import.meta.url));
const ROOT = join(here, "..", "..");
const MAIN = join(ROOT, "dist", "main.js");

const argv = process.argv.slice(2);
const args = new Set(argv);
const QUICK = args.has("--quick");
const PROFILE = args.has("--profile");
/** `--only TEXT`: run only the phases whose name contains TEXT (and the ceilings), e.g. to profile one path. */
const ONLY = argv.includes("--only") ? argv[argv.indexOf("--only") + 1] : undefined;
const PHASE_MS = QUICK ? 1_500 : 5_000;
const WARMUP_MS = QUICK ? 300 : 1_000;
const MAX_CALLS = 2_000_000;
const ADMIN_URL = process.env["DATABASE_URL"] ?? "postgres://postgres@127.0.0.1:5432/postgres";
const REDIS_URL = process.env["REDIS_URL"] ?? "redis://127.0.0.1:6379";
const LARGE_SEED = QUICK ? 0 : 100_000;

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
  rssMb: number;
  /** Secrets delivered per call (ResolveSecrets: 10). */
  secretsPerCall: number;
  ratio?: { throughput: number; p50: number; p99: number; cpu: number };
}

function startServer(name: string, env: Record<string, string>): Promise<Server> {
  const logFile = join(tmpdir(), `secrets-bench-${name}-${process.pid}.log`);
  const fd = openSync(logFile, "w");
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(([k]) => !k.startsWith("SECRETS_") && k !== "DATABASE_URL" && k !== "REDIS_URL"),
  );
  const nodeArgs = PROFILE && name === "cache" ? ["--cpu-prof", `--cpu-prof-dir=${join(ROOT, "bench", "results", "profiles")}`] : [];
  const child = spawn(process.execPath, [...nodeArgs, MAIN], {
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
      if (m) return resolve({ name, child, address: `127.0.0.1:${m[1]}`, metrics: `http://127.0.0.1:${m[2]}/metrics`, logFile });
      if (child.exitCode !== null || Date.now() > deadline) return reject(new Error(`server ${name} did not start:\n${text.slice(-2000)}`));
      setTimeout(poll, 50);
    };
    poll();
  });
}

async function serverStats(server: Server): Promise<{ cpuSeconds: number; rssBytes: number }> {
  const text = await (await fetch(server.metrics)).text();
  const read = (metric: string) => Number(text.match(new RegExp(`^${metric} ([0-9.e+-]+)`, "m"))?.[1] ?? NaN);
  return { cpuSeconds: read("process_cpu_seconds_total"), rssBytes: read("process_resident_memory_bytes") };
}

function runWorker(task: WorkerTask): Promise<WorkerResult> {
  return new Promise((resolve, reject) => {
    const child = fork(join(here, "worker.js"), [], { stdio: ["ignore", "inherit", "inherit", "ipc"] });
    child.once("message", (m) => resolve(m as WorkerResult));
    child.once("error", reject);
    child.once("exit", (code) => (code !== 0 ? reject(new Error(`worker exited ${code}`)) : undefined));
    child.send(task);
  });
}

function percentile(sorted: number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}

interface PhaseSpec {
  phase: string;
  server: Server;
  service: WorkerTask["service"];
  method: string;
  requests: unknown[];
  token?: string;
  secretsPerCall?: number;
}

let counterBase = 0;

async function runPhase(spec: PhaseSpec, inFlight: number): Promise<PhaseResult> {
  const workers = inFlight === 1 ? 1 : 2;
  const before = await serverStats(spec.server);
  const results = await Promise.all(
    Array.from({ length: workers }, (_, w) =>
      runWorker({
        address: spec.server.address,
        service: spec.service,
        method: spec.method,
        requests: spec.requests,
        ...(spec.token ? { token: spec.token } : {}),
        inFlight: inFlight / workers,
        warmupMs: WARMUP_MS,
        durationMs: PHASE_MS,
        maxCalls: MAX_CALLS,
        counterBase: (counterBase += 10_000_000) + w * 1_000_000,
      }),
    ),
  );
  const after = await serverStats(spec.server);
  const latencies = results.flatMap((r) => r.latenciesUs).sort((a, b) => a - b);
  const calls = results.reduce((n, r) => n + r.calls, 0);
  const errors = results.reduce((n, r) => n + r.errors, 0);
  const firstError = results.find((r) => r.firstError)?.firstError;
  if (errors > 0) console.error(`  ${spec.phase} x${inFlight}: ${errors} errors, first: ${firstError}`);
  const seconds = Math.max(...results.map((r) => r.elapsedMs)) / 1000;
  // The CPU window includes the warm-up; count the calls made in it too, by rate.
  const windowCalls = calls * ((PHASE_MS + WARMUP_MS) / PHASE_MS);
  return {
    phase: spec.phase,
    server: spec.server.name,
    inFlight,
    calls,
    errors,
    callsPerSecond: calls / seconds,
    p50Us: percentile(latencies, 50),
    p99Us: percentile(latencies, 99),
    cpuUsPerCall: ((after.cpuSeconds - before.cpuSeconds) * 1e6) / windowCalls,
    rssMb: after.rssBytes / 2 ** 20,
    secretsPerCall: spec.secretsPerCall ?? 1,
  };
}

function table(rows: PhaseResult[]): string {
  const head = ["phase", "in flight", "calls/s", "secrets/s", "p50 µs", "p99 µs", "× ceiling calls/s", "× ceiling p99", "CPU µs/call", "× ceiling CPU", "RSS MB", "errors"];
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
    r.rssMb.toFixed(0),
    String(r.errors),
  ]);
  const widths = head.map((h, i) => Math.max(h.length, ...body.map((b) => (b[i] as string).length)));
  const line = (cells: string[]) => `| ${cells.map((c, i) => c.padEnd(widths[i] as number)).join(" | ")} |`;
  return [line(head), `|${widths.map((w) => "-".repeat(w + 2)).join("|")}|`, ...body.map(line)].join("\n");
}

async function main(): Promise<void> {
  const started = Date.now();
  const dbName = `secrets_bench_${Date.now()}_${process.pid}`;
  const admin = new pg.Client({ connectionString: ADMIN_URL });
  await admin.connect();
  await admin.query(`CREATE DATABASE ${dbName}`);
  const dbUrl = new URL(ADMIN_URL);
  dbUrl.pathname = `/${dbName}`;
  const masterKeys = `k1:${randomBytes(32).toString("base64")}`;
  const jwtSecret = randomBytes(32).toString("base64url");
  const servers: Server[] = [];
  const developers = { hit: `bench-hit-${process.pid}`, small: `bench-1k-${process.pid}`, large: `bench-100k-${process.pid}`, writes: `bench-w-${process.pid}` };
  const seededValue = (dev: string, i: number) => `bench-value-${dev}-${i}-${"x".repeat(24)}`;
  let exitCode = 0;

  try {
    const db = await openPostgres(dbUrl.toString(), { maxConnections: 4 });
    await migrate(db);
    console.log(`seeding (1,000${LARGE_SEED ? ` and ${LARGE_SEED.toLocaleString("en")}` : ""} secrets, directly through the store)…`);
    await seedSecrets(db, masterKeys, developers.small, 1_000, (i) => seededValue(developers.small, i), (i) => `secret_${i}`);
    if (LARGE_SEED) await seedSecrets(db, masterKeys, developers.large, LARGE_SEED, (i) => seededValue(developers.large, i), (i) => `secret_${i}`);
    await db.close();

    const common = { DATABASE_URL: dbUrl.toString(), SECRETS_MASTER_KEYS: masterKeys, SECRETS_JWT_SECRET: jwtSecret };
    servers.push(await startServer("cache", { ...common, REDIS_URL }));
    servers.push(await startServer("nocache", common));
    servers.push(await startServer("strict", { ...common, REDIS_URL, SECRETS_AUDIT_STRICT: "1" }));
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

    // Ten secrets for the hit and resolve phases, created through the API.
    const setup = await runWorker({
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
    await runWorker({
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
      { phase: "CreateSecret", server: cached, service: "secrets", method: "createSecret", requests: [{ name: "new_{n}", value: "bench-created-value-{n}" }], token: tokens.writes },
      { phase: "UpdateSecret (new value)", server: cached, service: "secrets", method: "updateSecret", requests: Array.from({ length: 20 }, (_, i) => ({ name: `upd_${i}`, value: "bench-updated-value-{n}" })), token: tokens.writes },
      { phase: "ceiling: Health/Check (no-cache server)", server: uncached, service: "health", method: "check", requests: [{}] },
      { phase: "AccessSecret, cache off", server: uncached, service: "secrets", method: "accessSecret", requests: tenNames.map((name) => ({ name })), token: tokens.hit },
      { phase: "AccessSecret, 1,000 stored, cache off", server: uncached, service: "secrets", method: "accessSecret", requests: sampleNames(1_000), token: tokens.small },
    ];
    specs.push(
      { phase: "ceiling: Health/Check (strict-audit server)", server: strict, service: "health", method: "check", requests: [{}] },
      { phase: "AccessSecret, cache hit, SECRETS_AUDIT_STRICT=1", server: strict, service: "secrets", method: "accessSecret", requests: tenNames.map((name) => ({ name })), token: tokens.hit },
    );
    if (LARGE_SEED) {
      specs.push({ phase: "AccessSecret, 100,000 stored, cache off", server: uncached, service: "secrets", method: "accessSecret", requests: sampleNames(LARGE_SEED), token: tokens.large });
    }

    const results: PhaseResult[] = [];
    for (const spec of specs.filter((s) => !ONLY || s.phase.startsWith("ceiling") || s.phase.includes(ONLY))) {
      for (const inFlight of [1, 64]) {
        process.stdout.write(`  ${spec.phase} at ${inFlight} in flight… `);
        const r = await runPhase(spec, inFlight);
        results.push(r);
        console.log(`${r.callsPerSecond.toFixed(0)} calls/s`);
        if (r.errors > 0) exitCode = 1;
      }
    }
    for (const r of results) {
      const ceiling = results.find((c) => c.phase.startsWith("ceiling") && c.server === r.server && c.inFlight === r.inFlight);
      if (ceiling) {
        r.ratio = {
          throughput: r.callsPerSecond / ceiling.callsPerSecond,
          p50: r.p50Us / ceiling.p50Us,
          p99: r.p99Us / ceiling.p99Us,
          cpu: r.cpuUsPerCall / ceiling.cpuUsPerCall,
        };
      }
    }

    // Redis must hold none of the seeded values in the clear.
    const redis = new Redis(REDIS_URL);
    let scanned = 0;
    const leaks: string[] = [];
    try {
      for (const dev of Object.values(developers)) {
        const prefix = developerPrefix(dev);
        const benchKeys: string[] = [];
        let cursor = "0";
        do {
          const [next, keys] = await redis.scan(cursor, "MATCH", `${prefix}*`, "COUNT", 1000);
          benchKeys.push(...keys);
          for (const key of keys) {
            scanned += 1;
            const value = (await redis.getBuffer(key)) ?? Buffer.alloc(0);
            for (let i = 0; i < 10; i++) if (value.includes(seededValue(developers.hit, i))) leaks.push(key);
            if (value.includes("bench-value-") || value.includes("bench-updated-value-") || value.includes("bench-created-value-")) leaks.push(key);
          }
          cursor = next;
        } while (cursor !== "0");
        // Leave the shared Redis as it was.
        for (let i = 0; i < benchKeys.length; i += 500) await redis.unlink(...benchKeys.slice(i, i + 500));
      }
    } finally {
      redis.disconnect();
    }
    if (leaks.length > 0) exitCode = 1;

    const hit = (n: number) => results.find((r) => r.phase === "AccessSecret, cache hit" && r.inFlight === n);
    const off = (n: number) => results.find((r) => r.phase === "AccessSecret, cache off" && r.inFlight === n);
    const resolve = (n: number) => results.find((r) => r.phase.startsWith("ResolveSecrets") && r.inFlight === n);
    const small = results.find((r) => r.phase.includes("1,000 stored") && r.inFlight === 1);
    const large = results.find((r) => r.phase.includes("100,000 stored") && r.inFlight === 1);
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
    ] as const;

    const report = {
      when: new Date().toISOString(),
      quick: QUICK,
      phaseSeconds: PHASE_MS / 1000,
      machine: { cpus: (await import("node:os")).cpus().length, node: process.version },
      results,
      targets: targets.map(([name, value, bound, op]) => ({
        name,
        value,
        bound,
        holds: value === undefined ? null : op === ">=" ? value >= bound : value <= bound,
      })),
      redisScan: { keys: scanned, plaintextValuesFound: leaks.length },
    };
    console.log(`\n${table(results)}\n`);
    for (const t of report.targets) {
      console.log(`${t.holds === null ? "n/a " : t.holds ? "HOLDS" : "MISSES"}  ${t.name}: ${t.value === undefined ? "not measured" : (t.value as number).toFixed(2)}`);
    }
    console.log(`\nRedis after the run: ${scanned} keys of the bench's developers scanned, ${leaks.length} holding a seeded value in the clear.`);
    const outDir = join(ROOT, "bench", "results");
    mkdirSync(outDir, { recursive: true });
    const outFile = join(outDir, `${QUICK ? "quick" : "full"}-${report.when.replace(/[:.]/g, "-")}.json`);
    writeFileSync(outFile, `${JSON.stringify(report, null, 2)}\n`);
    console.log(`results: ${outFile} (${((Date.now() - started) / 1000).toFixed(0)} s)`);
  } finally {
    for (const s of servers) s.child.kill("SIGTERM");
    await Promise.all(servers.map((s) => (s.child.exitCode !== null ? undefined : new Promise((r) => s.child.once("exit", r)))));
    for (const s of servers) rmSync(s.logFile, { force: true });
    await admin.query(`DROP DATABASE IF EXISTS ${dbName} WITH (FORCE)`);
    await admin.end();
  }
  process.exit(exitCode);
}

main().catch((e: unknown) => {
  console.error(e);
  process.exit(1);
});
