import { selectAs } from "./columns.js";
import { copyTextField, type Db, type Queryable } from "./db.js";

/**
 * The SQL of the audit trail. Events are written to audit_log (compact, partitioned
 * by day, migration 13); those written before stay in audit_events_v1; the view
 * audit_events shows both in the old columns. The tables are append-only (a trigger
 * rejects UPDATE, DELETE and TRUNCATE), so this file only inserts and reads, except
 * that retention drops whole partitions of audit_log (dropAuditPartition). Listing is
 * always filtered by developer id; the verifier reads the old table per writer and
 * audit_log a partition at a time (readPartitionEvents).
 */

/** An event as the writer inserts it: every column but `id`. */
export interface NewAuditEvent {
  time: Date;
  developerId: string;
  callerSubject: string;
  callerTokenId: string;
  callerIdentity: string;
  action: string;
  secretName: string;
  version: number;
  outcome: string;
  requestId: string;
  peer: string;
  writerId: string;
  writerSequence: number;
  prevHash: string;
  hash: string;
}

/** A stored event. */
export interface AuditEventRow extends NewAuditEvent {
  /** Assigned by the table; increasing in insert order. */
  id: number;
}

/**
 * A stored event as the verifier reads it. `time` is rebuilt from `timeMicros` at
 * millisecond precision (the writer stores whole milliseconds); `timeMicros` is the
 * exact stored instant, so an edit below the millisecond is still visible.
 */
export interface AuditChainRow extends AuditEventRow {
  timeMicros: number;
}

/** A row of audit_events under its column names, as `SELECT *` returns it (the store reads rows under field names). */
export interface RawEvent {
  id: number;
  time: Date;
  developer_id: string;
  caller_subject: string;
  caller_token_id: string;
  caller_identity: string;
  action: string;
  secret_name: string;
  version: number;
  outcome: string;
  request_id: string;
  peer: string;
  writer_id: string;
  writer_sequence: number;
  prev_hash: string;
  hash: string;
}

const EVENT_COLUMNS = selectAs<AuditEventRow>([
  "id",
  "time",
  "developerId",
  "callerSubject",
  "callerTokenId",
  "callerIdentity",
  "action",
  "secretName",
  "version",
  "outcome",
  "requestId",
  "peer",
  "writerId",
  "writerSequence",
  "prevHash",
  "hash",
]);

/** Every stored field of an event that its chain hash covers: every column but id, prev_hash and hash. */
export type StoredAuditEvent = Omit<NewAuditEvent, "prevHash" | "hash">;

/**
 * The chained fields of an event as the start of its line of COPY's text format
 * (see encodeAuditEvent): time to writer sequence in column order, tab-separated,
 * text escaped as COPY reads it (copyTextField), the time as ISO 8601 at the
 * millisecond (Postgres parses it to that instant). The audit chain hashes this very
 * text (audit-chain.ts, format 2), so an event is encoded once. The escaping makes
 * it injective: a field's text cannot hold a bare tab, so none can move into the
 * next. Text fields hold no U+0000 (the audit log replaces it before hashing; COPY,
 * like any Postgres text, cannot carry it).
 */
export function encodeChainedFields(e: StoredAuditEvent): string {
  const f = copyTextField;
  // join makes one flat string; a template literal would keep a tree of concatenations
  // alive in the queue until the batch is written.
  return [
    isoTime(e.time),
    f(e.developerId),
    f(e.callerSubject),
    f(e.callerTokenId),
    f(e.callerIdentity),
    f(e.action),
    f(e.secretName),
    e.version,
    f(e.outcome),
    f(e.requestId),
    f(e.peer),
    f(e.writerId),
    e.writerSequence,
  ].join("\t");
}

/**
 * An event in the form `insertEncodedAuditEvents` takes: one line of COPY's text
 * format, its chained fields (encodeChainedFields) then prev_hash and hash. The
 * writer encodes each event as it queues it, so a queued event is one string rather
 * than an object of fifteen fields (events wait up to a batch interval, long enough
 * to outlive a young-generation collection).
 */
