import type { Db } from "../store/db.js";
import { purgeDue, type PurgedRow } from "../store/bin-store.js";
import { retryConflicts } from "../store/conflicts.js";

/**
 * The recovery bin's purge job (docs/design.md, The recovery bin). Every replica runs
 * it; the rows each pass deletes are claimed with FOR UPDATE SKIP LOCKED, as the
 * key jobs claim data keys (store/master-key-store.ts), so each secret is purged by
 * exactly one transaction whichever replicas run at once, and a restore that holds
 * the row either wins or waits and then finds it gone. Purging removes the rows and
 * their ciphertexts; it changes nothing a name reads (binned secrets are invisible
 * by name), so it needs no cache fence.
 */
export interface BinPurge {
  /** Purges everything due at the clock's time, in batches; returns how many secrets went. */
  purgeDue(): Promise<number>;
  /** Runs `purgeDue` every `intervalMs` until `stop`. */
  start(): void;
  /** Stops the timer and waits for a running pass. */
  stop(): Promise<void>;
}

export interface BinPurgeDeps {
  db: Db;
  /** The clock a secret's purge time is compared with. */
  now: () => Date;
  /** Secrets deleted per transaction. */
  batchSize: number;
  intervalMs: number;
  /** Told of each purged secret after its transaction commits (the audit event). */
  onPurged: (row: PurgedRow) => Promise<void>;
  onError: (what: string, e: unknown) => void;
}

export type { PurgedRow };

export function createBinPurge(deps: BinPurgeDeps): BinPurge {
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> | undefined;
  let stopped = true;

  async function purgeAll(): Promise<number> {
    let total = 0;
    for (;;) {
      const at = deps.now();
      const purged = await retryConflicts(() => deps.db.transaction((tx) => purgeDue(tx, at, deps.batchSize)));
      for (const row of purged) await deps.onPurged(row);
      total += purged.length;
      if (purged.length < deps.batchSize) return total;
    }
  }

  function schedule(): void {
    if (stopped) return;
    timer = setTimeout(() => {
      running = purgeAll()
        .catch((e: unknown) => deps.onError("recovery bin purge", e))
        .finally(() => {
          running = undefined;
          schedule();
        });
    }, deps.intervalMs);
    timer.unref();
  }

  return {
    purgeDue: purgeAll,
    start() {
      stopped = false;
      schedule();
    },
    async stop() {
      stopped = true;
      clearTimeout(timer);
      await running;
    },
  };
}
