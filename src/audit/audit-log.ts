import { randomUUID } from "node:crypto";

import { LRUCache } from "lru-cache";

import type { Db } from "../store/db.js";
import { DbError } from "../store/db.js";
import {
  AUDIT_SEGMENT_HOURS,
  auditPartitionStart,
  createAuditPartitions,
  encodeCompact,
  encodeCompactEvent,
  findCompactWriterHashes,
  insertCompactAuditEvents,
  registerAuditDevelopers,
  registerAuditNames,
  registerAuditWriter,
} from "../store/audit-store.js";
import { GENESIS_HASH, chainHash3, compactOf, type StoredAuditEvent } from "./chain.js";
import { sinkLine, type AuditSink } from "./audit-sink.js";
import { storableEvent, storableText, type AuditEventInput } from "./audit-event.js";

/**
 * The audit writer (docs/design.md, Audit trail): one per process, queueing events in memory
 * and writing them in batches, each one COPY.
 *
 * What must stay true:
 * - Chain order. Sequence and hash are assigned when an event enters the queue, in
 *   that order, and batches are written one at a time from the front of the queue,
 *   so rows reach the table in chain order.
 * - Segments. Events are compact rows of audit_log (chain format 3), partitioned by
 *   time in partitions of whole UTC hours (a day by default). A writer starts a new
 *   segment of its chain every hour, whatever the partition size, and its events
 *   never go back to an earlier hour (an event timed before the hour of the writer's
 *   previous event is stored at that hour's start), so each partition holds whole
 *   segments, one contiguous run of the chain; the first event of each segment after
 *   the first stores the previous segment's last hash. Retention can then drop any
 *   partition, of any size, and the rest of every chain still verifies.
 * - Nothing is dropped. A failed write keeps its batch at the front and retries it
 *   with capped backoff; `onError` is told each time. A full queue makes the
 *   developer who filled it wait (back-pressure), and nobody else.
 * - What is hashed is what is stored: an event is made storable (audit-event.ts)
 *   before it is chained, so a batch can never be rejected for its content and block
 *   the queue, and the verifier recomputes exactly the hash written.
 * - The timers are unref()ed: the log never keeps a process alive. `close()` at
 *   shutdown is what writes the tail; while it waits, retries keep the process
 *   alive (with the database down, close() waits until it is back: a caller that
 *   must stop anyway bounds it with its own timeout, and the loss is what is left
 *   in `queueDepth`).
 *
 * It is one file over 300 lines because the chain head, the per-developer queues and
 * the writer share their state (sequence and hash, per-developer counts, who awaits
 * which commit) and every rule above spans all three; split, that state would have to
 * be exported and the rules read across files.
 */

export interface AuditLog {
  /** Queues the event. Resolves at once unless this developer already has `perDeveloperLimit` events waiting: then it waits (back-pressure per developer; events are never dropped). */
  record(e: AuditEventInput): Promise<void>;
  /**
   * Queues the event if its developer has room now and returns true; returns false,
   * queueing nothing, if the caller must wait with `record`. Throws where `record`
   * rejects. The hot path's form of `record`: no promise when there is room.
   */
  tryRecord(e: AuditEventInput): boolean;
  /**
   * Queues the event and resolves only once it is committed (SECRETS_AUDIT_STRICT=1 for
   * value reads). Rejects at once with AuditDownError, queueing nothing, while the
   * database or a sink is known down (`down`), and rejects the same way if a write
   * fails while the event waits: strict calls are refused promptly instead of waiting
   * for a store that may not come back before their deadline. (The event stays queued
   * then, and is written once the store is back.)
   */
  recordDurable(e: AuditEventInput): Promise<void>;
  /** Writes everything queued so far and resolves when committed. */
  flush(): Promise<void>;
  /** flush(), then stop the timer. Events recorded after close are rejected with an Error. */
  close(): Promise<void>;
  /** Events recorded and not yet committed, including those waiting for room in their developer's queue. */
  readonly queueDepth: number;
  /** True once close() was called: every event is refused from then on. */
  readonly closed: boolean;
  /**
   * What is known down: `database` while the last write to Postgres failed and none
   * has succeeded since, else the name of a sink that is down (AuditSink.up);
   * undefined when every store is up.
   */
  readonly down: string | undefined;
}