export function encodeAuditEvent(chainedFields: string, prevHash: string, hash: string): string {
  return [chainedFields, copyTextField(prevHash), copyTextField(hash)].join("\t");
}

// The last time encoded: the events of one millisecond (several, under load) share its text.
let lastIsoMs = Number.NaN;
let lastIso = "";

function isoTime(time: Date): string {
  const ms = time.getTime();
  if (ms !== lastIsoMs) {
    lastIso = time.toISOString();
    lastIsoMs = ms;
  }
  return lastIso;
}

/** The columns of an encoded event, in its order. */
const ENCODED_COLUMNS = [
  "time",
  "developer_id",
  "caller_subject",
  "caller_token_id",
  "caller_identity",
  "action",
  "secret_name",
  "version",
  "outcome",
  "request_id",
  "peer",
  "writer_id",
  "writer_sequence",
  "prev_hash",
  "hash",
] as const;

/**
 * Appends encoded events of the old format (to audit_events_v1) in one COPY, in array order (ids increase in that order):
 * the cheapest way for Postgres to take many rows, and an audit row is written for
 * every call.
 */
export async function insertEncodedAuditEvents(db: Db, encoded: readonly string[]): Promise<void> {
  if (encoded.length === 0) return;
  await db.copyIn("audit_events_v1", ENCODED_COLUMNS, `${encoded.join("\n")}\n`);
}

/** The (sequence, hash) pairs of one writer's events among `sequences`: to tell a lost commit acknowledgement from a clash. */
export async function findWriterHashes(
  q: Queryable,
  writerId: string,
  sequences: readonly number[],
): Promise<Map<number, string>> {
  const { rows } = await q.query<{ writer_sequence: number; hash: string }>(
    "SELECT writer_sequence, hash FROM audit_events_v1 WHERE writer_id = $1 AND writer_sequence = ANY($2::int8[])",
    [writerId, sequences],
  );
  return new Map(rows.map((r) => [r.writer_sequence, r.hash]));
}

export interface AuditListQuery {
  developerId: string;
  /** Keyset: events with an id strictly below this one. */
  beforeId: number | undefined;
  /** Events naming this secret, alone or among comma-joined names; undefined matches all. */
  secretName: string | undefined;
  action: string | undefined;
  outcome: string | undefined;
  /** [start, end): at or after start, before end. */
  start: Date | undefined;
  end: Date | undefined;
  /**
   * Only events whose names all lie in this set (events naming no secret included):
   * a token's allowlist. Undefined means no restriction.
   */
  onlyNames: readonly string[] | undefined;
  limit: number;
}

/** The columns of audit_events, which audit_events_v1 and audit_log_events both have. */
const VIEW_COLUMNS =
  "id, time, developer_id, caller_subject, caller_token_id, caller_identity, action, secret_name, version, " +
  "outcome, request_id, peer, writer_id, writer_sequence, prev_hash, hash";

/**
 * Where each part of audit_events keeps developer $1, through its index:
 * audit_events_v1 by developer_id, audit_log's rows written before migration 14 by
 * their developer_id, those since by the developer's number.
 */
const DEVELOPER_PARTS = [
  "audit_events_v1 WHERE developer_id = $1",
  "audit_log_events WHERE stored_developer_id = $1",
  "audit_log_events WHERE developer = (SELECT developer FROM audit_developers WHERE developer_id = $1)",
];

