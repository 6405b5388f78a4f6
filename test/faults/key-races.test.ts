import { randomInt, randomUUID } from "node:crypto";
import { performance } from "node:perf_hooks";
import { status } from "@grpc/grpc-js";
import fc from "fast-check";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Scope } from "../../src/auth/principal.js";
import type { KeyService } from "../../src/api/gen/secrets/v1/keys_pb.js";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import type { Db, Queryable } from "../../src/store/db.js";
import { openPostgres } from "../../src/store/pg-db.js";
import { gatedDb, type GatedDb } from "../support/gated-db.js";
import {
  CallError,
  masterKey,
  NO_RATE_LIMITS,
  startReplicaCluster,
  startTestService,
  type LogCapture,
  type Replica,
  type ReplicaCluster,
  type TestClient,
  type TestService,
} from "../support/fixtures.js";
import { seededRandom, type SeededRandom } from "../support/seeded-random.js";
import { describeHistory, possibleFinalStates, type NameState, type ShredWindow, type WriteKind, type WriteRecord } from "../support/write-history.js";

// The race harness of issue 17: three server processes on one Postgres and one
// Redis. Each seeded round picks a fresh developer, pre-creates secrets, then runs
// writers (creates, updates, deletes; each writer owns its names, so a name's
// writes are sequential) on the replicas other than one, readers (AccessSecret,
// ResolveSecrets) on all three, and on that one replica ONE key operation:
// ShredDeveloper, RotateDeveloperKey or RotateMasterKey (k1 → k2 → k1 …). After
// the key jobs settle, it checks, on every replica and in Postgres:
//
// - no call answered a status `allowed` does not list (never INTERNAL or UNKNOWN);
// - each name holds what its acknowledged writes say, with a shred placed at any
//   instant inside its call (test/support/write-history.ts): an acknowledged write
//   is readable with its value on every replica, or the shred may have removed it;
// - an absent name can be created again and reads back on every replica;
// - ListSecrets lists exactly the readable names (no ghost);
// - developer_secret_counts matches the rows; every stored ciphertext names a data
//   key of its developer that still has its wrapped key; every secret has a
//   readable current version; master key rotation leaves every data key under the
//   new master key, and every replica's GetKeyStatus says so from when it returns.
//
// Replay a round: KEY_RACES_SEED=<seed>[,<seed>…] (printed with every failure). A
// seed fixes the round's choices (kind, replicas, delays, writes, reads), not the
// machine's timing, so a replay reproduces a race often, not always.
// Bounded: ROUNDS rounds within TOTAL_MS, each round's load within ROUND_LOAD_MS
// and a count of calls, the settle wait within SETTLE_MS. Traffic to 127.0.0.1 only.

const REPLICAS = 3;
const ROUNDS = 24;
const WRITERS = 4;
const READERS = 3;
const PRECREATED_PER_WRITER = 2;
const MAX_NAMES_PER_WRITER = 6;
const MAX_WRITES_PER_WRITER = 40;
/** Writes each writer still makes after the key operation returned (the writes a shred must not eat). */
const WRITES_AFTER_KEY_OP = 4;
const MAX_READS_PER_READER = 150;
const ROUND_LOAD_MS = 4_000;
const KEY_OP_MAX_DELAY_MS = 200;
const SETTLE_MS = 20_000;
const TOTAL_MS = 150_000;
/** Lines of detail per invariant per round in the failure message. */
const MAX_LINES = 6;

const KINDS = ["shred", "developer-key", "master-key"] as const;
type Kind = (typeof KINDS)[number];
type Method = "CreateSecret" | "UpdateSecret" | "DeleteSecret" | "AccessSecret" | "ResolveSecrets" | "ShredDeveloper" | "RotateDeveloperKey" | "RotateMasterKey";

/**
 * What a call may answer while a key operation races it, and why. Anything else
 * is a failure: INTERNAL and UNKNOWN above all, but also DEADLINE_EXCEEDED (a hang).
 *
 * - ABORTED, every call: a conflict (40001, 40P01) retried inside the service until it
 *   gave up (WRITE_CONFLICT); the caller may retry.
 * - UNAVAILABLE, every call: a backend refused (a write's Redis fence); nothing was
 *   committed. For ShredDeveloper: a replica did not confirm the eviction in time,
 *   the shred itself done.
 * - ALREADY_EXISTS on a create: the name is there after an earlier ambiguous answer.
 * - NOT_FOUND on an update, delete or read: the writer deleted it, or a shred did.
 *   On ShredDeveloper: DEVELOPER_NOT_FOUND, nothing was stored (it destroyed nothing).
 * - FAILED_PRECONDITION on a write racing a shred or a developer key rotation: the
 *   write was refused rather than sealed under a key that does not survive (issue
 *   17). On a read racing a shred: the key went with the secret. Not allowed in a
 *   master key round (a rewrap changes no data key), nor on the key operations
 *   (the developer has a data key; every replica holds both master keys).
 */
