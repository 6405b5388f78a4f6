import type { SecretCache } from "../cache/secret-cache.js";
import type { Db, Queryable } from "../store/db.js";
import { purgeDue, type PurgedRow } from "../store/bin-store.js";
import { appendChanges, trimChanges } from "../store/change-log.js";
import { retryConflicts } from "../store/conflicts.js";
import {
  binExpired,
  findExpired,
  markRotationsDue,
  nextLifecycleTime,
  type ExpiredRow,
  type RotationDueRow,
} from "../store/lifecycle-store.js";

/**
 * The time-driven changes (docs/design.md, Expiry and rotation schedules): expiry
 * moves a secret to the recovery bin, a rotation schedule records that a rotation is
 * due, the purge removes what has stayed in the bin past its window, and the change
 * log drops what is past its retention. Every replica runs them; the
 * rows each pass changes are claimed with FOR UPDATE SKIP LOCKED and re-checked
 * under the lock (store/lifecycle-store.ts, store/bin-store.ts), so each change is
 * made once whichever replicas run at once, and each gets one audit event, queued
 * after its transaction commits.
 *
 * An expiry changes what a name reads, so it is fenced in the cache like any write
 * (docs/design.md, The cache). A due rotation and a purge change nothing a name
 * reads and need no fence.
 *
 * A pass runs every `intervalMs`, and sooner when a time is due before then: the
 * earliest one the database holds, read after each pass, or one a write on this
 * replica has just set (`wake`).
 */
export interface LifecycleJobs {
  /** Runs every change due at the clock's time, in batches; returns how many of each were made. */
  runDue(): Promise<LifecycleCounts>;
  /** Runs a pass no later than `at` (a write on this replica has just set that time). */
  wake(at: Date): void;
  /** Starts the timer: the first pass runs at once. */
  start(): void;
  /** Stops the timer and waits for a running pass. */
  stop(): Promise<void>;
}

export interface LifecycleCounts {
  expired: number;
  rotationsDue: number;
  purged: number;
  /** Change-log rows past their retention, dropped. */
  changesTrimmed: number;
}

export interface LifecycleEvents {
  expired(row: ExpiredRow): Promise<void>;
  rotationDue(row: RotationDueRow): Promise<void>;
  purged(row: PurgedRow): Promise<void>;
}

export interface LifecycleJobsDeps {
  db: Db;
  cache: SecretCache;
  /** The clock every due time is compared with. */
  now: () => Date;
  /** Days an expired secret stays in the recovery bin (SECRETS_RECOVERY_WINDOW_DAYS). */
  recoveryWindowDays: number;
  /** Rows changed per transaction. */
  batchSize: number;
  /** How long the change log keeps a change (SECRETS_WATCH_RETENTION_HOURS). */
  changeRetentionMs: number;
  /** The longest time between passes. */
  intervalMs: number;
  /** Told of each change after its transaction commits (the audit events). */
  events: LifecycleEvents;
  onError: (what: string, e: unknown) => void;
}

export type { ExpiredRow, PurgedRow, RotationDueRow };

const DAY_MS = 86_400_000;
/** setTimeout's longest delay. */
const MAX_DELAY_MS = 2 ** 31 - 1;