/** One page of a developer's events, newest (highest id) first. */
export async function listAuditEvents(q: Queryable, l: AuditListQuery): Promise<AuditEventRow[]> {
  const params: unknown[] = [l.developerId, l.limit];
  const where: string[] = [];
  const add = (sql: (n: string) => string, value: unknown) => {
    params.push(value);
    where.push(sql(`$${params.length}`));
  };
  if (l.beforeId !== undefined) add((p) => `id < ${p}`, l.beforeId);
  if (l.secretName !== undefined) {
    add((p) => `(secret_name = ${p} OR ${p} = ANY(string_to_array(secret_name, ',')))`, l.secretName);
  }
  if (l.action !== undefined) add((p) => `action = ${p}`, l.action);
  if (l.outcome !== undefined) add((p) => `outcome = ${p}`, l.outcome);
  if (l.start !== undefined) add((p) => `time >= ${p}`, l.start);
  if (l.end !== undefined) add((p) => `time < ${p}`, l.end);
  // string_to_array('', ',') is '{}', which every set contains: events naming no secret pass.
  if (l.onlyNames !== undefined) add((p) => `string_to_array(secret_name, ',') <@ ${p}::text[]`, l.onlyNames);
  // Each part is a page of its own, newest first, then merged: a filter on the union (a
  // condition inside a UNION ALL branch) would keep the planner from reading the indexes in
  // id order, and it would sort all of a developer's events for one page.
  const filter = where.map((w) => ` AND ${w}`).join("");
  const parts = DEVELOPER_PARTS.map((part) => `(SELECT ${VIEW_COLUMNS} FROM ${part}${filter} ORDER BY id DESC LIMIT $2)`);
  const { rows } = await q.query<AuditEventRow>(
    `SELECT ${EVENT_COLUMNS} FROM (${parts.join(" UNION ALL ")}) AS audit_events ORDER BY id DESC LIMIT $2`,
    params,
  );
  return rows;
}

/**
 * Where the old-format readers read: the view of every event (audit_events), or only
 * the events written before the compact format (audit_events_v1), which the verifier
 * checks in formats 1 and 2.
 */
export type EventSource = "audit_events" | "audit_events_v1";

/** Every writer that has events in `from`, with how many, ordered by writer id. */
export async function listAuditWriters(
  q: Queryable,
  from: EventSource = "audit_events",
): Promise<{ writerId: string; events: number }[]> {
  const { rows } = await q.query<{ writer_id: string; n: number }>(
    `SELECT writer_id, count(*) AS n FROM ${from} GROUP BY writer_id ORDER BY writer_id`,
  );
  return rows.map((r) => ({ writerId: r.writer_id, events: r.n }));
}

/** One page of a writer's events in chain order: sequences strictly after `afterSequence`. */
export async function listWriterEvents(
  q: Queryable,
  writerId: string,
  afterSequence: number,
  limit: number,
  from: EventSource = "audit_events",
): Promise<AuditChainRow[]> {
  const { rows } = await q.query<AuditChainRow>(
    `SELECT ${EVENT_COLUMNS}, floor(extract(epoch FROM time) * 1000000)::int8 AS "timeMicros"
     FROM ${from} WHERE writer_id = $1 AND writer_sequence > $2
     ORDER BY writer_sequence LIMIT $3`,
    [writerId, afterSequence, limit],
  );
  return rows.map((r) => ({ ...r, time: new Date(Math.floor(r.timeMicros / 1000)) }));
}

/**
 * A compact event (audit_log) as stored, the writer's number aside: codes for action
 * and outcome (audit/audit-codes.ts), NULL (null here) for a caller subject equal to
 * the developer id and for a name column of a coded action or outcome.
 */
export interface CompactFields {
  time: Date;
  writerSequence: number;
  version: number;
  action: number;
  outcome: number;
  /** The request id when it is a canonical UUID (else null and `requestId` holds it). */
  requestUuid: string | null;
  /** The caller's token id when it is a canonical UUID (else null and `callerTokenId` holds it). */
  callerTokenUuid: string | null;
  developerId: string;
  callerSubject: string | null;
  callerTokenId: string | null;
  callerIdentity: string;
  secretName: string;
  requestId: string | null;
  peer: string;
  actionName: string | null;
  outcomeName: string | null;
}

const COPY_NULL = "\\N";
const nullable = (s: string | null) => (s === null ? COPY_NULL : copyTextField(s));

/**
 * The fields of a compact event as the chain (audit/chain.ts, format 3) hashes them:
 * time to outcome_name in the order of migration 13's COPY columns, tab-separated,
 * text escaped as COPY reads it, NULL as `\N` (no text field can encode to that: a
 * backslash is doubled). Since migrations 14 and 17 the row stores the developer and
 * the secret name as numbers (encodeCompact, `stored`); the hash still covers their
 * text.
 */
