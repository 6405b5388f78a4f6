/**
 * `npm run audit:verify`: checks every writer's hash chain in the audit table.
 *
 *   node dist/audit/audit-verify.js                 # DATABASE_URL, else the embedded database
 *   node dist/audit/audit-verify.js --data-dir DIR  # the embedded database in DIR
 *   node dist/audit/audit-verify.js --file F [--file G …]  # JSON-lines files, no database
 *
 * Prints one line per writer and exits 0 when every chain holds; otherwise prints
 * the first broken event (id, writer, sequence and what is wrong, never any other
 * field) and exits 1. Exit 2: usage or the database could not be opened.
 *
 * Compact events (audit_log, chain format 3) are verified with the checkpoints of the
 * segments that retention dropped: each writer's chain must run from sequence 1
 * through its archived segments and what remains without a gap, and each line says
 * how much of it was archived and in which partitions.
 *
 * With `--file`, it checks JSON-lines files instead (a partition exported before it
 * was dropped, SECRETS_AUDIT_EXPORT_DIR, or a file sink's output): in each file, each
 * writer's lines must run on without a gap, each line's prev_hash the previous line's
 * hash and its hash recomputed from its fields. It prints, per file and writer, the
 * sequences held, the hash the first line joins to and the last hash: for an exported
 * partition, the checkpoint the database verification names for that partition
 * (audit_checkpoints) must show the same range, count and last hash, and the first
 * event after it in the database carries that last hash.
 *
 * What the chain proves: an event changed, removed or moved inside a writer's
 * chain is found. It does not prove that the newest events of a chain were not cut
 * off, nor stop someone who can write the table from recomputing a whole chain;
 * for that, copy each writer's head (printed here) somewhere the database's
 * administrators cannot write.
 */
import { createReadStream, existsSync, realpathSync } from "node:fs";
import { createInterface } from "node:readline";
import path from "node:path";
import { fileURLToPath } from "node:url";

import { SINK_LINE_FORMAT } from "./audit-sink.js";
import { GENESIS_HASH, chainHash3Of, chainHashOf, chainHashV1, compactOf, type StoredAuditEvent } from "./chain.js";
import {
  listAuditPartitions,
  listAuditWriters,
  listCheckpoints,
  listCompactWriters,
  listWriterEvents,
  readPartitionEvents,
  type AuditChainRow,
  type AuditCheckpoint,
  type CompactChainRow,
  type EventSource,
  type RawEvent,
} from "../store/audit-store.js";
import type { Db, Queryable } from "../store/db.js";
import { openPglite, openPostgres } from "../store/index.js";

/** A broken link: which event, and what is wrong with it (never the event's content). */
export interface ChainProblem {
  id: number;
  writerId: string;
  sequence: number;
  /**
   * `sequence`: not the next in the chain (events missing or moved); `prev_hash`: not the previous event's hash;
   * `hash`: does not match the event's content; `archive`: a checkpoint of a dropped segment that does not join the
   * chain or did not hold every event of its range (its id is 0).
   */
  kind: "sequence" | "prev_hash" | "hash" | "archive";
  message: string;
}

/** One writer's chain as read. */
export interface ChainSummary {
  writerId: string;
  events: number;
  lastSequence: number;
  /** The hash of the newest event: worth keeping outside the database (see the module comment). */
  headHash: string;
  /** The chain's hash format (audit-chain.ts), as its first event whose hash matches shows; undefined if none does. */
  format: ChainFormat | undefined;
  problems: number;
  /** Compact chains: what retention dropped (events, segments and their partitions), joined by checkpoints. */
  archived?: { events: number; segments: number; partitions: string[] };
}

/** The hash formats a writer may have used (chain.ts): one process writes one. */
export type ChainFormat = 1 | 2 | 3;

const HASHES: Record<1 | 2, (prevHash: string, e: AuditChainRow) => string> = { 2: chainHashOf, 1: chainHashV1 };

/** Whether the stored hash is the event's hash in `format`, or, with no format known yet, the format it is. */
function matchingFormat(row: AuditChainRow, format: 1 | 2 | undefined): 1 | 2 | undefined {
  if (row.timeMicros % 1000 !== 0) return undefined; // the writer stores whole milliseconds
  for (const f of format === undefined ? ([2, 1] as const) : [format]) if (HASHES[f](row.prevHash, row) === row.hash) return f;
  return undefined;
}

