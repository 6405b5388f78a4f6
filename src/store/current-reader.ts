import type { Db } from "./db.js";
import { findSealedCurrent, findSealedCurrentOfMany, type SealedVersionRow } from "./secret-store.js";

/**
 * Reads of current sealed values (the cache misses of AccessSecret and
 * ResolveSecrets, and every such read when there is no value cache), coalesced
 * across concurrent calls: "smart batching". A read made while fewer than
 * MAX_IN_FLIGHT batches are on the wire goes out at the end of this event-loop
 * turn, with the others made in it (the requests of one socket read arrive in one
 * turn); reads made while the wire is full wait for a batch to come back and then
 * go out together. Under load one query serves many calls, which is what a lookup
 * costs most on a machine where Postgres shares the cores: the round trip (system
 * calls on both sides) and the statement's parse and plan, not the index probe. At
 * one call in flight it adds one setImmediate.
 *
 * Each batch is one statement, so every read in it sees one snapshot taken after
 * the read was asked for: what a read of its own would have seen, for the cache's
 * coherence argument (src/cache/secret-cache.ts) as for anything else. Rows are
 * handed back by the developer id and name read from the row itself, so a caller
 * only ever receives its own developer's secrets. A failed batch fails every read
 * in it, with the same error a read of its own would have had.
 */

export type CurrentReader = (developerId: string, names: readonly string[]) => Promise<SealedVersionRow[]>;

interface PendingRead {
  developerId: string;
  names: readonly string[];
  resolve: (rows: SealedVersionRow[]) => void;
  reject: (e: unknown) => void;
}

/** Batches on the wire at once: one per Postgres core this machine class has. */
const MAX_IN_FLIGHT = 2;
/** Most (developer, name) pairs in one statement; more wait for the next. */
const MAX_BATCH_NAMES = 1_000;
/** A batch unanswered this long no longer holds back the reads behind it. */
const STALL_MS = 25;

export function createCurrentReader(db: Db): CurrentReader {
  const queue: PendingRead[] = [];
  /** The batches on the wire, by when each was sent. */
  const inFlight = new Set<{ sentAt: number }>();
  let scheduled = false;

  const wireFull = (now: number) => {
    if (inFlight.size < MAX_IN_FLIGHT) return false;
    for (const b of inFlight) if (now - b.sentAt <= STALL_MS) return true;
    return false;
  };

  function schedule(): void {
    if (scheduled || queue.length === 0 || wireFull(Date.now())) return;
    scheduled = true;
    setImmediate(send);
  }

  function send(): void {
    scheduled = false;
    if (queue.length === 0) return;
    let size = 0;
    let n = 0;
    while (n < queue.length && (n === 0 || size + (queue[n] as PendingRead).names.length <= MAX_BATCH_NAMES)) {
      size += (queue[n] as PendingRead).names.length;
      n += 1;
    }
    const batch = queue.splice(0, n);
    const onWire = { sentAt: Date.now() };
    inFlight.add(onWire);
    readBatch(batch).then(
      (byDeveloper) => {
        for (const r of batch) {
          const own = byDeveloper.get(r.developerId);
          // Each secret once, as a query of its own would return it.
          r.resolve(own === undefined ? [] : [...new Set(r.names)].flatMap((name) => own.get(name) ?? []));
        }
      },
      (e: unknown) => {
        for (const r of batch) r.reject(e);
      },
    ).finally(() => {
      inFlight.delete(onWire);
      schedule();
    });
    schedule(); // more than one batch's worth may be waiting
  }

  /**
   * The batch's rows by developer and name. One developer's batch (the usual one)
   * takes the plain query, which Postgres plans faster than a join on unnest
   * (measured: about 0.1 ms a query); several developers' take the join.
   */
  async function readBatch(batch: readonly PendingRead[]): Promise<Map<string, Map<string, SealedVersionRow>>> {
    const [only, ...others] = new Set(batch.map((r) => r.developerId));
    const rows =
      only !== undefined && others.length === 0
        ? (await findSealedCurrent(db, only, [...new Set(batch.flatMap((r) => r.names))])).map((row) => ({ ...row, developerId: only }))
        : await findSealedCurrentOfMany(db, batch.flatMap((r) => r.names.map((name) => ({ developerId: r.developerId, name }))));
    const byDeveloper = new Map<string, Map<string, SealedVersionRow>>();
    for (const { developerId, ...row } of rows) {
      let names = byDeveloper.get(developerId);
      if (names === undefined) byDeveloper.set(developerId, (names = new Map()));
      names.set(row.name, row);
    }
    return byDeveloper;
  }

  return (developerId, names) => {
    if (names.length === 0) return Promise.resolve([]);
    return new Promise((resolve, reject) => {
      queue.push({ developerId, names, resolve, reject });
      schedule();
    });
  };
}