export function encodeCompactFields(e: Omit<CompactFields, "developerId">, developerId: string): string {
  const [head, tail] = compactParts(e);
  return `${head}\t${copyTextField(developerId)}\t${tail.join("\t")}`;
}

/**
 * The longest secret name (or names of one call, joined) stored as a number: a longer
 * text stays in the row (a btree key of audit_names holds at most about 2.7 kB).
 */
const NUMBERED_NAME_MAX = 256;

/**
 * An event's hashed fields (encodeCompactFields) and the middle of its line of COPY
 * text (see COMPACT_COLUMNS): the same fields without the developer id, and without
 * the secret name when it is stored as a number (returned as `name`). The writer puts
 * the developer's and the name's numbers in front when it writes the batch.
 */
export function encodeCompact(e: CompactFields): { fields: string; stored: string; name: string | undefined } {
  const [head, tail] = compactParts(e);
  // join makes one flat string for the queue (see encodeChainedFields); the hashed text is hashed at once.
  const fields = `${head}\t${copyTextField(e.developerId)}\t${tail.join("\t")}`;
  const name = e.secretName !== "" && e.secretName.length <= NUMBERED_NAME_MAX ? e.secretName : undefined;
  if (name !== undefined) tail[TAIL_SECRET_NAME] = COPY_NULL;
  return { fields, stored: `${head}\t${tail.join("\t")}`, name };
}

/** Where compactParts' tail holds the secret name. */
const TAIL_SECRET_NAME = 3;

/** The encoded fields before the developer id (joined) and after it (to be joined). */
function compactParts(e: Omit<CompactFields, "developerId">): [string, string[]] {
  const f = copyTextField;
  const head = [isoTime(e.time), e.writerSequence, e.version, e.action, e.outcome, nullable(e.requestUuid), nullable(e.callerTokenUuid)];
  const tail = [
    nullable(e.callerSubject),
    nullable(e.callerTokenId),
    f(e.callerIdentity),
    f(e.secretName),
    nullable(e.requestId),
    f(e.peer),
    nullable(e.actionName),
    nullable(e.outcomeName),
  ];
  return [head.join("\t"), tail];
}

/**
 * A compact event's line of COPY text but for its writer, developer and name numbers
 * (which the writer learns when it writes): its stored fields (encodeCompact), then
 * prev_hash (only on the first event of a segment, else NULL) and hash, hex in
 * bytea's input form.
 */
export function encodeCompactEvent(fields: string, segmentPrevHash: string | undefined, hash: string): string {
  return [fields, segmentPrevHash === undefined ? COPY_NULL : `\\\\x${segmentPrevHash}`, `\\\\x${hash}`].join("\t");
}

const COMPACT_COLUMNS = [
  "writer",
  "developer",
  "name",
  "time",
  "writer_sequence",
  "version",
  "action",
  "outcome",
  "request_uuid",
  "caller_token_uuid",
  "caller_subject",
  "caller_token_id",
  "caller_identity",
  "secret_name",
  "request_id",
  "peer",
  "action_name",
  "outcome_name",
  "prev_hash",
  "hash",
] as const;

/**
 * Appends compact events of writer number `writer` in one COPY, in array order:
 * `encoded[i]` (encodeCompactEvent) about the developer numbered `developers[i]`,
 * naming the secret name numbered `names[i]` (undefined: the name is in the row).
 */
export async function insertCompactAuditEvents(
  db: Db,
  writer: number,
  developers: readonly number[],
  names: readonly (number | undefined)[],
  encoded: readonly string[],
): Promise<void> {
  if (encoded.length === 0) return;
  const lines = encoded.map((line, i) => `${writer}\t${developers[i]}\t${names[i] ?? COPY_NULL}\t${line}\n`);
  await db.copyIn("audit_log", COMPACT_COLUMNS, lines.join(""));
}

/** An append-only dictionary of the audit trail: a text stored once, which events name by its number. */
interface AuditDictionary {
  table: "audit_developers" | "audit_names";
  number: "developer" | "name";
  text: "developer_id" | "secret_name";
}

const DEVELOPERS: AuditDictionary = { table: "audit_developers", number: "developer", text: "developer_id" };
const NAMES: AuditDictionary = { table: "audit_names", number: "name", text: "secret_name" };