export interface VerifyResult {
  writers: number;
  events: number;
  /** In writer order, then chain order (events of unregistered writers last); at most `maxProblems`. */
  problems: ChainProblem[];
  chains: ChainSummary[];
}

/**
 * Verify every writer's chain: sequences contiguous from 1, each prev_hash equal to
 * the previous event's hash (the first's to GENESIS_HASH), each hash recomputed
 * from the stored fields, all in one format: that of the chain's first event whose
 * hash matches (compact chains: format 3, with their archived segments). Reads in
 * pages of `pageSize` events. After a broken link it carries on from the event as
 * stored, so one edit is one problem.
 */
export async function verifyAuditChains(
  db: Db,
  options: { pageSize?: number; maxProblems?: number } = {},
): Promise<VerifyResult> {
  const pageSize = options.pageSize ?? 1000;
  const maxProblems = options.maxProblems ?? 1000;
  const problems: ChainProblem[] = [];
  const chains: ChainSummary[] = [];
  let events = 0;

  const compact = await hasCompactTable(db);
  const v1: EventSource = compact ? "audit_events_v1" : "audit_events";
  for (const { writerId } of await listAuditWriters(db, v1)) {
    const chain: ChainSummary = { writerId, events: 0, lastSequence: 0, headHash: GENESIS_HASH, format: undefined, problems: 0 };
    const report = (id: number, sequence: number, kind: ChainProblem["kind"], message: string) => {
      chain.problems += 1;
      if (problems.length < maxProblems) problems.push({ id, writerId, sequence, kind, message });
    };
    for (;;) {
      const rows = await listWriterEvents(db, writerId, chain.lastSequence, pageSize, v1);
      for (const row of rows) {
        const seq = row.writerSequence;
        const expected = chain.lastSequence + 1;
        if (seq !== expected) {
          report(row.id, seq, "sequence", gapMessage(chain.lastSequence, seq));
        } else if (row.prevHash !== chain.headHash) {
          report(
            row.id,
            seq,
            "prev_hash",
            seq === 1 ? "prev_hash of the first event is not the genesis hash" : `prev_hash is not the hash of sequence ${seq - 1}`,
          );
        } else {
          const format = matchingFormat(row, chain.format as 1 | 2 | undefined);
          if (format === undefined) report(row.id, seq, "hash", "hash does not match the event's stored fields: the event was altered");
          chain.format ??= format;
        }
        chain.events += 1;
        chain.lastSequence = seq;
        chain.headHash = row.hash;
      }
      if (rows.length < pageSize) break;
    }
    events += chain.events;
    chains.push(chain);
  }
  if (compact) {
    const result = await verifyCompactChains(db, pageSize, maxProblems);
    for (const chain of result.chains) {
      events += chain.events;
      chains.push(chain);
    }
    problems.push(...result.problems.slice(0, Math.max(0, maxProblems - problems.length)));
  }
  return { writers: chains.length, events, problems, chains };
}

/** What a `sequence` problem says: how many events are missing before `sequence`. */
function gapMessage(lastSequence: number, sequence: number): string {
  return lastSequence === 0
    ? `the chain starts at sequence ${sequence}, not 1: ${sequence - 1} events missing`
    : `sequence ${sequence} follows ${lastSequence}: ${sequence - lastSequence - 1} events missing`;
}

async function hasCompactTable(db: Queryable): Promise<boolean> {
  const { rows } = await db.query<{ t: string | null }>("SELECT to_regclass('audit_log')::text AS t");
  return Boolean(rows[0]?.t);
}

/**
 * Every compact writer's chain (format 3): sequences contiguous from 1 through the
 * archived segments (checkpoints) and the events that remain; after an archived
 * segment, the next event must start a segment with that segment's last hash as its
 * prev_hash; wherever an event stores a prev_hash, it must be the previous hash; each
 * hash recomputed from the stored fields. Reads the partitions oldest first, each
 * sorted by writer and sequence in a transaction of its own (a writer's segments
 * follow each other in partition order, docs/design.md), carrying each writer's
 * chain from one partition to the next. An event of a writer that is not registered
 * is a problem too. Carries on after a problem from the event (or checkpoint) as stored.
 */
