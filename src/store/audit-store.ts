import { selectAs } from "./columns.js";
import { copyTextField, type Db, type Queryable } from "./db.js";

/**
 * The SQL of the audit trail. The table is append-only (a trigger rejects UPDATE,
 * DELETE and TRUNCATE), so this file only inserts and reads. Listing is always
 * filtered by developer id; the verifier's reads are per writer.
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
 * Appends encoded events in one COPY, in array order (ids increase in that order):
 * the cheapest way for Postgres to take many rows, and an audit row is written for
 * every call.
 */
export async function insertEncodedAuditEvents(db: Db, encoded: readonly string[]): Promise<void> {
  if (encoded.length === 0) return;
  await db.copyIn("audit_events", ENCODED_COLUMNS, `${encoded.join("\n")}\n`);
}

/** The (sequence, hash) pairs of one writer's events among `sequences`: to tell a lost commit acknowledgement from a clash. */
export async function findWriterHashes(
  q: Queryable,
  writerId: string,
  sequences: readonly number[],
): Promise<Map<number, string>> {
  const { rows } = await q.query<{ writer_sequence: number; hash: string }>(
    "SELECT writer_sequence, hash FROM audit_events WHERE writer_id = $1 AND writer_sequence = ANY($2::int8[])",
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

/** One page of a developer's events, newest (highest id) first. */
export async function listAuditEvents(q: Queryable, l: AuditListQuery): Promise<AuditEventRow[]> {
  const params: unknown[] = [l.developerId, l.limit];
  const where = ["developer_id = $1"];
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
  const { rows } = await q.query<AuditEventRow>(
    `SELECT ${EVENT_COLUMNS} FROM audit_events WHERE ${where.join(" AND ")} ORDER BY id DESC LIMIT $2`,
    params,
  );
  return rows;
}

/** Every writer that has events, with how many, ordered by writer id. */
export async function listAuditWriters(q: Queryable): Promise<{ writerId: string; events: number }[]> {
  const { rows } = await q.query<{ writer_id: string; n: number }>(
    "SELECT writer_id, count(*) AS n FROM audit_events GROUP BY writer_id ORDER BY writer_id",
  );
  return rows.map((r) => ({ writerId: r.writer_id, events: r.n }));
}

/** One page of a writer's events in chain order: sequences strictly after `afterSequence`. */
export async function listWriterEvents(
  q: Queryable,
  writerId: string,
  afterSequence: number,
  limit: number,
): Promise<AuditChainRow[]> {
  const { rows } = await q.query<AuditChainRow>(
    `SELECT ${EVENT_COLUMNS}, floor(extract(epoch FROM time) * 1000000)::int8 AS "timeMicros"
     FROM audit_events WHERE writer_id = $1 AND writer_sequence > $2
     ORDER BY writer_sequence LIMIT $3`,
    [writerId, afterSequence, limit],
  );
  return rows.map((r) => ({ ...r, time: new Date(Math.floor(r.timeMicros / 1000)) }));
}