/**
 * The numbers of developers in audit_developers, registering those not named yet
 * (migration 14).
 */
export function registerAuditDevelopers(q: Queryable, developerIds: readonly string[]): Promise<Map<string, number>> {
  return registerTexts(q, DEVELOPERS, developerIds);
}

/** The numbers of secret names (as events store them) in audit_names, registering those not named yet (migration 17). */
export function registerAuditNames(q: Queryable, names: readonly string[]): Promise<Map<string, number>> {
  return registerTexts(q, NAMES, names);
}

/**
 * The numbers of `texts` in dictionary `d`, registering those not in it yet (ON
 * CONFLICT: another writer may name one at the same time; numbers are never reused).
 * Texts are registered in sorted order, so that two writers naming the same new ones
 * cannot deadlock.
 */
async function registerTexts(q: Queryable, d: AuditDictionary, texts: readonly string[]): Promise<Map<string, number>> {
  const sorted = [...new Set(texts)].sort();
  const select = `SELECT ${d.number} AS n, ${d.text} AS t FROM ${d.table} WHERE ${d.text} = ANY($1::text[])`;
  const { rows } = await q.query<{ n: number; t: string }>(
    `WITH ins AS (INSERT INTO ${d.table} (${d.text}) SELECT unnest($1::text[])
                  ON CONFLICT (${d.text}) DO NOTHING RETURNING ${d.number} AS n, ${d.text} AS t)
     SELECT n, t FROM ins UNION ALL ${select}`,
    [sorted],
  );
  const numbers = new Map(rows.map((r) => [r.t, r.n]));
  // A text another writer registered during this statement is neither inserted here nor in its snapshot: a new statement sees it.
  const missing = sorted.filter((t) => !numbers.has(t));
  if (missing.length > 0) {
    for (const r of (await q.query<{ n: number; t: string }>(select, [missing])).rows) numbers.set(r.t, r.n);
  }
  if (numbers.size !== sorted.length) throw new Error(`${d.table}: registration returned too few rows`);
  return numbers;
}

/**
 * Names a writer and returns its number. A writer id is one process's, ever: the
 * process claims it with `claim` (a random UUID of its own), and an id registered
 * with another claim, or before claims existed (migration 16), is refused: another
 * process uses it. Registering again with the same claim (after a lost
 * acknowledgement) returns the same number.
 */
export async function registerAuditWriter(q: Queryable, writerId: string, claim: string): Promise<number> {
  const { rows } = await q.query<{ writer: number; claim: string | null }>(
    `WITH ins AS (INSERT INTO audit_writers (writer_id, claim) VALUES ($1, $2) ON CONFLICT (writer_id) DO NOTHING RETURNING writer, claim)
     SELECT writer, claim::text FROM ins UNION ALL SELECT writer, claim::text FROM audit_writers WHERE writer_id = $1`,
    [writerId, claim],
  );
  const row = rows[0];
  if (row === undefined) throw new Error("audit writer registration returned no row");
  if (row.claim !== claim) throw new Error(`audit writer id ${writerId} is used by another process: it was registered before`);
  return row.writer;
}

/**
 * The hex hashes of one writer's compact events among `sequences`, all timed within
 * [from, to]: to tell a lost commit acknowledgement from a clash. The times bound the
 * read to a few pages (the BRIN index on time); there is no index by writer.
 */
export async function findCompactWriterHashes(
  q: Queryable,
  writer: number,
  sequences: readonly number[],
  from: Date,
  to: Date,
): Promise<Map<number, string>> {
  const { rows } = await q.query<{ writer_sequence: number; hash: string }>(
    `SELECT writer_sequence, encode(hash, 'hex') AS hash FROM audit_log
     WHERE time >= $3 AND time <= $4 AND writer = $1 AND writer_sequence = ANY($2::int8[])`,
    [writer, sequences, from, to],
  );
  return new Map(rows.map((r) => [r.writer_sequence, r.hash]));
}

/** A day in milliseconds. */
export const AUDIT_PARTITION_MS = 86_400_000;