export interface AuditLogOptions {
  db: Db;
  /** This process's chain, e.g. `${replicaId}:${processStartMillis}`; unique across all processes ever. */
  writerId: string;
  /** Most events per batch; a batch this full is written at once. Default 1000. */
  batchSize?: number;
  /** Longest an event waits before its batch is written. Default 100. */
  intervalMs?: number;
  /** Events one developer may have waiting before `record` waits too. Default 1000. */
  perDeveloperLimit?: number;
  /** Longest pause between retries of a failed batch (backoff doubles from 50 ms up to this). Default 5000. */
  maxRetryDelayMs?: number;
  /** The size of a partition it makes for an event's time when none exists yet (SECRETS_AUDIT_PARTITION_HOURS). Default 24. */
  partitionHours?: number;
  /** Told of every failed batch write (the batch is kept and retried), with the number of events not yet committed. */
  onError?: (e: unknown, pending: number) => void;
  /** The clock, for an event whose time cannot be stored (invalid or outside years 1–9999). */
  now?: () => Date;
  /** Developer numbers (audit_developers) and name numbers (audit_names) the writer keeps, each most recently used first. Default 10,000 of each. */
  numberCacheSize?: number;
  /**
   * JSON-lines sinks (audit-sink.ts) that get every event too, after Postgres, in
   * chain order. An event counts as committed once Postgres and every sink took it.
   * The caller opens and closes them.
   */
  sinks?: readonly AuditSink[];
}

/**
 * An event in the queue: its row already encoded for the COPY but for the writer
 * number (one string, not an object of fifteen fields: see encodeCompactEvent), what
 * the writer needs of it, and who waits for its commit.
 */
interface Entry {
  encoded: string;
  /** Its JSON line, when there are sinks. */
  line: string | undefined;
  /** Its time as stored (ms since the epoch), and the start of its segment's hour. */
  time: number;
  segment: number;
  developerId: string;
  /** Its secret name when the row stores it as a number (encodeCompact). */
  name: string | undefined;
  writerSequence: number;
  hash: string;
  onCommit: (() => void)[] | undefined;
  /** A recordDurable call waiting for this event: rejected if a sink fails first. */
  refuse: ((e: Error) => void) | undefined;
}

/** An event made storable; its place in the chain (sequence, and the hashes it is queued with) is given by `admit`. */
type Unchained = StoredAuditEvent;

/** A record() call waiting for room in its developer's queue. */
interface Waiter {
  event: Unchained;
  admitted: () => void;
  onCommit: (() => void)[] | undefined;
  refuse: ((e: Error) => void) | undefined;
}

const RETRY_INITIAL_MS = 50;
/** SQLSTATE of a row for which no partition exists (check_violation). */
const NO_PARTITION = "23514";