async function verifyCompactChains(db: Db, pageSize: number, maxProblems: number): Promise<{ chains: ChainSummary[]; problems: ChainProblem[] }> {
  const walks = new Map<number, CompactChainWalk>();
  for (const { writer, writerId } of await listCompactWriters(db)) {
    walks.set(writer, new CompactChainWalk(writerId, await listCheckpoints(db, writer), maxProblems));
  }
  const strays: ChainProblem[] = [];
  for (const p of await listAuditPartitions(db)) {
    await db.transaction((tx) =>
      readPartitionEvents(tx, p, pageSize, (rows) => {
        for (const row of rows) {
          const walk = walks.get(row.writer);
          if (walk !== undefined) walk.check(row);
          else if (strays.length < maxProblems) {
            strays.push({ id: row.id, writerId: `#${row.writer}`, sequence: row.writerSequence, kind: "sequence", message: `writer number ${row.writer} is not registered` });
          }
        }
      }),
    );
  }
  const chains = [...walks.values()].map((w) => w.end());
  const problems = [...[...walks.values()].flatMap((w) => w.problems), ...strays];
  return { chains, problems };
}

/** One compact writer's chain as the verifier walks it, event by event in chain order. */
class CompactChainWalk {
  readonly chain: ChainSummary;
  /** This chain's problems, in chain order (at most `maxProblems`; `chain.problems` counts them all). */
  readonly problems: ChainProblem[] = [];
  private readonly archived = { events: 0, segments: 0, partitions: [] as string[] };
  /** The next checkpoint not yet joined. */
  private next = 0;

  constructor(
    private readonly writerId: string,
    private readonly checkpoints: readonly AuditCheckpoint[],
    private readonly maxProblems: number,
  ) {
    this.chain = { writerId, events: 0, lastSequence: 0, headHash: GENESIS_HASH, format: 3, problems: 0, archived: this.archived };
  }

  check(row: CompactChainRow): void {
    const { chain } = this;
    const seq = row.writerSequence;
    const afterArchive = this.joinArchived(seq);
    const expected = chain.lastSequence + 1;
    if (seq !== expected) {
      this.report(row.id, seq, "sequence", gapMessage(chain.lastSequence, seq));
    } else if ((row.prevHash !== null && row.prevHash !== chain.headHash) || (afterArchive && row.prevHash === null)) {
      this.report(
        row.id,
        seq,
        "prev_hash",
        afterArchive
          ? `the first event after archived sequence ${seq - 1} does not carry that segment's last hash`
          : `prev_hash is not the hash of sequence ${seq - 1}`,
      );
    } else if (row.timeMicros % 1000 !== 0 || chainHash3Of(chain.headHash, this.writerId, row) !== row.hash) {
      this.report(row.id, seq, "hash", "hash does not match the event's stored fields: the event was altered");
    }
    chain.events += 1;
    chain.lastSequence = seq;
    chain.headHash = row.hash;
  }

  /** The chain once every event was checked: joins the checkpoints after its last event. */
  end(): ChainSummary {
    this.joinArchived(Number.POSITIVE_INFINITY);
    return this.chain;
  }

  /** Joins the checkpoints that continue the chain before sequence `before`; true if any did. */
  private joinArchived(before: number): boolean {
    const { chain, archived } = this;
    let joined = false;
    for (let cp = this.checkpoints[this.next]; cp !== undefined && cp.firstSequence <= before; cp = this.checkpoints[++this.next]) {
      if (cp.firstSequence !== chain.lastSequence + 1) {
        this.report(0, cp.firstSequence, "archive", `archived segment ${cp.firstSequence}-${cp.lastSequence} does not follow sequence ${chain.lastSequence}`);
      } else if (cp.events !== cp.lastSequence - cp.firstSequence + 1) {
        this.report(0, cp.firstSequence, "archive", `archived segment ${cp.firstSequence}-${cp.lastSequence} held ${cp.events} events when dropped`);
      }
      archived.events += cp.events;
      archived.segments += 1;
      archived.partitions.push(cp.partitionName);
      chain.lastSequence = cp.lastSequence;
      chain.headHash = cp.lastHash;
      joined = true;
    }
    return joined;
  }

  private report(id: number, sequence: number, kind: ChainProblem["kind"], message: string): void {
    this.chain.problems += 1;
    if (this.problems.length < this.maxProblems) this.problems.push({ id, writerId: this.writerId, sequence, kind, message });
  }
}

/** One writer's lines in a JSON-lines file. */
export interface FileChain {
  writerId: string;
  firstSequence: number;
  lastSequence: number;
  events: number;
  /** The prev_hash of its first line: the last hash of what came before (the genesis hash at sequence 1). */
  joins: string;
  headHash: string;
}

