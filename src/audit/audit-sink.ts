import { createWriteStream, renameSync, statSync, type WriteStream } from "node:fs";
import { connect, type Socket } from "node:net";

import type { StoredAuditEvent } from "./chain.js";

/**
 * JSON-lines audit sinks (SECRETS_AUDIT_SINKS): besides Postgres, each event as one
 * line of JSON on stdout, in a file with rotation, or on a Unix socket — what Vault's
 * audit devices offer and what a log shipper or a SIEM reads. A line carries the
 * event's stored fields and its place in the writer's chain (the same format-3 hashes
 * as in Postgres, so the chain can be followed in the sink too). Never a value.
 *
 * The audit writer (audit-log.ts) hands each sink the lines of a batch in chain order
 * and counts a batch as committed once Postgres and every sink acknowledged it; a sink
 * that fails has the rest of its lines retried from where it stopped, so each line is
 * written once. A sink that stays down makes events wait (back-pressure), as Postgres
 * does; with SECRETS_AUDIT_STRICT=1 value reads wait for every sink.
 */
export interface AuditSink {
  /** For logs: the kind and where (`stdout`, `file:/path`, `unix:/path`). */
  readonly name: string;
  /** Writes the lines (each ending in a newline) and resolves once they are handed to the OS. */
  write(text: string): Promise<void>;
  close(): Promise<void>;
}

/** The format name of a sink line; the hashes are the chain's format 3 (chain.ts). */
export const SINK_LINE_FORMAT = "secrets.v1/audit-line/1";

/** One event as a JSON line (with its newline). */
export function sinkLine(e: StoredAuditEvent, prevHash: string, hash: string): string {
  return `${JSON.stringify({
    format: SINK_LINE_FORMAT,
    time: e.time.toISOString(),
    developer_id: e.developerId,
    caller_subject: e.callerSubject,
    caller_token_id: e.callerTokenId,
    caller_identity: e.callerIdentity,
    action: e.action,
    secret_name: e.secretName,
    version: e.version,
    outcome: e.outcome,
    request_id: e.requestId,
    peer: e.peer,
    writer_id: e.writerId,
    writer_sequence: e.writerSequence,
    prev_hash: prevHash,
    hash,
  })}\n`;
}

/** A sink specification as configured: `stdout`, `file:<path>` or `unix:<path>`. */
export type SinkSpec = { kind: "stdout" } | { kind: "file"; path: string } | { kind: "unix"; path: string };

/** Parses SECRETS_AUDIT_SINKS (comma-separated); throws a message naming the variable, never a value. */
export function parseSinkSpecs(text: string | undefined): SinkSpec[] {
  if (text === undefined || text.trim() === "") return [];
  return text.split(",").map((raw) => {
    const s = raw.trim();
    if (s === "stdout") return { kind: "stdout" };
    const m = /^(file|unix):(.+)$/.exec(s);
    if (m === null) throw new Error("SECRETS_AUDIT_SINKS must be a comma-separated list of stdout, file:<path> and unix:<path>");
    return { kind: m[1] as "file" | "unix", path: m[2] as string };
  });
}

export interface SinkOptions {
  /** A file sink rotates once the file reaches this size: `path` → `path.1` → … Default 100 MiB. */
  fileMaxBytes?: number;
  /** Rotated files kept. Default 5. */
  fileKeep?: number;
}

/** Opens the sinks of `specs`. */
export function openSinks(specs: readonly SinkSpec[], options: SinkOptions = {}): AuditSink[] {
  return specs.map((spec) => {
    switch (spec.kind) {
      case "stdout":
        return stdoutSink();
      case "file":
        return fileSink(spec.path, options.fileMaxBytes ?? 100 * 1024 * 1024, options.fileKeep ?? 5);
      case "unix":
        return unixSink(spec.path);
    }
  });
}

/**
 * Standard output, which the service's log lines share: each line is its own write,
 * and a write to a pipe of at most PIPE_BUF (4096) bytes is never interleaved with
 * another write, so no log line lands inside an audit line (one longer than that, an
 * event naming many secrets, can be split).
 */
function stdoutSink(): AuditSink {
  return {
    name: "stdout",
    async write(text) {
      const writes: Promise<void>[] = [];
      for (const line of text.split("\n")) if (line !== "") writes.push(writeTo(process.stdout, `${line}\n`));
      await Promise.all(writes);
    },
    close: () => Promise.resolve(),
  };
}

function writeTo(stream: NodeJS.WritableStream, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(text, (e) => (e ? reject(e) : resolve()));
  });
}

/** Appends to `path`; before a write that would take it past `maxBytes`, rotates it (path.1 is the newest old file). */
function fileSink(path: string, maxBytes: number, keep: number): AuditSink {
  let size = sizeOf(path);
  let stream: WriteStream = createWriteStream(path, { flags: "a" });
  const rotate = async () => {
    await new Promise<void>((resolve) => stream.end(resolve));
    for (let i = keep - 1; i >= 1; i--) renameIfExists(`${path}.${i}`, `${path}.${i + 1}`);
    renameIfExists(path, `${path}.1`);
    stream = createWriteStream(path, { flags: "a" });
    size = 0;
  };
  return {
    name: `file:${path}`,
    async write(text) {
      const bytes = Buffer.byteLength(text);
      if (size > 0 && size + bytes > maxBytes) await rotate();
      await writeTo(stream, text);
      size += bytes;
    },
    close: () => new Promise<void>((resolve) => stream.end(resolve)),
  };
}

function sizeOf(path: string): number {
  try {
    return statSync(path).size;
  } catch {
    return 0;
  }
}

function renameIfExists(from: string, to: string): void {
  try {
    renameSync(from, to);
  } catch (e) {
    if ((e as NodeJS.ErrnoException).code !== "ENOENT") throw e;
  }
}

/** Writes to a Unix stream socket, connecting on the first write and again after an error. */
function unixSink(path: string): AuditSink {
  let socket: Socket | undefined;
  const open = () =>
    new Promise<Socket>((resolve, reject) => {
      const s = connect(path);
      s.once("connect", () => {
        s.off("error", reject);
        s.on("error", () => {
          if (socket === s) socket = undefined;
        });
        s.on("close", () => {
          if (socket === s) socket = undefined;
        });
        resolve(s);
      });
      s.once("error", reject);
    });
  return {
    name: `unix:${path}`,
    async write(text) {
      socket ??= await open();
      try {
        await writeTo(socket, text);
      } catch (e) {
        socket.destroy();
        socket = undefined;
        throw e;
      }
    },
    async close() {
      const s = socket;
      socket = undefined;
      if (s !== undefined) await new Promise<void>((resolve) => s.end(resolve));
    },
  };
}