export function createAuditLog(options: AuditLogOptions): AuditLog {
  const { db } = options;
  const writerId = storableText(options.writerId);
  const batchSize = options.batchSize ?? 1000;
  const intervalMs = options.intervalMs ?? 100;
  const perDeveloperLimit = options.perDeveloperLimit ?? 1000;
  const maxRetryDelayMs = options.maxRetryDelayMs ?? 5000;
  const partitionHours = options.partitionHours ?? 24;
  const now = options.now ?? (() => new Date());
  if (!Number.isInteger(batchSize) || batchSize < 1) throw new RangeError("batchSize must be a positive integer");
  if (!Number.isInteger(perDeveloperLimit) || perDeveloperLimit < 1) {
    throw new RangeError("perDeveloperLimit must be a positive integer");
  }

  let lastSequence = 0;
  let lastHash = GENESIS_HASH;
  /** The hour of the writer's current segment; none before the first event. */
  let segmentHour = Number.NEGATIVE_INFINITY;
  /** This writer's number in audit_writers, once registered (at the first write) with this process's claim. */
  let writerNumber: number | undefined;
  const claim = randomUUID();
  /** Developer and name numbers already registered: a batch asks the database only for those not in here. */
  const developerNumbers = new LRUCache<string, number>({ max: options.numberCacheSize ?? 10_000 });
  const nameNumbers = new LRUCache<string, number>({ max: options.numberCacheSize ?? 10_000 });
  const sinks = options.sinks ?? [];
  /** The highest sequence Postgres has, and each sink has: a retried batch goes only where it is missing. */
  let storedUpTo = 0;
  const sunkUpTo = sinks.map(() => 0);
  /** Admitted, not yet committed, in chain order. */
  const queue: Entry[] = [];
  /** Per developer: events in `queue`. */
  const queued = new Map<string, number>();
  /** Per developer: record() calls waiting for room, first come first served. */
  const waiting = new Map<string, Waiter[]>();
  let waitingCount = 0;
  /** Highest sequence someone awaits (recordDurable): the writer does not wait for the timer up to there. */
  let urgentUpTo = 0;
  /** flush() / close() calls in progress: while any is, nothing waits for the timer. */
  let draining = 0;
  let writing = false;
  /** The last write to Postgres failed, and none has succeeded since. */
  let databaseDown = false;
  let timer: NodeJS.Timeout | undefined;
  let closed = false;

  /** Give the event its place in the chain and queue it. */
  function admit(row: Unchained, onCommit: (() => void)[] | undefined, refuse?: (e: Error) => void): void {
    row.writerSequence = lastSequence + 1;
    let segment = auditPartitionStart(row.time, AUDIT_SEGMENT_HOURS);
    if (segment < segmentHour) {
      row.time = new Date(segmentHour);
      segment = segmentHour;
    }
    const startsSegment = segment > segmentHour && lastSequence > 0;
    segmentHour = segment;
    const { fields, stored, name } = encodeCompact(compactOf(row));
    const hash = chainHash3(lastHash, writerId, fields);
    const encoded = encodeCompactEvent(stored, startsSegment ? lastHash : undefined, hash);
    const line = sinks.length > 0 ? sinkLine(row, lastHash, hash) : undefined;
    lastSequence = row.writerSequence;
    lastHash = hash;
    queue.push({
      encoded,
      line,
      time: row.time.getTime(),
      segment,
      developerId: row.developerId,
      name,
      writerSequence: row.writerSequence,
      hash,
      onCommit,
      refuse,
    });
    queued.set(row.developerId, (queued.get(row.developerId) ?? 0) + 1);
    if (onCommit !== undefined) urgentUpTo = lastSequence;
    schedule();
  }

  /** Admit waiters of `developerId` while their queue has room. */
  function admitWaiting(developerId: string): void {
    const list = waiting.get(developerId);
    while (list !== undefined && list.length > 0 && (queued.get(developerId) ?? 0) < perDeveloperLimit) {
      const w = list.shift() as Waiter;
      waitingCount -= 1;
      admit(w.event, w.onCommit, w.refuse);
      w.admitted();
    }
    if (list !== undefined && list.length === 0) waiting.delete(developerId);
  }

  /** The event made storable; throws if it cannot be (or the log is closed). */
  function prepare(input: AuditEventInput): Unchained {
    if (closed) throw new Error("audit log is closed");
    try {
      return storableEvent(input, writerId, now);
    } catch (e) {
      throw e instanceof Error ? e : new Error("unstorable audit event");
    }
  }

  /** Whether the developer's queue has room now (and nobody of theirs waits ahead). Keyed by the stored developer id, which is what the writer counts down on commit. */
  function hasRoom(dev: string): boolean {
    return !waiting.has(dev) && (queued.get(dev) ?? 0) < perDeveloperLimit;
  }

  /** Queue the event now if its developer has room; otherwise wait in line. */
  function enqueue(input: AuditEventInput, onCommit: (() => void)[] | undefined, refuse?: (e: Error) => void): Promise<void> {
    let event: Unchained;
    try {
      event = prepare(input);
    } catch (e) {
      return Promise.reject(e as Error);
    }
    const dev = event.developerId;
    if (hasRoom(dev)) {
      admit(event, onCommit, refuse);
      return Promise.resolve();
    }
    return new Promise<void>((admitted) => {
      const list = waiting.get(dev) ?? [];
      list.push({ event, admitted, onCommit, refuse });
      waiting.set(dev, list);
      waitingCount += 1;
    });
  }

  /** Start writing now if a batch is full or someone awaits a commit; otherwise within intervalMs. */
  function schedule(): void {
    if (writing || queue.length === 0) return;
    if (due()) {
      void pump();
      return;
    }
    if (timer === undefined) {
      timer = setTimeout(() => {
        timer = undefined;
        void pump();
      }, intervalMs);
      timer.unref();
    }
  }

  /** The one writer: batches from the front of the queue, one COPY at a time, until nothing is due. */
  async function pump(): Promise<void> {
    if (writing) return;
    writing = true;
    if (timer !== undefined) {
      clearTimeout(timer);
      timer = undefined;
    }
    try {
      let failures = 0;
      while (queue.length > 0) {
        const batch = queue.slice(0, batchSize);
        try {
          await writeBatch(batch, failures > 0);
          failures = 0;
        } catch (e) {
          failures += 1;
          try {
            options.onError?.(e, depth());
          } catch {
            // A failing reporter must not stop the writer.
          }
          const sink = e instanceof SinkWriteError ? e.sink : undefined;
          refuseDurable(new AuditDownError(sink?.name ?? DATABASE));
          // Unref'd like the batch timer, except once close() waits: then the tail must be written.
          // A sink that comes back (a socket reconnects) cuts the wait short.
          const pause = sleep(Math.min(maxRetryDelayMs, RETRY_INITIAL_MS * 2 ** Math.min(failures - 1, 20)), !closed);
          await (sink === undefined || sink.up ? pause : Promise.race([pause, sink.whenUp().then(macrotask)]));
          continue;
        }
        queue.splice(0, batch.length);
        const developers = new Set<string>();
        for (const entry of batch) {
          const dev = entry.developerId;
          queued.set(dev, (queued.get(dev) ?? 1) - 1);
          if (queued.get(dev) === 0) queued.delete(dev);
          developers.add(dev);
          for (const done of entry.onCommit ?? []) done();
        }
        for (const dev of developers) admitWaiting(dev);
        // Not due yet: leave the rest to the timer, so a trickle of events still batches.
        if (!due()) break;
      }
    } finally {
      writing = false;
      schedule();
    }
  }

  /**
   * One COPY. The writer registers its id at its first write (an id another process
   * registered is refused). A retry first looks for the batch, within its times:
   * the previous attempt may have committed with its acknowledgement lost. If every
   * row is there with the same hash, the batch is written; if some other row holds
   * one of its sequences, another process uses this writer id, which must never
   * happen: the error is reported and retried. A day with no partition yet (the
   * retention job makes them ahead) is created and the COPY run again. Then each sink
   * gets the lines it does not have yet.
   */
  async function writeBatch(entries: readonly Entry[], retry: boolean): Promise<void> {
    const last = (entries.at(-1) as Entry).writerSequence;
    if (storedUpTo < last) {
      // A retried batch may have grown since its first attempt: Postgres gets only what it lacks.
      const from = storedUpTo;
      try {
        await storeBatch(
          entries.filter((e) => e.writerSequence > from),
          retry,
        );
      } catch (e) {
        databaseDown = true;
        throw e;
      }
      databaseDown = false;
      storedUpTo = last;
    }
    for (const [i, sink] of sinks.entries()) {
      const from = sunkUpTo[i] as number;
      if (from >= last) continue;
      try {
        await sink.write(entries.flatMap((e) => (e.writerSequence > from && e.line !== undefined ? [e.line] : [])).join(""));
      } catch (e) {
        throw new SinkWriteError(sink, e);
      }
      sunkUpTo[i] = last;
    }
  }

  /** A write failed: every recordDurable still waiting is refused (its event stays queued). */
  function refuseDurable(e: Error): void {
    const take = (holder: { refuse: ((e: Error) => void) | undefined }) => {
      const refuse = holder.refuse;
      holder.refuse = undefined;
      refuse?.(e);
    };
    for (const entry of queue) take(entry);
    for (const list of waiting.values()) for (const w of list) take(w);
  }

  function down(): string | undefined {
    if (databaseDown) return DATABASE;
    for (const sink of sinks) if (!sink.up) return sink.name;
    return undefined;
  }

  async function storeBatch(entries: readonly Entry[], retry: boolean): Promise<void> {
    writerNumber ??= await registerAuditWriter(db, writerId, claim);
    const writer = writerNumber;
    if (retry) {
      const times = entries.map((r) => r.time);
      const stored = await findCompactWriterHashes(
        db,
        writer,
        entries.map((r) => r.writerSequence),
        new Date(Math.min(...times)),
        new Date(Math.max(...times)),
      );
      if (stored.size > 0) {
        if (entries.every((r) => stored.get(r.writerSequence) === r.hash)) return;
        throw new Error(`audit writer id ${writerId} is used by another process: its sequences clash`);
      }
    }
    const developerIds = await numbersOf(entries.map((e) => e.developerId), developerNumbers, registerAuditDevelopers);
    const nameIds = await numbersOf(
      entries.flatMap((e) => (e.name === undefined ? [] : [e.name])),
      nameNumbers,
      registerAuditNames,
    );
    const developers = entries.map((e) => developerIds.get(e.developerId) as number);
    const names = entries.map((e) => (e.name === undefined ? undefined : nameIds.get(e.name)));
    const lines = entries.map((e) => e.encoded);
    try {
      await insertCompactAuditEvents(db, writer, developers, names, lines);
    } catch (e) {
      if (!(e instanceof DbError && e.code === NO_PARTITION)) throw e;
      await createAuditPartitions(db, entries.map((r) => r.segment), partitionHours);
      await insertCompactAuditEvents(db, writer, developers, names, lines);
    }
  }

  /** The numbers of `texts` (developer ids or names): from the cache, and those not in it registered in one statement. */
  async function numbersOf(
    texts: readonly string[],
    cache: LRUCache<string, number>,
    register: (q: Db, texts: readonly string[]) => Promise<Map<string, number>>,
  ): Promise<Map<string, number>> {
    const numbers = new Map<string, number>();
    const missing = new Set<string>();
    for (const text of texts) {
      if (numbers.has(text) || missing.has(text)) continue;
      const n = cache.get(text);
      if (n === undefined) missing.add(text);
      else numbers.set(text, n);
    }
    if (missing.size === 0) return numbers;
    for (const [text, n] of await register(db, [...missing])) {
      numbers.set(text, n);
      cache.set(text, n);
    }
    return numbers;
  }

  /** Whether the front of the queue should be written now rather than when the timer fires. */
  function due(): boolean {
    const front = queue[0];
    if (front === undefined) return false;
    return queue.length >= batchSize || draining > 0 || front.writerSequence <= urgentUpTo;
  }

  function depth(): number {
    return queue.length + waitingCount;
  }

  /** Resolves when every event recorded so far (queued or waiting for room) is committed. */
  function committedAll(): Promise<void> {
    const targets: { onCommit: (() => void)[] | undefined }[] = [];
    const last = queue.at(-1);
    if (last !== undefined) targets.push(last);
    // A developer's waiters are admitted in order, and commits happen in order:
    // once the last one of each is committed, so is everything before it.
    for (const list of waiting.values()) {
      const w = list.at(-1);
      if (w !== undefined) targets.push(w);
    }
    if (targets.length === 0) return Promise.resolve();
    draining += 1;
    const done = Promise.all(
      targets.map(
        (t) =>
          new Promise<void>((resolve) => {
            (t.onCommit ??= []).push(resolve);
          }),
      ),
    ).then(() => {
      draining -= 1;
    });
    schedule();
    return done;
  }

  return {
    record(e) {
      return enqueue(e, undefined);
    },

    tryRecord(e) {
      const event = prepare(e);
      if (!hasRoom(event.developerId)) return false;
      admit(event, undefined);
      return true;
    },

    recordDurable(e) {
      const what = down();
      if (what !== undefined) return Promise.reject(new AuditDownError(what));
      return new Promise<void>((resolve, reject) => {
        enqueue(e, [resolve], reject).catch(reject);
      });
    },

    flush() {
      return committedAll();
    },

    async close() {
      closed = true;
      await committedAll();
      if (timer !== undefined) {
        clearTimeout(timer);
        timer = undefined;
      }
    },

    get queueDepth() {
      return depth();
    },

    get closed() {
      return closed;
    },

    get down() {
      return down();
    },
  };
}

/** What `down` names when Postgres is. */
const DATABASE = "database";

/** A strict record refused because the database or a sink is known down (`what` says which; never an event's content). */
export class AuditDownError extends Error {
  constructor(readonly what: string) {
    super(what === DATABASE ? "the audit database is down" : `audit sink ${what} is down`);
    this.name = "AuditDownError";
  }
}

/** A batch write that failed at a sink (Postgres has the batch): says which sink, keeps the cause. */
class SinkWriteError extends Error {
  constructor(
    readonly sink: AuditSink,
    cause: unknown,
  ) {
    super(`audit sink ${sink.name} failed`, { cause });
    this.name = "SinkWriteError";
  }
}

/** A turn of the event loop: a retry never runs in a loop of microtasks alone, which would starve I/O and timers. */
function macrotask(): Promise<void> {
  return new Promise((resolve) => setImmediate(resolve));
}

function sleep(ms: number, unref: boolean): Promise<void> {
  return new Promise((resolve) => {
    const t = setTimeout(resolve, ms);
    if (unref) t.unref();
  });
}