export interface FileVerifyResult {
  chains: FileChain[];
  /** `line` is the line number in the file, in place of an event id. */
  problems: (Omit<ChainProblem, "id"> & { line: number })[];
}

/**
 * Verify a JSON-lines file of audit events (an exported partition or a file sink's
 * output): per writer, sequences without a gap, each prev_hash the previous line's
 * hash, each hash recomputed (chain format 3) from the line's fields. A line that is
 * not an audit line is a problem too. Carries on after a problem from the line as
 * written.
 */
export async function verifyAuditFile(file: string): Promise<FileVerifyResult> {
  const chains = new Map<string, FileChain>();
  const problems: FileVerifyResult["problems"] = [];
  const lines = createInterface({ input: createReadStream(file, "utf8"), crlfDelay: Number.POSITIVE_INFINITY });
  let n = 0;
  for await (const text of lines) {
    n += 1;
    if (text === "") continue;
    let line: SinkLineFields;
    try {
      line = JSON.parse(text) as SinkLineFields;
      if (line.format !== SINK_LINE_FORMAT) throw new Error("not an audit line");
    } catch {
      problems.push({ line: n, writerId: "", sequence: 0, kind: "hash", message: "not an audit line of this format" });
      continue;
    }
    const seq = line.writer_sequence;
    const chain = chains.get(line.writer_id);
    const report = (kind: ChainProblem["kind"], message: string) => problems.push({ line: n, writerId: line.writer_id, sequence: seq, kind, message });
    if (chain !== undefined && seq !== chain.lastSequence + 1) report("sequence", gapMessage(chain.lastSequence, seq));
    else if (chain !== undefined && line.prev_hash !== chain.headHash) report("prev_hash", `prev_hash is not the hash of sequence ${seq - 1}`);
    else if (chain === undefined && seq === 1 && line.prev_hash !== GENESIS_HASH) report("prev_hash", "prev_hash of the first event is not the genesis hash");
    else if (chainHash3Of(line.prev_hash, line.writer_id, compactOf(eventOfLine(line))) !== line.hash) {
      report("hash", "hash does not match the line's fields: the event was altered");
    }
    if (chain === undefined) {
      chains.set(line.writer_id, { writerId: line.writer_id, firstSequence: seq, lastSequence: seq, events: 1, joins: line.prev_hash, headHash: line.hash });
    } else {
      chain.lastSequence = seq;
      chain.events += 1;
      chain.headHash = line.hash;
    }
  }
  return { chains: [...chains.values()], problems };
}

/** The fields of a JSON line (audit-sink.ts, sinkLine): an event's columns, the time as ISO 8601 text. */
type SinkLineFields = Omit<RawEvent, "id" | "time"> & { format: string; time: string };

function eventOfLine(l: SinkLineFields): StoredAuditEvent {
  return {
    time: new Date(l.time),
    developerId: l.developer_id,
    callerSubject: l.caller_subject,
    callerTokenId: l.caller_token_id,
    callerIdentity: l.caller_identity,
    action: l.action,
    secretName: l.secret_name,
    version: l.version,
    outcome: l.outcome,
    requestId: l.request_id,
    peer: l.peer,
    writerId: l.writer_id,
    writerSequence: l.writer_sequence,
  };
}

/** `--file` mode: verify each file, print one line per file and writer, exit 0 when all hold. */
async function verifyFiles(files: readonly string[], out: (line: string) => void, err: (line: string) => void): Promise<number> {
  let broken = 0;
  for (const file of files) {
    let result: FileVerifyResult;
    try {
      result = await verifyAuditFile(file);
    } catch (e) {
      err(`cannot read ${file}: ${e instanceof Error ? e.message : String(e)}`);
      return 2;
    }
    for (const c of result.chains) {
      const problems = result.problems.filter((p) => p.writerId === c.writerId).length;
      out(
        `${file}: writer ${JSON.stringify(c.writerId)}: sequences ${c.firstSequence}-${c.lastSequence} (${c.events} events), ` +
          `joins ${c.joins}, head ${c.headHash}: ${problems === 0 ? "ok" : `BROKEN (${problems} ${problems === 1 ? "problem" : "problems"})`}`,
      );
    }
    const first = result.problems[0];
    if (first !== undefined) {
      broken += result.problems.length;
      out(`${file}: broken at line ${first.line}, writer ${JSON.stringify(first.writerId)}, sequence ${first.sequence}: ${first.message}`);
    }
  }
  if (broken > 0) return 1;
  out(`audit files intact: ${files.length} ${files.length === 1 ? "file" : "files"}`);
  return 0;
}

