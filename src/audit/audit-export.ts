import { open, rename } from "node:fs/promises";
import path from "node:path";

import { listCompactWriterEvents, listCompactWriters, listPartitionSegments, type AuditPartition } from "../store/audit-store.js";
import type { Queryable } from "../store/db.js";
import { sinkLine } from "./audit-sink.js";
import { GENESIS_HASH, storedOf } from "./chain.js";

/**
 * The export of a partition before retention drops it (SECRETS_AUDIT_EXPORT_DIR): its
 * events as JSON lines in the sink's format (audit-sink.ts, chain fields included),
 * writer by writer in chain order, so the file verifies on its own
 * (`audit:verify --file`). Events are read with the verifier's reader, writer by
 * writer from the first sequence the partition holds.
 *
 * What must stay true: a file under its final name (`<partition>.jsonl`) is complete
 * and on disk. It is written as `<partition>.jsonl.tmp`, fsynced, renamed, and the
 * directory fsynced; only then may the partition be dropped. A run that fails leaves
 * at most a `.tmp` file, which the next attempt overwrites.
 */
export interface AuditExport {
  file: string;
  events: number;
}

/** The file a partition is exported to. */
export function auditExportFile(dir: string, partition: string): string {
  return path.join(dir, `${partition}.jsonl`);
}

export async function exportAuditPartition(q: Queryable, p: AuditPartition, dir: string, pageSize = 1000): Promise<AuditExport> {
  const partition = p.name;
  const file = auditExportFile(dir, partition);
  const tmp = `${file}.tmp`;
  const writerIds = new Map((await listCompactWriters(q)).map((w) => [w.writer, w.writerId]));
  const segments = await listPartitionSegments(q, p);
  let events = 0;
  const out = await open(tmp, "w", 0o640);
  try {
    for (const segment of segments) {
      const writerId = writerIds.get(segment.writer);
      if (writerId === undefined) throw new Error(`audit writer ${segment.writer} of ${partition} is not registered`);
      let after = segment.firstSequence - 1;
      let prevHash: string | undefined;
      while (after < segment.lastSequence) {
        const rows = await listCompactWriterEvents(q, segment.writer, after, pageSize);
        let text = "";
        for (const row of rows) {
          if (row.writerSequence > segment.lastSequence) break;
          if (row.writerSequence !== after + 1) throw new Error(`${partition}: writer ${writerId} has a gap before sequence ${row.writerSequence}`);
          // The first event of a segment carries the previous segment's last hash (the genesis hash at sequence 1).
          const prev = prevHash ?? row.prevHash ?? (row.writerSequence === 1 ? GENESIS_HASH : undefined);
          if (prev === undefined) throw new Error(`${partition}: writer ${writerId}'s segment does not start with its previous hash`);
          const { developerId } = row;
          if (developerId === null) throw new Error(`${partition}: writer ${writerId}'s event ${row.writerSequence} names no developer`);
          text += sinkLine(storedOf({ ...row, developerId }, writerId), prev, row.hash);
          prevHash = row.hash;
          after = row.writerSequence;
          events += 1;
        }
        if (text !== "") await out.write(text);
        if (rows.length < pageSize) break;
      }
      if (after !== segment.lastSequence) throw new Error(`${partition}: writer ${writerId}'s events end at ${after}, not ${segment.lastSequence}`);
    }
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
