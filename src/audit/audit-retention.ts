import type { Db } from "../store/db.js";
import {
  AUDIT_PARTITION_HOURS,
  AUDIT_PARTITION_LOCK_KEY,
  AUDIT_PARTITION_MS,
  auditPartitionStart,
  createAuditPartitions,
  dropAuditPartition,
  listAuditPartitions,
} from "../store/audit-store.js";
import { exportAuditPartition } from "./audit-export.js";

/**
 * The audit partition job (docs/design.md, Audit trail): makes the partitions of
 * audit_log for now and the days ahead, `partitionHours` long, and drops those wholly
 * older than the retention, each after recording its segments' heads
 * (audit_checkpoints) in the same transaction, and, with `exportDir`, after exporting
 * its events to a file (audit-export.ts). Rows are never deleted. Every replica runs
 * it; each run takes the partition lock with pg_try_advisory_xact_lock, so one replica
 * does the work and the others skip that run.
 *
 * After a change of partition size, the partitions made before stay as they are and
 * new ones fill the time after them (audit_log_cover): a partition is dropped by its
 * own bounds, whatever its size. A partition whose export fails is not dropped, nor
 * any newer one in that run: the run reports it (`exportFailed`) and the next run
 * tries again.
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
  /** The partition whose export failed (it and newer ones were kept), and why. */
  exportFailed?: { partition: string; error: unknown };
}

export interface AuditRetentionOptions {
  db: Pick<Db, "transaction">;
  /** Days of events kept (SECRETS_AUDIT_RETENTION_DAYS); 0 keeps every partition. */
  retentionDays: number;
  /** Hours a new partition spans (SECRETS_AUDIT_PARTITION_HOURS): one of AUDIT_PARTITION_HOURS. Default 24. */
  partitionHours?: number;
  /** Where a partition is exported before it is dropped (SECRETS_AUDIT_EXPORT_DIR); none: dropped without export. */
  exportDir?: string;
  /** Days of partitions made ahead of now. Default 3. */
  daysAhead?: number;
  /** Between runs. Default one hour. */
  intervalMs?: number;
  now?: () => Date;
  onError?: (e: unknown) => void;
  onRun?: (run: AuditRetentionRun) => void;
}

export function createAuditRetention(options: AuditRetentionOptions): AuditRetention {
  const { db, retentionDays, exportDir } = options;
  const partitionHours = options.partitionHours ?? 24;
  const daysAhead = options.daysAhead ?? 3;
  const intervalMs = options.intervalMs ?? 3_600_000;
  const now = options.now ?? (() => new Date());
  if (!Number.isInteger(retentionDays) || retentionDays < 0) throw new RangeError("retentionDays must be a whole number of days, 0 or more");
  if (!AUDIT_PARTITION_HOURS.includes(partitionHours)) throw new RangeError(`partitionHours must be one of ${AUDIT_PARTITION_HOURS.join(", ")}`);
  const slotMs = partitionHours * 3_600_000;
  let timer: NodeJS.Timeout | undefined;
  let running: Promise<unknown> = Promise.resolve();

  async function runOnce(): Promise<AuditRetentionRun> {
    const at = now().getTime();
    const first = auditPartitionStart(at, partitionHours);
    // A partition is dropped once every event it can hold is older than the retention.
    const cutoff = at - retentionDays * AUDIT_PARTITION_MS;
    return db.transaction(async (tx) => {
      const { rows } = await tx.query<{ locked: boolean }>(`SELECT pg_try_advisory_xact_lock(${AUDIT_PARTITION_LOCK_KEY}) AS locked`);
      if (rows[0]?.locked !== true) return { ran: false, created: [], dropped: [] };
      const before = new Set((await listAuditPartitions(tx)).map((p) => p.name));
      const ahead: number[] = [];
      for (let t = first; t <= at + daysAhead * AUDIT_PARTITION_MS; t += slotMs) ahead.push(t);
      await createAuditPartitions(tx, ahead, partitionHours);
      const partitions = await listAuditPartitions(tx);
      const run: AuditRetentionRun = { ran: true, created: partitions.filter((p) => !before.has(p.name)).map((p) => p.name), dropped: [] };
      if (retentionDays === 0) return run;
      for (const p of partitions) {
        if (p.end > cutoff) continue;
        if (exportDir !== undefined) {
          let exported: number;
          try {
            exported = (await exportAuditPartition(tx, p, exportDir)).events;
          } catch (error) {
            run.exportFailed = { partition: p.name, error };
            break;
          }
          const events = await dropAuditPartition(tx, p.name);
          // The export and the drop read the same rows unless one was added in between: then neither stands.
          if (events !== exported) throw new Error(`${p.name} changed while it was exported: ${exported} events exported, ${events} dropped`);
          run.dropped.push({ partition: p.name, events });
        } else {
          run.dropped.push({ partition: p.name, events: await dropAuditPartition(tx, p.name) });
        }
      }
      return run;
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