function allowed(method: Method, kind: Kind): ReadonlySet<status> {
  const racy = kind === "master-key" ? [] : [status.FAILED_PRECONDITION];
  const s = status;
  switch (method) {
    case "CreateSecret":
      return new Set([s.OK, s.ALREADY_EXISTS, s.ABORTED, s.UNAVAILABLE, ...racy]);
    case "UpdateSecret":
    case "DeleteSecret":
      return new Set([s.OK, s.NOT_FOUND, s.ABORTED, s.UNAVAILABLE, ...racy]);
    case "AccessSecret":
    case "ResolveSecrets":
      return new Set([s.OK, s.NOT_FOUND, s.ABORTED, s.UNAVAILABLE, ...(kind === "shred" ? racy : [])]);
    case "ShredDeveloper":
      return new Set([s.OK, s.NOT_FOUND, s.ABORTED, s.UNAVAILABLE]);
    case "RotateDeveloperKey":
    case "RotateMasterKey":
      return new Set([s.OK, s.ABORTED, s.UNAVAILABLE]);
  }
}

/** A round's seed fixes its kind, so a replayed seed runs the same key operation. */
function kindOf(seed: number): Kind {
  return KINDS[seed % KINDS.length] as Kind;
}

/** The seeds of this run: KEY_RACES_SEED's, or ROUNDS fresh ones cycling through the kinds. */
function roundSeeds(): number[] {
  const fixed = process.env["KEY_RACES_SEED"];
  if (fixed) {
    return fixed.split(",").map((s) => {
      const n = Number(s.trim());
      if (!Number.isInteger(n) || n < 0 || n > 0xffff_ffff) throw new Error(`KEY_RACES_SEED: ${s} is not a 32-bit seed`);
      return n;
    });
  }
  return Array.from({ length: ROUNDS }, (_, r) => randomInt(0, Math.floor(0xffff_ffff / KINDS.length)) * KINDS.length + (r % KINDS.length));
}

/** `p`, or a rejection once `ms` have passed (the timer cleared either way). */
async function within<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new Error(`${what} did not finish within ${ms} ms`)), ms);
  });
  try {
    return await Promise.race([p, timeout]);
  } finally {
    clearTimeout(timer);
  }
}

const hex = (seed: number) => `0x${seed.toString(16).padStart(8, "0")}`;
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** A call's answer: the status code (OK on success), and the error when it failed. */
interface Outcome<T> {
  code: status;
  value?: T;
  error?: CallError;
}

async function outcome<T>(p: Promise<T>): Promise<Outcome<T>> {
  try {
    return { code: status.OK, value: await p };
  } catch (e) {
    if (e instanceof CallError) return { code: e.code, error: e };
    throw e;
  }
}

/**
 * A failed answer in one line. An INTERNAL answer says only "internal error" and a
 * request id; Round.report adds the cause the replica logged for it.
 */
function describeError(o: Outcome<unknown>): string {
  if (!o.error) return status[o.code];
  const head = `${status[o.code]}${o.error.reason ? ` (${o.error.reason})` : ""}`;
  const requestId = REQUEST_ID.exec(o.error.details)?.[1];
  return requestId === undefined ? `${head}: ${o.error.details.slice(0, 160)}` : `${head}, request ${requestId}`;
}

const REQUEST_ID = /request id ([0-9a-f-]{36})/;

/** The RPC each kind of write is. */
const WRITE_METHOD = { create: "CreateSecret", update: "UpdateSecret", delete: "DeleteSecret" } as const satisfies Record<WriteKind, Method>;

/** Sends one write of `name` (`value` is unset for a delete) and returns its outcome. */
function sendWrite(client: TestClient<typeof SecretService>, kind: WriteKind, name: string, value: string | undefined, token: string): Promise<Outcome<unknown>> {
  return outcome<unknown>(
    kind === "create"
      ? client.createSecret({ name, value: value as string }, token)
      : kind === "update"
        ? client.updateSecret({ name, value: value as string }, token)
        : client.deleteSecret({ name }, token),
  );
}

/** `line` with each full request id shortened and followed by the cause a server logged for it. */
function withLoggedCauses(line: string, logs: readonly string[]): string {
  return line.replace(/request ([0-9a-f-]{36})/g, (_, id: string) => {
    const cause = loggedCause(logs, id);
    return `request ${id.slice(0, 8)}${cause === undefined ? "" : `, logged: ${cause}`}`;
  });
}

/** The error a server logged for a request id (its pino line's err.code and err.message), from any of the logs. */
function loggedCause(logs: readonly string[], requestId: string): string | undefined {
  for (const log of logs) {
    const at = log.indexOf(`"requestId":"${requestId}"`);
    if (at < 0) continue;
    const end = log.indexOf("\n", at);
    const line = log.slice(log.lastIndexOf("\n", at) + 1, end < 0 ? undefined : end);
    try {
      const err = (JSON.parse(line) as { err?: { code?: string; message?: string } }).err;
      if (err) return [err.code, err.message].filter(Boolean).join(" ").slice(0, 160);
    } catch {
      return undefined;
    }
  }
  return undefined;
}

/** One round's bookkeeping. */
class Round {
  readonly violations = new Map<string, string[]>();
  readonly histories = new Map<string, WriteRecord[]>();
  /** Every value ever sent for a name: a read may return only one of these. */
  readonly sent = new Map<string, Set<string>>();
  readonly codes = new Map<string, number>();
  readonly t0 = performance.now();
  keyOpDone = false;
  writersDone = false;
  shred: ShredWindow | undefined;
  keyOpLine = "";
  keyOpCode: status | undefined;

