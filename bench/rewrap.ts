import { readFileSync, statSync } from "node:fs";
import { setTimeout as sleep } from "node:timers/promises";
import * as grpc from "@grpc/grpc-js";
import { create, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { KeyBytes } from "../src/crypto/key-bytes.js";
import { createLocalKeyProvider, parseKeyring, type KeyProvider } from "../src/crypto/key-provider.js";
import { KeyService } from "../src/api/gen/secrets/v1/keys_pb.js";
import { serviceDefinition } from "../src/server/grpc-adapter.js";
import type { Db } from "../src/store/db.js";
import { summarizeProgress, type ProgressSample, type RewrapProgress } from "./rewrap-progress.js";
import { percentile } from "./stats.js";
import type { WorkerResult, WorkerTask } from "./worker.js";

/**
 * The bench's "master-key rewrap" phase: how fast the replicas' key job moves every
 * data key under a new master key, and what that costs the reads served meanwhile.
 *
 * It inserts `dataKeys` data keys straight into Postgres, each a fresh random key
 * genuinely wrapped under the active master key (so the servers can unwrap them),
 * for developers `bench-rewrap-NNNNNN` that own no secrets. It keeps reads going
 * (one kind per worker process) for a while, then keeps the same reads going while it
 * calls KeyService.RotateMasterKey to the keyring's other master key and polls, until
 * every data key is under it, both GetKeyStatus's `data_keys_to_rewrap` and Postgres's
 * own count (see rewrap-progress.ts). The rate is RotateMasterKey's
 * `data_keys_to_rewrap` over the time from its return to that poll. Afterwards it
 * asks every replica for its key status, watches the count stay at 0 for a moment,
 * checks a sample of the data keys still open (under the new master key) to the bytes
 * that were seeded, and counts the rewraps each replica logged. Bounded: after
 * `deadlineMs` it stops and reports that the rewrap did not finish. The seeded rows
 * are deleted at the end, whatever happened.
 *
 * The active master key stays the new one afterwards, so the bench runs this phase
 * after every other.
 */

export const REWRAP_PHASE = "master-key rewrap";
/** Issue 17's target for the rewrap. */
export const REWRAP_TARGET = { name: "rewrap ≥ 5,000 data keys/s while serving reads", keysPerSecond: 5_000 } as const;
const DEVELOPER_PREFIX = "bench-rewrap-";
/** Rows per INSERT while seeding. */
const SEED_BATCH = 5_000;
/** Data keys whose bytes are kept to check after the rewrap. */
const SAMPLES = 100;
/**
 * Reads run in segments this long (each worker sends its latencies at the end of one,
 * so no message grows large), cut short when the window ends. Few boundaries: at each,
 * the calls in flight drain before the next segment starts.
 */
const SEGMENT_MS = 5_000;
const MAX_CALLS_PER_SEGMENT = 2_000_000;
const POSTGRES_LEFT = "SELECT count(*) AS n FROM data_keys WHERE kek_id <> $1 AND state <> 'retired'";

/** The bench's client processes, as far as this phase uses them. */
export interface ReadLoad {
  run(i: number, task: WorkerTask): Promise<WorkerResult>;
  /** Ends worker `i`'s running task early (WorkerStop). */
  stop(i: number): void;
}

/** One kind of read, driven by one worker process before and during the rewrap. */
export interface RewrapRead {
  phase: string;
  server: string;
  /** The task without its timing, which the phase sets. */
  task: Omit<WorkerTask, "warmupMs" | "durationMs" | "maxCalls" | "counterBase">;
}

export interface RewrapOptions {
  /** The bench's database (the servers'). */
  db: Db;
  /** The keyring text the servers were given; it must hold a second master key. */
  keyring: string;
  dataKeys: number;
  /** The server RotateMasterKey and the polled GetKeyStatus go to, and an operator token. */
  operator: { address: string; token: string };
  /** Every server process sharing the database: each runs the key job. */
  replicas: { name: string; address: string; logFile: string }[];
  load: ReadLoad;
  /** `reads[i]` runs on worker `i`. */
  reads: RewrapRead[];
  warmupMs: number;
  beforeMs: number;
  pollMs: number;
  deadlineMs: number;
  /** How long the count is watched after the rewrap is done (keys moved back under the old master key show here). */
  settleMs: number;
  /** The key job's settings the servers run with (SECRETS_KEY_JOB_BATCH, SECRETS_KEY_JOB_PAUSE_MS). */
  keyJob: { batch: number; pauseMs: number };
  log: (line: string) => void;
}

export interface ReadFigures {
  calls: number;
  errors: number;
  firstError?: string;
  seconds: number;
  callsPerSecond: number;
  p50Us: number;
  p99Us: number;
}

export interface RewrapReadResult {
  phase: string;
  server: string;
  inFlight: number;
  before: ReadFigures;
  during: ReadFigures;
  /** During ÷ before. */
  ratio: { p50: number; p99: number; throughput: number };
}

export interface RewrapReport {
  phase: string;
  dataKeysSeeded: number;
  seedSeconds: number;
  fromKekId: string;
  toKekId: string;
  /** RotateMasterKey's `data_keys_to_rewrap`: what the rate counts. */
  dataKeysToRewrap: number;
  rotateCallMs: number;
  pollMs: number;
  polls: number;
  pollErrors: number;
  firstPollError?: string;
  deadlineSeconds: number;
  progress: RewrapProgress;
  /** Each replica's GetKeyStatus right after the rewrap was done (or the deadline passed). */
  replicasAfter: { name: string; activeMasterKeyId: string | undefined; dataKeysToRewrap: number | undefined; error?: string }[];
  /** Over `settleMs` after: the highest Postgres count of keys not under the new master key (0: none moved back). */
  settle: { seconds: number; maxLeft: number | undefined };
  /** Sampled seeded data keys: how many are under the new master key, and how many open to their seeded bytes. */
  verified: { sampled: number; underNewKey: number; matching: number };
  /** Data keys each replica's key job logged as rewrapped during the phase ("key job pass" lines: a pass logs when it ends). */
  rewrapsLogged: Record<string, number>;
  keyJob: { batch: number; pauseMs: number; replicas: number };
  reads: RewrapReadResult[];
}

/** Whether the phase found something wrong rather than slow: failed reads, an unfinished rewrap, a damaged key. */
export function rewrapFailed(r: RewrapReport): boolean {
  return !r.progress.finished || r.verified.matching < r.verified.sampled || r.reads.some((x) => x.before.errors + x.during.errors > 0);
}

export async function measureRewrap(o: RewrapOptions): Promise<RewrapReport> {
  const provider = createLocalKeyProvider(parseKeyring(o.keyring));
  const keys = keyClient(o.operator.address);
  const seeded = new Map<string, { version: number; key: KeyBytes }>();
  try {
    const fromKekId = await activeMasterKey(o.db);
    const toKekId = provider.keyIds().find((id) => id !== fromKekId);
    if (toKekId === undefined) throw new Error("the servers' keyring holds no master key besides the active one");
    await deleteSeeded(o.db);

    const seedStarted = performance.now();
    await seedDataKeys(o.db, provider, fromKekId, o.dataKeys, seeded);
    const seedSeconds = (performance.now() - seedStarted) / 1000;
    o.log(`  seeded ${o.dataKeys.toLocaleString("en")} data keys under ${fromKekId} in ${seedSeconds.toFixed(1)} s`);

    await startReads(o, o.warmupMs).stop();
    const before = await startReads(o, o.beforeMs).stop();
    const logOffsets = o.replicas.map((r) => statSync(r.logFile).size);

    const during = startReads(o);
    const samples: ProgressSample[] = [];
    let pollErrors = 0;
    let firstPollError: string | undefined;
    const failed = (e: unknown) => {
      pollErrors += 1;
      firstPollError ??= e instanceof Error ? e.message : String(e);
      return undefined;
    };
    let rotated: MessageShape<typeof KeyService.method.rotateMasterKey.output>;
    let rotateCallMs: number;
    let duringTotals: ReadTotals[];
    try {
      const calledAt = performance.now();
      rotated = await keys.call("rotateMasterKey", { keyId: toKekId }, o.operator.token, 60_000);
      const returnedAt = performance.now();
      rotateCallMs = returnedAt - calledAt;
      o.log(`  RotateMasterKey ${fromKekId} → ${toKekId} returned in ${rotateCallMs.toFixed(0)} ms: ${rotated.dataKeysToRewrap} data keys to rewrap`);
      for (;;) {
        const tick = performance.now();
        const [status, postgres] = await Promise.all([
          keys.call("getKeyStatus", {}, o.operator.token, 10_000).then((r) => Number(r.dataKeysToRewrap), failed),
          o.db.query<{ n: number }>(POSTGRES_LEFT, [toKekId]).then((r) => r.rows[0]?.n, failed),
        ]);
        const atMs = performance.now() - returnedAt;
        samples.push({ atMs, status, postgres });
        if ((status === 0 && postgres === 0) || atMs >= o.deadlineMs) break;
        await sleep(Math.max(0, o.pollMs - (performance.now() - tick)));
      }
    } finally {
      duringTotals = await during.stop();
    }
    const toRewrap = Number(rotated.dataKeysToRewrap);
    const progress = summarizeProgress(samples, toRewrap);

    const replicasAfter = await Promise.all(
      o.replicas.map(async (r) => {
        const client = keyClient(r.address);
        try {
          const s = await client.call("getKeyStatus", {}, o.operator.token, 10_000);
          return { name: r.name, activeMasterKeyId: s.activeMasterKeyId, dataKeysToRewrap: Number(s.dataKeysToRewrap) };
        } catch (e) {
          return { name: r.name, activeMasterKeyId: undefined, dataKeysToRewrap: undefined, error: e instanceof Error ? e.message : String(e) };
        } finally {
          client.close();
        }
      }),
    );
    let maxLeft: number | undefined;
    const settleEnd = performance.now() + o.settleMs;
    while (performance.now() < settleEnd) {
      const n = (await o.db.query<{ n: number }>(POSTGRES_LEFT, [toKekId]).catch(failed))?.rows[0]?.n;
      if (n !== undefined) maxLeft = Math.max(maxLeft ?? 0, n);
      await sleep(o.pollMs);
    }
    const verified = await verifySamples(o.db, provider, toKekId, seeded);
    const rewrapsLogged = Object.fromEntries(o.replicas.map((r, i) => [r.name, rewrapsInLog(r.logFile, logOffsets[i] ?? 0)]));

    return {
      phase: REWRAP_PHASE,
      dataKeysSeeded: o.dataKeys,
      seedSeconds,
      fromKekId,
      toKekId,
      dataKeysToRewrap: toRewrap,
      rotateCallMs,
      pollMs: o.pollMs,
      polls: samples.length,
      pollErrors,
      ...(firstPollError ? { firstPollError } : {}),
      deadlineSeconds: o.deadlineMs / 1000,
      progress,
      replicasAfter,
      settle: { seconds: o.settleMs / 1000, maxLeft },
      verified,
      rewrapsLogged,
      keyJob: { ...o.keyJob, replicas: o.replicas.length },
      reads: o.reads.map((read, i) => {
        const b = figures(before[i]);
        const d = figures(duringTotals[i]);
        return {
          phase: read.phase,
          server: read.server,
          inFlight: read.task.inFlight,
          before: b,
          during: d,
          ratio: { p50: d.p50Us / b.p50Us, p99: d.p99Us / b.p99Us, throughput: d.callsPerSecond / b.callsPerSecond },
        };
      }),
    };
  } finally {
    keys.close();
    for (const s of seeded.values()) s.key.zeroize();
    provider.destroy();
    await deleteSeeded(o.db).catch((e: unknown) => o.log(`  could not delete the seeded data keys: ${String(e)}`));
  }
}

/** The report's lines: the rate, the cross-checks, and the reads before and during. */
export function describeRewrap(r: RewrapReport, table: (head: string[], body: string[][]) => string): string[] {
  const p = r.progress;
  const s = (ms: number | undefined) => `${((ms ?? NaN) / 1000).toFixed(2)} s`;
  const zero = (who: string, ms: number | undefined) => (ms === undefined ? `${who} never said 0` : `${who} said 0 at ${s(ms)}`);
  const n = (x: number) => x.toLocaleString("en");
  const logged = Object.values(r.rewrapsLogged).reduce((a, b) => a + b, 0);
  const lines = [
    `master-key rewrap (${r.fromKekId} → ${r.toKekId}, ${n(r.dataKeysSeeded)} data keys seeded; key job: ${r.keyJob.replicas} replicas, ` +
      `SECRETS_KEY_JOB_BATCH ${r.keyJob.batch}, SECRETS_KEY_JOB_PAUSE_MS ${r.keyJob.pauseMs}):`,
    p.finished
      ? `  ${n(r.dataKeysToRewrap)} data keys rewrapped in ${s(p.doneAtMs)} after RotateMasterKey returned (it took ${r.rotateCallMs.toFixed(0)} ms): ` +
        `${n(Math.round(p.keysPerSecond))} data keys/s`
      : `  DID NOT FINISH within ${r.deadlineSeconds} s: ${p.left === undefined ? "unknown" : n(p.left)} of ${n(r.dataKeysToRewrap)} left; ` +
        `at most ${n(Math.round(p.keysPerSecond))} data keys/s`,
    `  polled every ${r.pollMs} ms (${r.polls} polls, ${r.pollErrors} failed${r.firstPollError ? `, first: ${r.firstPollError}` : ""}): ` +
      `${zero("GetKeyStatus", p.statusZeroAtMs)}${p.postgresWhenStatusZero ? ` (but Postgres counted ${n(p.postgresWhenStatusZero)} in the same poll)` : ""}, ` +
      `${zero("Postgres", p.postgresZeroAtMs)}; its count rose by ${n(p.postgresRise)} in all (keys moved back under another master key)`,
    `  afterwards: ${r.replicasAfter
      .map((x) => `${x.name} says ${x.error ? `error (${x.error})` : `${x.activeMasterKeyId} active, ${x.dataKeysToRewrap} to rewrap`}`)
      .join("; ")}; ` +
      `over the next ${r.settle.seconds} s Postgres counted at most ${r.settle.maxLeft ?? "?"} not under ${r.toKekId}`,
    `  ${r.verified.matching} of ${r.verified.sampled} sampled data keys open to their seeded bytes (${r.verified.underNewKey} under ${r.toKekId}); ` +
      `rewraps logged by the replicas' finished key-job passes: ${n(logged)} for ${n(r.dataKeysToRewrap)} data keys (${Object.entries(r.rewrapsLogged)
        .map(([k, v]) => `${k} ${n(v)}`)
        .join(", ")})`,
    "",
    table(
      ["reads, just before and during the rewrap", "server", "in flight", "calls/s before", "during", "p50 µs before", "during", "× p50", "p99 µs before", "during", "× p99", "errors"],
      r.reads.map((x) => [
        x.phase,
        x.server,
        String(x.inFlight),
        x.before.callsPerSecond.toFixed(0),
        x.during.callsPerSecond.toFixed(0),
        x.before.p50Us.toFixed(0),
        x.during.p50Us.toFixed(0),
        x.ratio.p50.toFixed(2),
        x.before.p99Us.toFixed(0),
        x.during.p99Us.toFixed(0),
        x.ratio.p99.toFixed(2),
        String(x.before.errors + x.during.errors),
      ]),
    ),
  ];
  for (const x of r.reads) {
    const first = x.before.firstError ?? x.during.firstError;
    if (first) lines.push(`  ${x.phase}: first error: ${first}`);
  }
  return lines;
}

interface ReadTotals {
  calls: number;
  errors: number;
  firstError: string | undefined;
  /** From the start of the reads until the last call in flight returned. */
  seconds: number;
  latenciesUs: number[];
}

/**
 * Keeps every read going on its worker, in segments, until `stop`, or for `forMs`
 * and then stops.
 */
function startReads(o: RewrapOptions, forMs?: number): { stop(): Promise<ReadTotals[]> } {
  let stopping = false;
  const started = performance.now();
  const loops = o.reads.map(async (read, i) => {
    const totals: ReadTotals = { calls: 0, errors: 0, firstError: undefined, seconds: 0, latenciesUs: [] };
    while (!stopping) {
      const r = await o.load.run(i, { ...read.task, warmupMs: 0, durationMs: SEGMENT_MS, maxCalls: MAX_CALLS_PER_SEGMENT, counterBase: 0 });
      totals.calls += r.calls;
      totals.errors += r.errors;
      totals.firstError ??= r.firstError;
      for (const l of r.latenciesUs) totals.latenciesUs.push(l);
    }
    totals.seconds = (performance.now() - started) / 1000;
    return totals;
  });
  const stop = async () => {
    stopping = true;
    o.reads.forEach((_, i) => o.load.stop(i));
    return Promise.all(loops);
  };
  if (forMs === undefined) return { stop };
  const timed = sleep(forMs).then(stop);
  return { stop: () => timed };
}

function figures(t: ReadTotals | undefined): ReadFigures {
  const sorted = (t?.latenciesUs ?? []).sort((a, b) => a - b);
  const calls = t?.calls ?? 0;
  const seconds = t?.seconds ?? 0;
  return {
    calls,
    errors: t?.errors ?? 0,
    ...(t?.firstError ? { firstError: t.firstError } : {}),
    seconds,
    callsPerSecond: seconds > 0 ? calls / seconds : 0,
    p50Us: percentile(sorted, 50),
    p99Us: percentile(sorted, 99),
  };
}

async function activeMasterKey(db: Db): Promise<string> {
  const { rows } = await db.query<{ active_kek_id: string }>("SELECT active_kek_id FROM master_key_state WHERE singleton");
  const id = rows[0]?.active_kek_id;
  if (id === undefined) throw new Error("no active master key is recorded (no server has started on this database)");
  return id;
}

/**
 * Inserts `count` active data keys wrapped under `kekId`, one developer each, in
 * multi-row inserts. Versions come from the `data_key_version` sequence where the
 * schema has one (data key versions unique across developers), else 1. Keeps the
 * bytes of every `count / SAMPLES`-th key in `samples`.
 */
async function seedDataKeys(
  db: Db,
  provider: KeyProvider,
  kekId: string,
  count: number,
  samples: Map<string, { version: number; key: KeyBytes }>,
): Promise<void> {
  const { rows } = await db.query<{ seq: string | null }>("SELECT to_regclass('data_key_version')::text AS seq");
  const sequence = rows[0]?.seq != null;
  const sampleEvery = Math.max(1, Math.floor(count / SAMPLES));
  for (let start = 0; start < count; start += SEED_BATCH) {
    const n = Math.min(SEED_BATCH, count - start);
    const versions = sequence
      ? (await db.query<{ v: number }>("SELECT nextval('data_key_version') AS v FROM generate_series(1, $1)", [n])).rows.map((r) => r.v)
      : new Array<number>(n).fill(1);
    const developers: string[] = [];
    const wrapped: Buffer[] = [];
    for (let k = 0; k < n; k++) {
      const developerId = `${DEVELOPER_PREFIX}${String(start + k + 1).padStart(6, "0")}`;
      const version = versions[k] as number;
      const dek = KeyBytes.random(32);
      try {
        developers.push(developerId);
        wrapped.push(await provider.wrap(kekId, dek, { developerId, dekVersion: version }));
        if ((start + k) % sampleEvery === 0) samples.set(developerId, { version, key: KeyBytes.from(dek.exposeSecretBytes()) });
      } finally {
        dek.zeroize();
      }
    }
    await db.query(
      `INSERT INTO data_keys (developer_id, version, kek_id, wrapped_key, state, encryption_count)
       SELECT d, v, $1, w, 'active', 0 FROM unnest($2::text[], $3::int8[], $4::bytea[]) AS t(d, v, w)`,
      [kekId, developers, versions, wrapped],
    );
  }
  await db.query("ANALYZE data_keys");
}

async function verifySamples(
  db: Db,
  provider: KeyProvider,
  toKekId: string,
  samples: Map<string, { version: number; key: KeyBytes }>,
): Promise<RewrapReport["verified"]> {
  const { rows } = await db.query<{ developer_id: string; version: number; kek_id: string; wrapped_key: Buffer | null }>(
    "SELECT developer_id, version, kek_id, wrapped_key FROM data_keys WHERE developer_id = ANY($1::text[])",
    [[...samples.keys()]],
  );
  let underNewKey = 0;
  let matching = 0;
  for (const row of rows) {
    const seeded = samples.get(row.developer_id);
    if (!seeded || row.version !== seeded.version || row.wrapped_key === null) continue;
    if (row.kek_id === toKekId) underNewKey += 1;
    try {
      const key = await provider.unwrap(row.kek_id, row.wrapped_key, { developerId: row.developer_id, dekVersion: row.version });
      if (key.equals(seeded.key)) matching += 1;
      key.zeroize();
    } catch {
      // Counted as not matching: the key no longer opens.
    }
  }
  return { sampled: samples.size, underNewKey, matching };
}

function deleteSeeded(db: Db): Promise<unknown> {
  return db.query("DELETE FROM data_keys WHERE developer_id LIKE $1", [`${DEVELOPER_PREFIX}%`]);
}

/** Data keys a server logged as rewrapped (its key job's "key job pass" lines) after byte `offset` of its log. */
function rewrapsInLog(logFile: string, offset: number): number {
  let n = 0;
  for (const line of readFileSync(logFile).subarray(offset).toString("utf8").split("\n")) {
    if (!line.includes('"msg":"key job pass"')) continue;
    n += Number(line.match(/"rewrapped":(\d+)/)?.[1] ?? 0);
  }
  return n;
}

type KeyMethods = (typeof KeyService)["method"];

/** A small promise client for the KeyService calls the bench makes, over loopback. */
export function keyClient(address: string) {
  const Ctor = grpc.makeGenericClientConstructor(serviceDefinition(KeyService), KeyService.typeName);
  const raw = new Ctor(address, grpc.credentials.createInsecure(), {});
  return {
    call<K extends keyof KeyMethods>(
      name: K,
      request: MessageInitShape<KeyMethods[K]["input"]>,
      token: string,
      timeoutMs: number,
    ): Promise<MessageShape<KeyMethods[K]["output"]>> {
      const method = KeyService.method[name];
      const metadata = new grpc.Metadata();
      metadata.set("authorization", `Bearer ${token}`);
      const fn = (raw as unknown as Record<string, Function>)[method.localName] as Function;
      return new Promise((resolve, reject) =>
        fn.call(raw, create(method.input, request as never), metadata, { deadline: Date.now() + timeoutMs }, (err: grpc.ServiceError | null, res: unknown) =>
          err ? reject(new Error(`${method.name}: ${grpc.status[err.code]}: ${err.details}`)) : resolve(res as MessageShape<KeyMethods[K]["output"]>),
        ),
      );
    },
    close: () => raw.close(),
  };
}
