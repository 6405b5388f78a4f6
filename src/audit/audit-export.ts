import { open, rename } from "node:fs/promises";
import path from "node:path";

import { listCompactWriters, readPartitionEvents, type AuditPartition } from "../store/audit-store.js";
import type { Queryable } from "../store/db.js";
import { sinkLine } from "./audit-sink.js";
import { GENESIS_HASH, storedFieldsOf, storedOf } from "./chain.js";

/**
 * The export of a partition before retention drops it (SECRETS_AUDIT_EXPORT_DIR): its
 * events as JSON lines in the sink's format (audit-sink.ts, chain fields included),
 * writer by writer in chain order, so the file verifies on its own
 * (`audit:verify --file`). Events are read with the verifier's reader (the partition
 * sorted by writer and sequence, through a cursor), so `tx` must be a transaction's
 * handle: the retention job's, which then drops the partition.
 *
 * What must stay true: a file under its final name (`<partition>.jsonl`) is complete
 * and on disk. It is written as `<partition>.jsonl.tmp`, fsynced, renamed, and the
 * directory fsynced; only then may the partition be dropped. A run that fails leaves
 * at most a `.tmp` file, which the next attempt overwrites. A segment that is not
 * one contiguous run starting with its previous hash fails the export, so the
 * partition is kept.
 */
export interface AuditExport {
  file: string;
  events: number;
}

/** The file a partition is exported to. */
export function auditExportFile(dir: string, partition: string): string {
  return path.join(dir, `${partition}.jsonl`);
}

export async function exportAuditPartition(tx: Queryable, p: AuditPartition, dir: string, pageSize = 1000): Promise<AuditExport> {
  const partition = p.name;
  const file = auditExportFile(dir, partition);
  const tmp = `${file}.tmp`;
  const writerIds = new Map((await listCompactWriters(tx)).map((w) => [w.writer, w.writerId]));
  let events = 0;
  /** The writer whose segment is being written, and its last sequence and hash so far. */
  let writer: number | undefined;
  let after = 0;
  let prevHash: string | undefined;
  const out = await open(tmp, "w", 0o640);
  try {
    await readPartitionEvents(tx, p, pageSize, async (rows) => {
      let text = "";
      for (const row of rows) {
        const writerId = writerIds.get(row.writer);
        if (writerId === undefined) throw new Error(`audit writer ${row.writer} of ${partition} is not registered`);
        if (row.writer !== writer) {
          writer = row.writer;
          // The first event of a segment carries the previous segment's last hash (the genesis hash at sequence 1).
          prevHash = row.prevHash ?? (row.writerSequence === 1 ? GENESIS_HASH : undefined);
          if (prevHash === undefined) throw new Error(`${partition}: writer ${writerId}'s segment does not start with its previous hash`);
        } else if (row.writerSequence !== after + 1) {
          throw new Error(`${partition}: writer ${writerId} has a gap before sequence ${row.writerSequence}`);
        }
        const fields = storedFieldsOf(row);
        if (fields === undefined) throw new Error(`${partition}: writer ${writerId}'s event ${row.writerSequence} does not read back whole`);
        text += sinkLine(storedOf(fields, writerId), prevHash as string, row.hash);
        prevHash = row.hash;
        after = row.writerSequence;
        events += 1;
      }
      if (text !== "") await out.write(text);
    });
    await out.sync();
  } finally {
    await out.close();
  }
  await rename(tmp, file);
  const d = await open(dir, "r");
  try {
    await d.sync();
  } finally {
    await d.close();
  }
  return { file, events };
}