  constructor(
    readonly index: number,
    readonly seed: number,
    readonly kind: Kind,
    readonly developer: string,
  ) {}

  violation(invariant: string, line: string): void {
    const lines = this.violations.get(invariant) ?? [];
    lines.push(line);
    this.violations.set(invariant, lines);
  }

  /** Counts the answer and reports it when it is not allowed in this round. */
  answered(method: Method, replica: number, o: Outcome<unknown>, what: string): void {
    const key = `${method} ${status[o.code]}`;
    this.codes.set(key, (this.codes.get(key) ?? 0) + 1);
    if (!allowed(method, this.kind).has(o.code)) {
      this.violation(`disallowed status (INTERNAL, UNKNOWN, …)`, `${method} ${what} on replica ${replica}: ${describeError(o)}`);
    }
  }

  track(name: string): WriteRecord[] {
    let h = this.histories.get(name);
    if (!h) this.histories.set(name, (h = []));
    if (!this.sent.has(name)) this.sent.set(name, new Set());
    return h;
  }

  /** The failure message: which round, how to replay it, and what broke (with the servers' logs for causes). */
  report(logs: readonly string[]): string[] {
    return [...this.violations].map(([invariant, lines]) => {
      const shown = lines.slice(0, MAX_LINES).map((l) => `\n    - ${withLoggedCauses(l, logs)}`).join("");
      const more = lines.length > MAX_LINES ? `\n    … and ${lines.length - MAX_LINES} more` : "";
      return `round ${this.index} seed ${hex(this.seed)} (${this.kind}, replay: KEY_RACES_SEED=${hex(this.seed)}): ${invariant} ×${lines.length}${shown}${more}`;
    });
  }
}

/** Row-level invariants for one developer (or every developer), as lines describing each breach. */
async function rowInvariants(db: Queryable, developer?: string): Promise<string[]> {
  const sql = async <R>(text: string, params: unknown[]) => (await db.query<R>(text, params)).rows;
  const scope = developer === undefined ? "" : "AND x.developer_id = $1";
  const params = developer === undefined ? [] : [developer];
  const lines: string[] = [];
  const counts = await sql<{ developer_id: string; counted: number; actual: number }>(
    `SELECT x.developer_id, coalesce(c.secrets, 0) AS counted, coalesce(s.n, 0) AS actual
       FROM (SELECT developer_id FROM developer_secret_counts UNION SELECT developer_id FROM secrets) AS x
       LEFT JOIN developer_secret_counts c ON c.developer_id = x.developer_id
       LEFT JOIN (SELECT developer_id, count(*) AS n FROM secrets WHERE delete_time IS NULL GROUP BY developer_id) s ON s.developer_id = x.developer_id
      WHERE coalesce(c.secrets, 0) <> coalesce(s.n, 0) ${scope}`,
    params,
  );
  for (const r of counts) lines.push(`developer_secret_counts says ${r.counted} for ${r.developer_id}, secrets has ${r.actual} rows`);
  const orphans = await sql<{ developer_id: string; n: number; versions: string }>(
    `SELECT x.developer_id, count(*) AS n, string_agg(DISTINCT x.dek_version::text, ',') AS versions
       FROM secret_versions x LEFT JOIN data_keys k ON k.developer_id = x.developer_id AND k.version = x.dek_version
      WHERE x.ciphertext IS NOT NULL AND (k.version IS NULL OR k.wrapped_key IS NULL) ${scope}
      GROUP BY x.developer_id`,
    params,
  );
  for (const r of orphans) lines.push(`${r.n} ciphertext(s) of ${r.developer_id} under data key version(s) ${r.versions}, which are gone or retired`);
  const unreadable = await sql<{ developer_id: string; name: string }>(
    `SELECT x.developer_id, x.name FROM secrets x
       LEFT JOIN secret_versions v ON v.secret_id = x.id AND v.version = x.current_version
      WHERE (v.secret_id IS NULL OR v.ciphertext IS NULL OR v.developer_id <> x.developer_id) ${scope}`,
    params,
  );
  for (const r of unreadable) lines.push(`secret ${r.name} of ${r.developer_id} has no readable current version`);
  return lines;
}