const HOUR_MS = 3_600_000;

/**
 * How often a writer starts a new segment of its chain (audit/audit-log.ts): every
 * partition bound is a whole UTC hour (migration 15), so with a segment an hour each
 * partition, whatever its size, starts a segment.
 */
export const AUDIT_SEGMENT_HOURS = 1;

/** The partition sizes allowed (SECRETS_AUDIT_PARTITION_HOURS): whole hours that divide a day, so bounds stay aligned to UTC midnight. */
export const AUDIT_PARTITION_HOURS: readonly number[] = [1, 2, 3, 4, 6, 8, 12, 24];

/** The start (ms since the epoch) of the `hours`-long slot that holds `time`; slots are aligned to UTC midnight. */
export function auditPartitionStart(time: Date | number, hours = 24): number {
  const ms = typeof time === "number" ? time : time.getTime();
  const size = hours * HOUR_MS;
  return Math.floor(ms / size) * size;
}

/**
 * The name of the partition starting at `start` and spanning `hours`:
 * audit_log_YYYYMMDD for a whole day, else audit_log_YYYYMMDD_HH (a year before 1000
 * is zero-padded). Names sort in time order.
 */
export function auditPartitionName(start: number, hours = 24): string {
  const d = new Date(start);
  const two = (n: number) => String(n).padStart(2, "0");
  const day = `audit_log_${String(d.getUTCFullYear()).padStart(4, "0")}${two(d.getUTCMonth() + 1)}${two(d.getUTCDate())}`;
  return hours === 24 ? day : `${day}_${two(d.getUTCHours())}`;
}

const PARTITION_NAME = /^audit_log_\d{8}(_\d{2})?$/;

/**
 * The advisory lock key of audit_log's partition DDL (creating and dropping; the
 * functions of migrations 13 and 15 take it too): one process at a time.
 */
export const AUDIT_PARTITION_LOCK_KEY = 7_310_452_923;

/**
 * Covers the `hours`-long slots that hold each of `times` with partitions
 * (audit_log_cover, migration 15): a slot partly covered by partitions of another
 * size gets partitions for its gaps only.
 */
export async function createAuditPartitions(q: Queryable, times: Iterable<number>, hours = 24): Promise<void> {
  const starts = [...new Set([...times].map((t) => auditPartitionStart(t, hours)))].sort((a, b) => a - b);
  if (starts.length === 0) return;
  await q.query("SELECT audit_log_cover(s, s + make_interval(hours => $2::int)) FROM unnest($1::timestamptz[]) AS s", [
    starts.map((t) => new Date(t)),
    hours,
  ]);
}

/** A partition of audit_log and its range [start, end), ms since the epoch. */
export interface AuditPartition {
  name: string;
  start: number;
  end: number;
}

/** audit_log's partitions, oldest first, with their bounds as the catalog holds them (audit_log_partitions). */
export async function listAuditPartitions(q: Queryable): Promise<AuditPartition[]> {
  const { rows } = await q.query<{ name: string; lo: Date; hi: Date }>("SELECT name, lo, hi FROM audit_log_partitions()");
  return rows.filter((r) => PARTITION_NAME.test(r.name)).map((r) => ({ name: r.name, start: r.lo.getTime(), end: r.hi.getTime() }));
}

/**
 * Drops one partition of audit_log after recording, per writer, the head of the
 * segment it held (first and last sequence, how many events, the last hash) in
 * audit_checkpoints, in one transaction (audit_log_drop_partition). Returns the
 * number of events dropped.
 */
export async function dropAuditPartition(q: Queryable, name: string): Promise<number> {
  if (!PARTITION_NAME.test(name)) throw new Error(`not an audit partition: ${name}`);
  const { rows } = await q.query<{ n: number }>("SELECT audit_log_drop_partition($1) AS n", [name]);
  return rows[0]?.n ?? 0;
}

/** A writer of compact events. */
export interface AuditWriterRow {
  writer: number;
  writerId: string;
}

/** Every writer registered for compact events, by number. */
export async function listCompactWriters(q: Queryable): Promise<AuditWriterRow[]> {
  const { rows } = await q.query<AuditWriterRow>('SELECT writer, writer_id AS "writerId" FROM audit_writers ORDER BY writer');
  return rows;
}