/** The command: parse arguments, open the database, verify, print, exit code. */
export async function main(argv: readonly string[], env: NodeJS.ProcessEnv = process.env): Promise<number> {
  const out = (line: string) => process.stdout.write(`${line}\n`);
  const err = (line: string) => process.stderr.write(`audit-verify: ${line}\n`);

  let dataDir: string | undefined;
  const files: string[] = [];
  const args = argv.slice(2);
  for (let i = 0; i < args.length; i++) {
    const arg = args[i] as string;
    if (arg === "--help" || arg === "-h") {
      out("usage: audit-verify [--data-dir DIR]   (DATABASE_URL is used unless --data-dir is given)");
      out("       audit-verify --file FILE [--file FILE ...]   (JSON-lines files: exported partitions, a file sink)");
      return 0;
    }
    if (arg === "--file" && args[i + 1] !== undefined) {
      files.push(args[++i] as string);
    } else if (arg === "--data-dir" && args[i + 1] !== undefined) {
      dataDir = args[++i];
    } else if (arg.startsWith("--data-dir=")) {
      dataDir = arg.slice("--data-dir=".length);
    } else {
      err("unknown argument; usage: audit-verify [--data-dir DIR]");
      return 2;
    }
  }

  if (files.length > 0) return verifyFiles(files, out, err);

  const databaseUrl = dataDir === undefined ? env["DATABASE_URL"] : undefined;
  const embeddedDir = dataDir ?? env["SECRETS_DATA_DIR"] ?? ".secrets-data";
  if (!databaseUrl && !existsSync(path.join(embeddedDir, "pglite"))) {
    err(`no embedded database in ${embeddedDir} (set DATABASE_URL or pass --data-dir)`);
    return 2;
  }

  // Opened without migrating: a check must not change the database it checks.
  // Never print the URL: it may hold a password.
  const what = databaseUrl ? "the database (DATABASE_URL)" : `the embedded database in ${embeddedDir}`;
  let db: Db;
  try {
    db = databaseUrl
      ? await openPostgres(databaseUrl, { maxConnections: 1, applicationName: "secrets-audit-verify" })
      : await openPglite(path.join(embeddedDir, "pglite"));
  } catch (e) {
    err(`cannot open ${what}: ${e instanceof Error ? e.message : String(e)}`);
    return 2;
  }
  try {
    let result: VerifyResult;
    try {
      const { rows } = await db.query<{ t: string | null }>("SELECT to_regclass('audit_events')::text AS t");
      if (!rows[0]?.t) {
        err(`${what} has no audit_events table (the service has not migrated it)`);
        return 2;
      }
      result = await verifyAuditChains(db);
    } catch (e) {
      err(`cannot read the audit table of ${what}: ${e instanceof Error ? e.message : String(e)}`);
      return 2;
    }
    for (const c of result.chains) {
      out(
        `writer ${JSON.stringify(c.writerId)}: ${c.events} events, last sequence ${c.lastSequence}, head ${c.headHash}` +
          `${c.format === undefined ? "" : `, format ${c.format}`}` +
          (c.archived === undefined || c.archived.segments === 0
            ? ""
            : `, archived ${c.archived.events} events in ${c.archived.segments} ${c.archived.segments === 1 ? "segment" : "segments"} (${c.archived.partitions.join(", ")})`) +
          ": " +
          (c.problems === 0 ? "ok" : `BROKEN (${c.problems} ${c.problems === 1 ? "problem" : "problems"})`),
      );
    }
    const first = result.problems[0];
    if (first !== undefined) {
      const total = result.chains.reduce((n, c) => n + c.problems, 0);
      out(
        `audit chain broken: event id ${first.id}, writer ${JSON.stringify(first.writerId)}, sequence ${first.sequence}: ${first.message}` +
          (total > 1 ? ` (${total} problems in all)` : ""),
      );
      return 1;
    }
    out(`audit chains intact: ${result.writers} writers, ${result.events} events`);
    return 0;
  } finally {
    await db.close();
  }
}

const invokedDirectly = process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  main(process.argv).then(
    (code) => {
      process.exitCode = code;
    },
    (e: unknown) => {
      process.stderr.write(`audit-verify: failed: ${e instanceof Error ? e.message : String(e)}\n`);
      process.exitCode = 2;
    },
  );
}