describe.runIf(process.env["DATABASE_URL"])("key operations racing writers and readers on three replicas", () => {
  let cluster: ReplicaCluster;
  const replicas: Replica[] = [];
  let operator: string;

  beforeAll(async () => {
    cluster = await startReplicaCluster({ redis: true });
    // Every replica holds both master keys, so a rotation either way is allowed.
    const keyring = [masterKey("k1"), masterKey("k2")];
    replicas.push(
      ...(await Promise.all(
        Array.from({ length: REPLICAS }, () =>
          cluster.start(keyring, { SECRETS_KEY_JOB_PAUSE_MS: "0", ...NO_RATE_LIMITS }),
        ),
      )),
    );
    operator = await cluster.token("key-races-operator", ["secrets:operator"]);
  }, 60_000);

  afterAll(async () => {
    await cluster?.stop();
  }, 30_000);

  async function sql<R>(text: string, params: unknown[] = []): Promise<R[]> {
    return (await cluster.db.query<R>(text, params)).rows;
  }

  async function activeMasterKey(): Promise<string> {
    return (await sql<{ id: string }>("SELECT active_kek_id AS id FROM master_key_state"))[0]?.id ?? "";
  }

  async function writer(round: Round, token: string, w: number, rng: SeededRandom, writerReplicas: number[], names: string[]): Promise<void> {
    const belief = new Map<string, "present" | "absent" | "unknown">(names.map((n) => [n, "present"]));
    let afterKeyOp = 0;
    for (let n = 0; n < MAX_WRITES_PER_WRITER; n++) {
      if (performance.now() - round.t0 > ROUND_LOAD_MS || afterKeyOp >= WRITES_AFTER_KEY_OP) break;
      const keyOpDoneBefore = round.keyOpDone;
      if (names.length < MAX_NAMES_PER_WRITER && rng.chance(0.2)) {
        const fresh = `w${w}_${names.length}`;
        names.push(fresh);
        belief.set(fresh, "absent");
      }
      const name = rng.pick(names);
      const b = belief.get(name) ?? "unknown";
      const kind: WriteKind = b === "absent" ? "create" : b === "present" ? (rng.chance(0.7) ? "update" : "delete") : rng.pick(["create", "update"] as const);
      const value = kind === "delete" ? undefined : `${name}|${round.index}.${n}|${rng.int(0, 0xffff).toString(16)}`;
      const replica = rng.pick(writerReplicas);
      const client = (replicas[replica] as Replica).secrets;
      const history = round.track(name);
      if (value !== undefined) round.sent.get(name)?.add(value);
      const start = performance.now();
      const o = await sendWrite(client, kind, name, value, token);
      const end = performance.now();
      history.push({ kind, ...(value === undefined ? {} : { value }), start, end, code: o.code, replica });
      round.answered(WRITE_METHOD[kind], replica, o, name);
      if (o.code === status.OK) belief.set(name, kind === "delete" ? "absent" : "present");
      else if (o.code === status.NOT_FOUND && kind !== "create") belief.set(name, "absent");
      else if (o.code === status.ALREADY_EXISTS && kind === "create") belief.set(name, "present");
      else belief.set(name, "unknown");
      if (keyOpDoneBefore) afterKeyOp += 1;
    }
  }

  async function reader(round: Round, token: string, rng: SeededRandom, allNames: () => string[]): Promise<void> {
    for (let n = 0; n < MAX_READS_PER_READER && !round.writersDone; n++) {
      const replica = rng.int(0, REPLICAS - 1);
      const client = (replicas[replica] as Replica).secrets;
      const names = allNames();
      const check = (name: string, value: string) => {
        if (!round.sent.get(name)?.has(value)) {
          round.violation("a read returned a value never written to that name", `${name} on replica ${replica}: ${JSON.stringify(value.slice(0, 80))}`);
        }
      };
      if (rng.chance(0.6)) {
        const name = rng.pick(names);
        const o = await outcome(client.accessSecret({ name }, token));
        round.answered("AccessSecret", replica, o, name);
        if (o.value) check(name, o.value.value);
      } else {
        const picked = [...new Set(Array.from({ length: rng.int(1, 3) }, () => rng.pick(names)))];
        const o = await outcome(client.resolveSecrets({ names: picked }, token));
        round.answered("ResolveSecrets", replica, o, picked.join(","));
        if (o.value) {
          for (const name of picked) {
            const v = o.value.values[name];
            if (v === undefined) round.violation("ResolveSecrets answered OK without a name", `${name} on replica ${replica}`);
            else check(name, v);
          }
        }
      }
    }
  }

  async function keyOperation(round: Round, rng: SeededRandom, replica: number, target: string): Promise<void> {
    await sleep(rng.int(0, KEY_OP_MAX_DELAY_MS));
    const keys = (replicas[replica] as Replica).keys;
    const dev = round.developer;
    const start = performance.now();
    try {
      if (round.kind === "shred") {
        const o = await outcome(keys.shredDeveloper({ developerId: dev, confirmDeveloperId: dev }, operator));
        const end = performance.now();
        round.answered("ShredDeveloper", replica, o, dev);
        round.keyOpCode = o.code;
        round.shred = { start, end, certain: o.code === status.OK };
        round.keyOpLine = `shred on replica ${replica}: ${describeError(o)}${o.value ? `, ${o.value.secretsDeleted} secrets, ${o.value.dataKeysDeleted} data keys` : ""}`;
        if (o.value && o.value.replicasEvicted !== REPLICAS) {
          round.violation("ShredDeveloper returned before every live replica evicted", `replicas_evicted ${o.value.replicasEvicted} of ${REPLICAS}`);
        }
      } else if (round.kind === "developer-key") {
        const o = await outcome(keys.rotateDeveloperKey({ developerId: dev }, operator));
        round.answered("RotateDeveloperKey", replica, o, dev);
        round.keyOpCode = o.code;
        round.keyOpLine = `developer key rotation on replica ${replica}: ${describeError(o)}${o.value ? `, v${o.value.previousVersion} → v${o.value.newVersion}` : ""}`;
      } else {
        const o = await outcome(keys.rotateMasterKey({ keyId: target }, operator));
        round.answered("RotateMasterKey", replica, o, target);
        round.keyOpCode = o.code;
        round.keyOpLine = `master key rotation to ${target} on replica ${replica}: ${describeError(o)}`;
        if (o.code === status.OK) {
          // Issue 17: GetKeyStatus is true on every replica from the moment RotateMasterKey returns.
          for (const [i, r] of replicas.entries()) {
            const s = await outcome(r.keys.getKeyStatus({}, operator));
            if (s.value?.activeMasterKeyId !== target) {
              round.violation("GetKeyStatus disagrees with a RotateMasterKey that returned", `replica ${i}: active ${s.value?.activeMasterKeyId ?? describeError(s)}, expected ${target}`);
            }
          }
        }
      }
    } finally {
      round.keyOpDone = true;
    }
  }

  /** Waits (bounded) until every replica reports no rewrap and no re-encryption left, and the same active master key as Postgres. */
  async function settle(round: Round): Promise<void> {
    const deadline = performance.now() + SETTLE_MS;
    let last = "";
    for (;;) {
      const active = await activeMasterKey();
      const states = await Promise.all(replicas.map((r) => outcome(r.keys.getKeyStatus({}, operator))));
      const lines = states.map((s, i) =>
        s.value ? `replica ${i}: active ${s.value.activeMasterKeyId}, ${s.value.dataKeysToRewrap} to rewrap, ${s.value.versionsToReencrypt} to re-encrypt` : `replica ${i}: ${describeError(s)}`,
      );
      last = `Postgres active ${active}; ${lines.join("; ")}`;
      if (states.every((s) => s.value && s.value.dataKeysToRewrap === 0n && s.value.versionsToReencrypt === 0n && s.value.activeMasterKeyId === active)) return;
      if (performance.now() > deadline) {
        round.violation(`key jobs did not settle within ${SETTLE_MS} ms`, last);
        return;
      }
      await sleep(100);
    }
  }

  /** What a name holds on one replica: its value, null (NOT_FOUND), or the failure. */
  async function readState(replica: number, name: string, token: string): Promise<NameState | Outcome<unknown>> {
    const o = await outcome((replicas[replica] as Replica).secrets.accessSecret({ name }, token));
    if (o.value) return o.value.value;
    return o.code === status.NOT_FOUND ? null : o;
  }

  async function listNames(replica: number, token: string): Promise<string[] | Outcome<unknown>> {
    const names: string[] = [];
    let pageToken = "";
    for (let page = 0; page < 20; page++) {
      const o = await outcome((replicas[replica] as Replica).secrets.listSecrets({ pageSize: 100, pageToken }, token));
      if (!o.value) return o;
      names.push(...o.value.secrets.map((s) => s.name));
      pageToken = o.value.nextPageToken;
      if (!pageToken) return names;
    }
    return { code: status.UNKNOWN };
  }

  /** The checks after the load: every name on every replica against its history, lists, re-creation, rows. */
  async function verify(round: Round, token: string, rng: SeededRandom): Promise<void> {
    const present = new Set<string>();
    const absent: string[] = [];
    for (const [name, history] of round.histories) {
      const seen = await Promise.all(replicas.map((_, i) => readState(i, name, token)));
      const failed = seen.flatMap((s, i) => (s === null || typeof s === "string" ? [] : [{ i, code: `${s.code} ${s.error?.reason}`, line: describeError(s) }]));
      if (failed.length > 0) {
        const alike = failed.length === REPLICAS && failed.every((f) => f.code === failed[0]?.code);
        const where = alike ? `every replica: ${failed[0]?.line}` : failed.map((f) => `replica ${f.i}: ${f.line}`).join("; ");
        round.violation("a name is unreadable after the race", `${name}: ${where}; history: ${describeHistory(history, round.t0, round.shred)}`);
        continue;
      }
      const states = seen as NameState[];
      if (new Set(states).size > 1) {
        round.violation("replicas disagree about a name", `${name}: ${states.map((s, i) => `replica ${i} ${JSON.stringify(s)}`).join(", ")}`);
        continue;
      }
      const state = states[0] as NameState;
      const possible = possibleFinalStates(history, round.shred);
      if (possible.size === 0) {
        round.violation("acknowledged writes contradict each other (a write was lost mid-race)", `${name}: ${describeHistory(history, round.t0, round.shred)}`);
      } else if (!possible.has(state)) {
        const invariant =
          state === null ? "an acknowledged write is lost" : [...possible].every((p) => p === null) ? "a removed secret came back" : "a name holds the wrong value";
        round.violation(invariant, `${name}: reads ${JSON.stringify(state)}, expected one of ${JSON.stringify([...possible])}; ${describeHistory(history, round.t0, round.shred)}`);
      }
      if (state === null) absent.push(name);
      else present.add(name);
    }

    for (let i = 0; i < REPLICAS; i++) {
      const listed = await listNames(i, token);
      if (!Array.isArray(listed)) {
        round.violation("ListSecrets failed after the race", `replica ${i}: ${describeError(listed)}`);
        continue;
      }
      const ghosts = listed.filter((n) => !present.has(n));
      const missing = [...present].filter((n) => !listed.includes(n));
      if (ghosts.length > 0) round.violation("ListSecrets lists a ghost (listed, not readable)", `replica ${i}: ${ghosts.join(", ")}`);
      if (missing.length > 0) round.violation("ListSecrets misses a readable name", `replica ${i}: ${missing.join(", ")}`);
    }

    for (const name of absent) {
      const value = `${name}|again|${rng.int(0, 0xffff).toString(16)}`;
      const replica = rng.int(0, REPLICAS - 1);
      const o = await outcome((replicas[replica] as Replica).secrets.createSecret({ name, value }, token));
      if (o.code !== status.OK) {
        round.violation("an absent name cannot be created again", `${name} on replica ${replica}: ${describeError(o)}`);
        continue;
      }
      present.add(name);
      const seen = await Promise.all(replicas.map((_, i) => readState(i, name, token)));
      const wrong = seen.map((s, i) => (s === value ? undefined : `replica ${i}: ${typeof s === "string" || s === null ? JSON.stringify(s) : describeError(s)}`)).filter(Boolean);
      if (wrong.length > 0) round.violation("a re-created name does not read back", `${name}: ${wrong.join("; ")}`);
    }

    const dev = round.developer;
    const stored = (await sql<{ name: string }>("SELECT name FROM secrets WHERE developer_id = $1 AND delete_time IS NULL", [dev])).map((r) => r.name);
    const extra = stored.filter((n) => !present.has(n));
    const gone = [...present].filter((n) => !stored.includes(n));
    if (extra.length > 0) round.violation("rows of secrets that no replica can read", extra.join(", "));
    if (gone.length > 0) round.violation("readable secrets without a row", gone.join(", "));
    for (const line of await rowInvariants(cluster.db, dev)) round.violation("rows break an invariant", line);
  }

  it(
    `at least 20 seeded rounds: every acknowledged write survives (or is shredded), no INTERNAL, no ghost, counts match rows`,
    async () => {
      expect(new Set(replicas.map((r) => r.replicaId)).size).toBe(REPLICAS);
      const seeds = roundSeeds();
      const replaying = process.env["KEY_RACES_SEED"] !== undefined && process.env["KEY_RACES_SEED"] !== "";
      const report: string[] = [];
      const began = performance.now();
      let rounds = 0;
      let acknowledged = 0;
      const keyOpsOk = new Map<Kind, number>();
      for (const [index, seed] of seeds.entries()) {
        if (performance.now() - began > TOTAL_MS) break;
        const rng = seededRandom(seed);
        const kind = kindOf(seed);
        const round = new Round(index, seed, kind, `races-${hex(seed)}-${randomUUID().slice(0, 8)}`);
        const token = await cluster.token(round.developer, ["secrets:read", "secrets:write", "secrets:access"]);
        const keyReplica = rng.int(0, REPLICAS - 1);
        const writerReplicas = Array.from({ length: REPLICAS }, (_, i) => i).filter((i) => i !== keyReplica);
        const target = (await activeMasterKey()) === "k1" ? "k2" : "k1";

        // Pre-create each writer's first names, so the key operation has data to act on.
        const names = Array.from({ length: WRITERS }, (_, w) => Array.from({ length: PRECREATED_PER_WRITER }, (_, k) => `w${w}_${k}`));
        await Promise.all(
          names.flat().map(async (name) => {
            const value = `${name}|${index}.pre`;
            const replica = rng.int(0, REPLICAS - 1);
            round.track(name);
            round.sent.get(name)?.add(value);
            const start = performance.now();
            const o = await outcome((replicas[replica] as Replica).secrets.createSecret({ name, value }, token));
            round.track(name).push({ kind: "create", value, start, end: performance.now(), code: o.code, replica });
            if (o.code !== status.OK) round.violation("pre-creating a secret failed", `${name} on replica ${replica}: ${describeError(o)}`);
          }),
        );

        const keyOp = keyOperation(round, rng.fork(1), keyReplica, target);
        const writers = Promise.all(names.map((own, w) => writer(round, token, w, rng.fork(100 + w), writerReplicas, own))).finally(() => {
          round.writersDone = true;
        });
        const readers = Promise.all(Array.from({ length: READERS }, (_, r) => reader(round, token, rng.fork(200 + r), () => names.flat())));
        await Promise.all([keyOp, writers, readers]);
        await settle(round);
        await verify(round, token, rng.fork(300));
        if (kind === "master-key" && round.keyOpCode === status.OK) {
          const active = await activeMasterKey();
          if (active !== target) round.violation("RotateMasterKey returned OK but Postgres records another active key", `${active}, expected ${target}`);
          const behind = await sql<{ kek_id: string; n: number }>(
            "SELECT kek_id, count(*) AS n FROM data_keys WHERE state <> 'retired' AND kek_id <> $1 GROUP BY kek_id",
            [active],
          );
          for (const r of behind) round.violation("data keys left under another master key after the rewrap settled", `${r.n} under ${r.kek_id}, active ${active}`);
        }

        rounds += 1;
        const logs = replicas.map((r) => r.process.stdout());
        const writes = [...round.histories.values()].reduce((n, h) => n + h.length, 0);
        acknowledged += [...round.histories.values()].reduce((n, h) => n + h.filter((w) => w.code === status.OK).length, 0);
        if (round.keyOpCode === status.OK) keyOpsOk.set(kind, (keyOpsOk.get(kind) ?? 0) + 1);
        const codes = [...round.codes].map(([k, n]) => `${k} ${n}`).join(", ");
        console.info(
          `key races round ${index} seed ${hex(seed)} ${kind} (${((performance.now() - round.t0) / 1000).toFixed(1)} s): ${writes} writes to ${round.histories.size} names; ${withLoggedCauses(round.keyOpLine, logs)}; ` +
            `${round.violations.size === 0 ? "ok" : `${round.violations.size} invariant(s) broken`}; ${codes}`,
        );
        report.push(...round.report(logs));
      }
      // Whatever earlier rounds' key jobs did after their round ended shows here (each breach once).
      for (const line of await rowInvariants(cluster.db)) {
        if (!report.some((r) => r.includes(line))) report.push(`after all rounds: rows break an invariant\n    - ${line}`);
      }
      if (!replaying && rounds < 20) report.push(`only ${rounds} rounds ran within ${TOTAL_MS} ms; at least 20 are required`);
      // A run where the races did not happen proves nothing.
      if (acknowledged < rounds * 10) report.push(`only ${acknowledged} acknowledged writes in ${rounds} rounds`);
      for (const kind of replaying ? [] : KINDS) {
        if (!keyOpsOk.has(kind)) report.push(`no ${kind} round's key operation returned OK: nothing raced it`);
      }
      console.info(`key races: ${rounds} rounds in ${((performance.now() - began) / 1000).toFixed(1)} s, ${report.length} failure(s)`);
      expect(report.length, `${report.length} failure(s):\n${report.join("\n")}\n`).toBe(0);
    },
    210_000,
  );
});

