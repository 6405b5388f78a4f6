import type { Db } from "../store/db.js";
import {
  AUDIT_PARTITION_LOCK_KEY,
  AUDIT_PARTITION_MS,
  auditPartitionStart,
  createAuditPartitions,
  dropAuditPartition,
  listAuditPartitions,
} from "../store/audit-store.js";

/**
 * The audit partition job (docs/design.md, Audit trail): makes the partitions of
 * audit_log for today and the days ahead, and drops those wholly older than the
 * retention, each after recording its segments' heads (audit_checkpoints) in the same
 * transaction. Rows are never deleted. Every replica runs it; each run takes the
 * partition lock with pg_try_advisory_xact_lock, so one replica does the work and the
 * others skip that run.
 */
export interface AuditRetention {
  /** One run now; `ran` is false when another process held the lock. */
  runOnce(): Promise<AuditRetentionRun>;
  /** Runs now and then every `intervalMs`. */
  start(): void;
  /** Stops the timer and waits for a run in progress. */
  stop(): Promise<void>;
}

export interface AuditRetentionRun {
  ran: boolean;
  created: string[];
  dropped: { partition: string; events: number }[];
}

export interface AuditRetentionOptions {
  db: Pick<Db, "transaction">;
  /** Days of events kept (SECRETS_AUDIT_RETENTION_DAYS); 0 keeps every partition. */
  retentionDays: number;
  /** Partitions made ahead of today. Default 3. */
  daysAhead?: number;
  /** Between runs. Default one hour. */
  intervalMs?: number;
  now?: () => Date;
  onError?: (e: unknown) => void;
  onRun?: (run: AuditRetentionRun) => void;
}

export function createAuditRetention(options: AuditRetentionOptions): AuditRetention {
  const { db, retentionDays } = options;
  const daysAhead = options.daysAhead ?? 3;
  const intervalMs = options.intervalMs ?? 3_600_000;
  const now = options.now ?? (() => new Date());
  if (!Number.isInteger(retentionDays) || retentionDays < 0) throw new RangeError("retentionDays must be a whole number of days, 0 or more");
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();

  async function runOnce(): Promise<AuditRetentionRun> {
    const at = now().getTime();
    const today = auditPartitionStart(at);
    // A partition is dropped once every event it can hold is older than the retention.
    const cutoff = at - retentionDays * AUDIT_PARTITION_MS;
    return db.transaction(async (tx) => {
      const { rows } = await tx.query<{ locked: boolean }>(`SELECT pg_try_advisory_xact_lock(${AUDIT_PARTITION_LOCK_KEY}) AS locked`);
      if (rows[0]?.locked !== true) return { ran: false, created: [], dropped: [] };
      const before = new Set((await listAuditPartitions(tx)).map((p) => p.name));
      const ahead = Array.from({ length: daysAhead + 1 }, (_, i) => today + i * AUDIT_PARTITION_MS);
      await createAuditPartitions(tx, ahead);
      const partitions = await listAuditPartitions(tx);
      const created = partitions.filter((p) => !before.has(p.name)).map((p) => p.name);
      const dropped: AuditRetentionRun["dropped"] = [];
      if (retentionDays > 0) {
        for (const p of partitions) {
          if (p.start + AUDIT_PARTITION_MS > cutoff) continue;
          dropped.push({ partition: p.name, events: await dropAuditPartition(tx, p.name) });
        }
      }
      return { ran: true, created, dropped };
    });
  }

  async function tick(): Promise<void> {
    try {
      const run = await runOnce();
      options.onRun?.(run);
    } catch (e) {
      options.onError?.(e);
    }
  }

  return {
    runOnce,
    start() {
      if (timer !== undefined) return;
      running = tick();
      timer = setInterval(() => {
        running = tick();
      }, intervalMs);
      timer.unref();
    },
    async stop() {
      if (timer !== undefined) clearInterval(timer);
      timer = undefined;
      await running;
    },
  };
}
