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
 * does; with SECRETS_AUDIT_STRICT=1 value reads are refused at once while a sink is
 * known down (`up`), and served again once it is back.
 *
 * "Handed to the OS" is as far as a write is acknowledged. For a file that is the page
 * cache; for a Unix socket it is the socket's buffer: lines in it when the reader dies
 * are lost with the reader (docs/operations.md, 7). A file sink is the one to use for
 * guaranteed delivery.
 */
export interface AuditSink {
  /** For logs: the kind and where (`stdout`, `file:/path`, `unix:/path`). */
  readonly name: string;
  /**
   * False while the sink is known to be down: its last write (or, for a socket, its
   * connection) failed and nothing has succeeded since. Strict mode refuses value
   * reads at once while any sink is down, rather than letting them wait for it.
   */
  readonly up: boolean;
  /** Resolves once the sink is up again (at once if it is); a socket reconnects on its own. */
  whenUp(): Promise<void>;
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
  /** A socket sink reconnects after this pause, doubling up to `reconnectMaxMs`. Default 50. */
  reconnectInitialMs?: number;
  /** Default 5000. */
  reconnectMaxMs?: number;
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
        return unixSink(spec.path, options.reconnectInitialMs ?? 50, options.reconnectMaxMs ?? 5000);
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
  const health = createHealth();
  return {
    name: "stdout",
    get up() {
      return health.up;
    },
    whenUp: () => health.whenUp(),
    async write(text) {
      const writes: Promise<void>[] = [];
      for (const line of text.split("\n")) if (line !== "") writes.push(writeTo(process.stdout, `${line}\n`));
      await health.track(Promise.all(writes));
    },
    close: () => Promise.resolve(),
  };
}

/** Whether a sink is up, set by the outcome of its writes (and a socket's connection). */
interface Health {
  readonly up: boolean;
  setUp(up: boolean): void;
  whenUp(): Promise<void>;
  /** `p`, marking the sink up if it resolves and down if it rejects. */
  track<T>(p: Promise<T>): Promise<T>;
}

function createHealth(): Health {
  let up = true;
  let waiters: (() => void)[] = [];
  const setUp = (value: boolean) => {
    up = value;
    if (!up) return;
    for (const w of waiters) w();
    waiters = [];
  };
  return {
    get up() {
      return up;
    },
    setUp,
    whenUp: () => (up ? Promise.resolve() : new Promise<void>((resolve) => waiters.push(resolve))),
    track: (p) =>
      p.then(
        (v) => {
          setUp(true);
          return v;
        },
        (e: unknown) => {
          setUp(false);
          throw e;
        },
      ),
  };
}

function writeTo(stream: NodeJS.WritableStream, text: string): Promise<void> {
  return new Promise((resolve, reject) => {
    stream.write(text, (e) => (e ? reject(e) : resolve()));
  });
}

/**
 * Appends to `path`; before a write that would take it past `maxBytes`, rotates it
 * (path.1 is the newest old file). A stream that failed (the file could not be opened
 * or written) is opened again at the next write, so the sink recovers once the file
 * is writable.
 */
function fileSink(path: string, maxBytes: number, keep: number): AuditSink {
  const health = createHealth();
  let size = sizeOf(path);
  let failed = false;
  const open = () => {
    const s = createWriteStream(path, { flags: "a" });
    // Without a listener an open or write error would be thrown out of the process; the write's callback reports it.
    s.on("error", () => {
      if (stream === s) failed = true;
    });
    return s;
  };
  let stream: WriteStream = open();
  const rotate = async () => {
    await new Promise<void>((resolve) => stream.end(resolve));
    for (let i = keep - 1; i >= 1; i--) renameIfExists(`${path}.${i}`, `${path}.${i + 1}`);
    renameIfExists(path, `${path}.1`);
    stream = open();
    size = 0;
  };
  const write = async (text: string) => {
    if (failed) {
      stream.destroy();
      failed = false;
      stream = open();
      size = sizeOf(path);
    }
    const bytes = Buffer.byteLength(text);
    if (size > 0 && size + bytes > maxBytes) await rotate();
    try {
      await writeTo(stream, text);
    } catch (e) {
      failed = true;
      throw e;
    }
    size += bytes;
  };
  return {
    name: `file:${path}`,
    get up() {
      return health.up;
    },
    whenUp: () => health.whenUp(),
    write: (text) => health.track(write(text)),
    close: () => new Promise<void>((resolve) => (stream.destroyed ? resolve() : stream.end(resolve))),
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

/**
 * Writes to a Unix stream socket. It connects when opened and, whenever the
 * connection fails or the reader closes it, is down and reconnects in the background
 * with backoff (`initialMs` doubling to `maxMs`); a write while it is not connected
 * tries to connect once and fails if it cannot. Data from the reader is read and
 * dropped, so a reader that goes away is seen at once, not at the next write.
 */
function unixSink(path: string, initialMs: number, maxMs: number): AuditSink {
  const health = createHealth();
  let socket: Socket | undefined;
  let connecting: Promise<Socket> | undefined;
  let retry: NodeJS.Timeout | undefined;
  let delay = initialMs;
  let closed = false;

  const down = () => {
    health.setUp(false);
    if (closed || retry !== undefined || connecting !== undefined) return;
    retry = setTimeout(() => {
      retry = undefined;
      connectNow().catch(() => undefined);
    }, delay);
    retry.unref();
    delay = Math.min(maxMs, delay * 2);
  };
  const connectNow = (): Promise<Socket> =>
    (connecting ??= new Promise<Socket>((resolve, reject) => {
      const s = connect(path);
      const fail = (e: Error) => {
        connecting = undefined;
        s.destroy();
        down();
        reject(e);
      };
      s.once("error", fail);
      s.once("connect", () => {
        s.off("error", fail);
        connecting = undefined;
        if (closed) {
          s.destroy();
          reject(new Error(`audit sink unix:${path} is closed`));
          return;
        }
        // The close that follows an error is what marks the sink down.
        s.on("error", () => undefined);
        s.on("close", () => {
          if (socket !== s) return;
          socket = undefined;
          down();
        });
        s.resume();
        socket = s;
        delay = initialMs;
        health.setUp(true);
        resolve(s);
      });
    }));
  connectNow().catch(() => undefined);

  return {
    name: `unix:${path}`,
    get up() {
      return health.up;
    },
    whenUp: () => health.whenUp(),
    async write(text) {
      if (closed) throw new Error(`audit sink unix:${path} is closed`);
      const s = socket ?? (await connectNow());
      try {
        await writeTo(s, text);
      } catch (e) {
        if (socket === s) socket = undefined;
        s.destroy();
        down();
        throw e;
      }
    },
    async close() {
      closed = true;
      if (retry !== undefined) clearTimeout(retry);
      retry = undefined;
      const s = socket;
      socket = undefined;
      if (s !== undefined) await new Promise<void>((resolve) => s.end(resolve));
    },
  };
}