// The model above decides what counts as a lost write; these cases pin it down
// (they need no database, so they run in the PGlite run too).
describe("the write history the race harness judges names by", () => {
  const w = (kind: WriteKind, start: number, end: number, code: status, value?: string): WriteRecord => ({
    kind,
    ...(value === undefined ? {} : { value }),
    start,
    end,
    code,
    replica: 0,
  });
  const created = w("create", 0, 1, status.OK, "a");

  it("follows acknowledged writes, and a shred that ended before a write began cannot remove it", () => {
    expect(possibleFinalStates([created, w("update", 2, 3, status.OK, "b")])).toEqual(new Set(["b"]));
    expect(possibleFinalStates([created, w("delete", 2, 3, status.OK)])).toEqual(new Set([null]));
    expect(possibleFinalStates([created, w("create", 20, 30, status.OK, "b")], { start: 5, end: 10, certain: true })).toEqual(new Set(["b"]));
    // An update that began after the shred returned cannot have found the secret.
    expect(possibleFinalStates([created, w("update", 20, 30, status.OK, "b")], { start: 5, end: 10, certain: true }).size).toBe(0);
    expect(possibleFinalStates([created], { start: 5, end: 10, certain: true })).toEqual(new Set([null]));
  });

  it("lets a shred remove a write it overlapped, and a failed shred count as either", () => {
    expect(possibleFinalStates([created, w("update", 3, 8, status.OK, "b")], { start: 5, end: 6, certain: true })).toEqual(new Set([null]));
    const recreated = [created, w("delete", 2, 3, status.OK), w("create", 6, 9, status.OK, "b")];
    expect(possibleFinalStates(recreated, { start: 5, end: 7, certain: true })).toEqual(new Set([null, "b"]));
    expect(possibleFinalStates([created], { start: 5, end: 10, certain: false })).toEqual(new Set(["a", null]));
  });

  it("finds no state when acknowledged outcomes contradict each other (a lost write)", () => {
    // Created, then an update finds nothing, with no shred to explain it.
    expect(possibleFinalStates([created, w("update", 2, 3, status.NOT_FOUND, "b")]).size).toBe(0);
    // A create after the shred returned, then a delete finds nothing: the create was lost.
    const history = [created, w("create", 12, 13, status.OK, "b"), w("delete", 14, 15, status.NOT_FOUND)];
    expect(possibleFinalStates(history, { start: 5, end: 10, certain: true }).size).toBe(0);
  });

  it("treats a refused write (ABORTED, UNAVAILABLE) as applied or not", () => {
    expect(possibleFinalStates([created, w("update", 2, 3, status.ABORTED, "b")])).toEqual(new Set(["a", "b"]));
    expect(possibleFinalStates([w("create", 0, 1, status.UNAVAILABLE, "a")])).toEqual(new Set([null, "a"]));
  });
});