/** A dropped segment's head (audit_checkpoints), hash in hex. */
export interface AuditCheckpoint {
  partitionName: string;
  firstSequence: number;
  lastSequence: number;
  events: number;
  lastHash: string;
}

/** One writer's checkpoints, by first sequence. */
export async function listCheckpoints(q: Queryable, writer: number): Promise<AuditCheckpoint[]> {
  const { rows } = await q.query<AuditCheckpoint>(
    `SELECT partition_name AS "partitionName", first_sequence AS "firstSequence", last_sequence AS "lastSequence",
            events, encode(last_hash, 'hex') AS "lastHash"
     FROM audit_checkpoints WHERE writer = $1 ORDER BY first_sequence`,
    [writer],
  );
  return rows;
}

/** A compact event's fields as read back: `developerId` and `secretName` are null if their number names nothing. */
export interface StoredCompactFields extends Omit<CompactFields, "developerId" | "secretName"> {
  developerId: string | null;
  secretName: string | null;
}

/** A compact event as the verifier reads it: its stored fields, its hashes in hex, the exact stored instant. */
export interface CompactChainRow extends StoredCompactFields {
  id: number;
  timeMicros: number;
  prevHash: string | null;
  hash: string;
}

/** A compact event as a partition's reader hands it on: with its writer's number. */
export interface PartitionChainRow extends CompactChainRow {
  writer: number;
}

const PARTITION_CURSOR = "audit_partition_events";

/**
 * Reads one partition's compact events in chain order (by writer, then sequence),
 * `pageSize` at a time, through a cursor, handing each page to `onPage` before the
 * next is read. No index serves this order (migration 16): Postgres sorts the
 * partition once, where a read page by page would scan it again for every page.
 * `tx` must be a transaction's handle, which the cursor lives in. Read through
 * audit_log by the partition's bounds (the planner reads that partition alone): the
 * service's role may read audit_log, not its partitions by name.
 */
export async function readPartitionEvents(
  tx: Queryable,
  p: AuditPartition,
  pageSize: number,
  onPage: (rows: PartitionChainRow[]) => Promise<void> | void,
): Promise<void> {
  if (!Number.isInteger(pageSize) || pageSize < 1) throw new RangeError("pageSize must be a positive integer");
  await tx.query(
    `DECLARE ${PARTITION_CURSOR} NO SCROLL CURSOR FOR
     SELECT l.writer, id, floor(extract(epoch FROM time) * 1000000)::int8 AS "timeMicros", writer_sequence AS "writerSequence",
            version, action, outcome, request_uuid::text AS "requestUuid", caller_token_uuid::text AS "callerTokenUuid",
            COALESCE(l.developer_id, d.developer_id) AS "developerId", caller_subject AS "callerSubject",
            caller_token_id AS "callerTokenId", caller_identity AS "callerIdentity",
            COALESCE(l.secret_name, n.secret_name) AS "secretName", request_id AS "requestId",
            peer,
            action_name AS "actionName", outcome_name AS "outcomeName",
            encode(prev_hash, 'hex') AS "prevHash", encode(hash, 'hex') AS hash
     FROM audit_log l LEFT JOIN audit_developers d ON d.developer = l.developer LEFT JOIN audit_names n ON n.name = l.name
     WHERE l.time >= $1 AND l.time < $2
     ORDER BY l.writer, l.writer_sequence`,
    [new Date(p.start), new Date(p.end)],
  );
  try {
    for (;;) {
      const { rows } = await tx.query<Omit<PartitionChainRow, "time">>(`FETCH ${pageSize} FROM ${PARTITION_CURSOR}`);
      if (rows.length > 0) await onPage(rows.map((r) => ({ ...r, time: new Date(Math.floor(r.timeMicros / 1000)) })));
      if (rows.length < pageSize) break;
    }
  } finally {
    // After a failed statement the transaction is aborted and the cursor gone with it.
    await tx.query(`CLOSE ${PARTITION_CURSOR}`).catch(() => undefined);
  }
}