export function createLifecycleJobs(deps: LifecycleJobsDeps): LifecycleJobs {
  const { db, cache, now, batchSize, events } = deps;
  let timer: NodeJS.Timeout | undefined;
  /** When the armed timer fires, in the clock's milliseconds. */
  let timerAt = Infinity;
  let running: Promise<unknown> | undefined;
  /** The earliest time a wake asked for while a pass ran. */
  let wokenFor = Infinity;
  let stopped = true;

  /** Batches of expired secrets, each developer's names fenced together in the cache. */
  async function expireDue(): Promise<number> {
    let total = 0;
    for (;;) {
      const at = now();
      const due = await findExpired(db, at, batchSize);
      let expired = 0;
      for (const [developerId, own] of groupByDeveloper(due)) {
        const names = own.map((d) => d.name);
        const purgeTime = new Date(at.getTime() + deps.recoveryWindowDays * DAY_MS);
        await cache.beginWrite(developerId, names);
        let rows: ExpiredRow[];
        try {
          rows = await retryConflicts(() =>
            db.transaction(async (tx) => {
              const binned = await binExpired(tx, developerId, names, at, purgeTime);
              if (binned.length > 0) await appendChanges(tx, developerId, binned.map((r) => ({ kind: "deleted", name: r.name, version: r.version })), at);
              return binned;
            }),
          );
        } finally {
          await cache.endWrite(developerId, names);
        }
        for (const row of rows) await events.expired(row);
        expired += rows.length;
      }
      total += expired;
      // A full batch of which none moved was held by another replica: it will report them.
      if (due.length < batchSize || expired === 0) return total;
    }
  }

  /** Runs one claimed batch change after another until a batch comes back short; returns how many rows changed. */
  async function inBatches<R>(change: (tx: Queryable, at: Date) => Promise<R[]>, record: (row: R) => Promise<void>): Promise<number> {
    let total = 0;
    for (;;) {
      const at = now();
      const rows = await retryConflicts(() => db.transaction((tx) => change(tx, at)));
      for (const row of rows) await record(row);
      total += rows.length;
      if (rows.length < batchSize) return total;
    }
  }

  /** The change log's rows past their retention, in batches (any replica; a row deleted twice is deleted once). */
  async function trimmed(): Promise<number> {
    let total = 0;
    for (;;) {
      const before = new Date(now().getTime() - deps.changeRetentionMs);
      const n = await retryConflicts(() => db.transaction((tx) => trimChanges(tx, before, batchSize)));
      total += n;
      if (n < batchSize) return total;
    }
  }

  async function runDue(): Promise<LifecycleCounts> {
    // Expiry first: a secret that expires and is due for rotation at once is not reminded about.
    const expired = await expireDue();
    const due = await inBatches(async (tx, at) => {
      const rows = await markRotationsDue(tx, at, batchSize);
      const byDeveloper = groupByDeveloper(rows);
      // In developer order: two replicas' batches then take the developers' revision rows in one order.
      for (const developerId of [...byDeveloper.keys()].sort()) {
        const own = byDeveloper.get(developerId)!;
        await appendChanges(tx, developerId, own.map((r) => ({ kind: "rotationDue", name: r.name, version: r.version })), at);
      }
      return rows;
    }, events.rotationDue);
    const purged = await inBatches((tx, at) => purgeDue(tx, at, batchSize), events.purged);
    const changesTrimmed = await trimmed();
    return { expired, rotationsDue: due, purged, changesTrimmed };
  }

  /** Arms the timer for `atMs`, unless it is already armed for that time or earlier. */
  function armFor(atMs: number): void {
    if (stopped || running !== undefined || atMs >= timerAt) return;
    clearTimeout(timer);
    timerAt = atMs;
    const delay = Math.min(Math.max(atMs - now().getTime(), 0), deps.intervalMs, MAX_DELAY_MS);
    timer = setTimeout(pass, delay);
    timer.unref();
  }

  function pass(): void {
    timer = undefined;
    timerAt = Infinity;
    running = (async () => {
      try {
        await runDue();
      } catch (e) {
        deps.onError("secret lifecycle job", e);
      }
      try {
        return (await nextLifecycleTime(db))?.getTime() ?? Infinity;
      } catch (e) {
        deps.onError("secret lifecycle schedule", e);
        return Infinity;
      }
    })().then((nextMs) => {
      running = undefined;
      const woken = wokenFor;
      wokenFor = Infinity;
      armFor(Math.min(nextMs, woken, now().getTime() + deps.intervalMs));
    });
  }

  return {
    runDue,
    wake(at) {
      if (running !== undefined) wokenFor = Math.min(wokenFor, at.getTime());
      else armFor(at.getTime());
    },
    start() {
      stopped = false;
      armFor(now().getTime());
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      timer = undefined;
      await running;
    },
  };
}

/** `rows` by developer, each developer's in their order in `rows`. */
function groupByDeveloper<R extends { developerId: string }>(rows: readonly R[]): Map<string, R[]> {
  const groups = new Map<string, R[]>();
  for (const r of rows) {
    const group = groups.get(r.developerId);
    if (group) group.push(r);
    else groups.set(r.developerId, [r]);
  }
  return groups;
}