// The same shred race, in-process and statement by statement: two replicas
// (startService, each with its own pool) on one Postgres and one Redis, every
// statement of both (BEGIN and COMMIT included) held at a gate that fast-check's
// scheduler opens in an order it chooses. A shred on one replica races chains of
// writes on the other, which wrote just before (its data key is in memory). The
// same judgement as above: allowed statuses only, each name as its history says
// on both replicas, rows consistent. fast-check prints the seed, the scenario and
// the order it opened the gates in; KEY_RACES_FC_SEED replays the seed (the
// database's own timing still varies).

const FC_RUNS = 12;
const FC_RUN_MS = 20_000;
/** A pause before each gate opens, so that the statements of concurrent calls wait side by side and the scheduler has a choice. */
const FC_GATE_PAUSE_MS = 3;

describe.runIf(process.env["DATABASE_URL"])("a shred against writes, interleaved statement by statement (fast-check scheduler)", () => {
  let cluster: ReplicaCluster;
  const pools: Db[] = [];
  const gates: GatedDb[] = [];
  const services: TestService[] = [];
  const logs: LogCapture[] = [];
  const secrets: TestClient<typeof SecretService>[] = [];
  const keys: TestClient<typeof KeyService>[] = [];

  beforeAll(async () => {
    // A deployment's database, Redis and token secret; its two replicas run in this process.
    cluster = await startReplicaCluster({ redis: true });
    const masterKeys = masterKey("k1");
    for (let i = 0; i < 2; i++) {
      const pool = await openPostgres(cluster.dbUrl, { maxConnections: 8, applicationName: `key-races-fc-${i}` });
      pools.push(pool);
      const gate = gatedDb(pool, `r${i}`);
      gates.push(gate);
      const service = await startTestService(
        { REDIS_URL: cluster.redisUrl as string, SECRETS_DB_SCOPE_CHECKS: "1", ...NO_RATE_LIMITS },
        { database: { db: gate.db, url: cluster.dbUrl }, masterKeys, jwtSecret: cluster.jwtSecret, logLevel: "warn" },
      );
      services.push(service);
      logs.push(service.logs);
      secrets.push(service.secrets);
      keys.push(service.keys);
    }
  }, 60_000);

  afterAll(async () => {
    for (const g of gates) g.use(undefined);
    for (const s of services) await s.stop();
    for (const p of pools) await p.close();
    await cluster?.stop();
  }, 30_000);

  const token = (subject: string, scopes: Scope[]) => cluster.token(subject, scopes);

  /** One name's writes, in order; `precreated` names exist (written by the writing replica) before the race. */
  const chain = fc.record({
    precreated: fc.boolean(),
    writes: fc.array(fc.constantFrom<WriteKind>("create", "update", "delete"), { minLength: 1, maxLength: 3 }),
  });
  const scenario = fc.record({ shredder: fc.constantFrom(0, 1), chains: fc.array(chain, { minLength: 1, maxLength: 3 }) });

  it(
    "no INTERNAL, no lost or resurrected write, consistent rows, in every order the scheduler picks",
    async () => {
      const operator = await token("key-races-fc-operator", ["secrets:operator"]);
      const seed = process.env["KEY_RACES_FC_SEED"];
      await fc.assert(
        fc.asyncProperty(
          fc.scheduler({
            act: async (f) => {
              await sleep(FC_GATE_PAUSE_MS);
              await f();
            },
          }),
          scenario,
          async (s, { shredder, chains }) => {
            const writer = 1 - shredder;
            const dev = `fc-${randomUUID()}`;
            const user = await token(dev, ["secrets:read", "secrets:write", "secrets:access"]);
            const histories = new Map<string, WriteRecord[]>();
            const problems: string[] = [];
            const write = async (name: string, kind: WriteKind, value: string | undefined) => {
              const client = secrets[writer] as TestClient<typeof SecretService>;
              const start = performance.now();
              const o = await sendWrite(client, kind, name, value, user);
              const history = histories.get(name) ?? [];
              histories.set(name, history);
              history.push({ kind, ...(value === undefined ? {} : { value }), start, end: performance.now(), code: o.code, replica: writer });
              const method = WRITE_METHOD[kind];
              if (!allowed(method, "shred").has(o.code)) problems.push(`${method} ${name}: ${describeError(o)}`);
            };

            // Before the race, ungated: the writing replica stores something, so it holds the data key.
            await write("anchor", "create", "anchor|0");
            for (const [i, c] of chains.entries()) if (c.precreated) await write(`c${i}`, "create", `c${i}|pre`);
            if (problems.length > 0) throw new Error(`set-up failed: ${problems.join("; ")}`);

            let shred: ShredWindow | undefined;
            const t0 = performance.now();
            for (const g of gates) g.use(s);
            try {
              const shredding = (async () => {
                const start = performance.now();
                const o = await outcome((keys[shredder] as TestClient<typeof KeyService>).shredDeveloper({ developerId: dev, confirmDeveloperId: dev }, operator));
                shred = { start, end: performance.now(), certain: o.code === status.OK };
                if (!allowed("ShredDeveloper", "shred").has(o.code)) problems.push(`ShredDeveloper: ${describeError(o)}`);
              })();
              const writing = chains.map(async (c, i) => {
                for (const [n, kind] of c.writes.entries()) await write(`c${i}`, kind, kind === "delete" ? undefined : `c${i}|${n}`);
              });
              await s.waitFor(within(Promise.all([shredding, ...writing]), FC_RUN_MS, "the race"));
            } finally {
              for (const g of gates) g.use(undefined);
              await s.waitIdle();
            }

            for (const [name, history] of histories) {
              const possible = possibleFinalStates(history, shred);
              const seen: (NameState | string)[] = [];
              for (const client of secrets) {
                const o = await outcome(client.accessSecret({ name }, user));
                seen.push(o.value ? o.value.value : o.code === status.NOT_FOUND ? null : `(${describeError(o)})`);
              }
              if (seen.some((v) => !possible.has(v))) {
                problems.push(`${name} reads ${JSON.stringify(seen)} on the two replicas, expected one of ${JSON.stringify([...possible])}; ${describeHistory(history, t0, shred)}`);
              }
            }
            problems.push(...(await rowInvariants(cluster.db, dev)));
            if (problems.length > 0) {
              const causes = logs.map((l) => l.text);
              throw new Error(problems.map((p) => withLoggedCauses(p, causes)).join("\n"));
            }
          },
        ),
        { numRuns: FC_RUNS, endOnFailure: true, ...(seed ? { seed: Number(seed) } : {}) },
      );
    },
    90_000,
  );
});
