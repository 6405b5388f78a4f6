/**
 * The embedded adapter: `Db` on PGlite (Postgres compiled to WASM) running
 * in-process, normalized exactly like the Postgres adapter (see db.ts).
 *
 * PGlite is one Postgres session. Everything goes through one queue here, so a
 * transaction or session owns that session until its callback ends and nothing
 * interleaves into it; that is what "one connection" means on PGlite.
 */
import { randomBytes } from "node:crypto";
import { link, mkdir, open, readFile, rename, stat, unlink } from "node:fs/promises";
import path from "node:path";

import { PGlite, TransactionAbortedError, protocol, type Transaction } from "@electric-sql/pglite";

import type { Db, QueryResult } from "./db.js";
import { abortedAtCommit, backendUnavailable, copyStatement, fromServerError, normalizeRowCount, parseInt8 } from "./db.js";
import { guardedDb } from "./guarded-db.js";

/** Passing this as the data directory gives an in-memory instance (tests, tools), without a lock. */
export const PGLITE_IN_MEMORY = "memory://";

const INT8 = 20;
const BYTEA = 17;
const NUMERIC = 1700;

/**
 * Result parsers matching the Postgres adapter. PGlite's defaults differ: int8 is
 * a number or, when large, a bigint; bytea a Uint8Array (decoded byte by byte);
 * numeric a lossy number. Array types reuse these element parsers.
 */
const PARSERS = {
  [INT8]: parseInt8,
  [BYTEA]: (text: string) => Buffer.from(text.slice(2), "hex"), // text format is "\x" + hex
  [NUMERIC]: (text: string) => text,
};

/** Map what PGlite throws to DbError / BACKEND_UNAVAILABLE; programming errors pass through. */
function mapError(e: unknown): unknown {
  if (e instanceof TransactionAbortedError) return abortedAtCommit();
  if (e instanceof protocol.messages.DatabaseError && typeof e.code === "string") {
    // PGlite's error object also carries the query and its parameters: keep neither,
    // not even as a cause.
    const bare = Object.assign(new Error(e.message), { code: e.code });
    return fromServerError({ code: e.code, message: e.message, constraint: e.constraint }, bare);
  }
  return e;
}

/** One statement (or, without params, a simple-protocol script) on target, with errors mapped. */
async function run<R>(target: PGlite | Transaction, text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
  try {
    // Like pg: without params, the simple protocol (several statements allowed;
    // the last one's result counts); with params, one extended-protocol statement.
    const last =
      params === undefined || params.length === 0 ? (await target.exec(text)).at(-1) : await target.query<R>(text, [...params]);
    const rows = (last?.rows ?? []) as R[];
    // rowCount is the command tag's count for this statement; affectedRows would be
    // cumulative across statements.
    return { rows, rowCount: normalizeRowCount(last?.rowCount, rows) };
  } catch (e) {
    throw mapError(e);
  }
}

/** Runs tasks one at a time, in call order. */
class Queue {
  #tail: Promise<unknown> = Promise.resolve();

  run<T>(task: () => Promise<T>): Promise<T> {
    const result = this.#tail.then(task);
    this.#tail = result.catch(() => undefined);
    return result;
  }
}

/**
 * Open PGlite persisted in `dataDir` (created with mode 0700 if absent; initdb on
 * first use takes seconds), or in memory for "memory://". A lock file stops a
 * second process, or a second open in this one, from using the same directory.
 */
export async function openPglite(dataDir: string, options: { scopeChecks?: boolean } = {}): Promise<Db> {
  const inMemory = dataDir === PGLITE_IN_MEMORY;
  let lock: DataDirLock | undefined;
  if (!inMemory) {
    await mkdir(dataDir, { recursive: true, mode: 0o700 });
    lock = await DataDirLock.acquire(dataDir);
  }

  let pglite: PGlite;
  try {
    pglite = await PGlite.create(inMemory ? PGLITE_IN_MEMORY : path.resolve(dataDir), { parsers: PARSERS });
  } catch (e) {
    await lock?.release();
    throw backendUnavailable(e);
  }

  const queue = new Queue();
  let closing: Promise<void> | undefined;

  /** Queues `task` unless the instance is closed or closing (then BACKEND_UNAVAILABLE). */
  function queued<T>(task: () => Promise<T>): Promise<T> {
    if (closing !== undefined || pglite.closed) throw backendUnavailable(new Error("PGlite instance is closed"));
    return queue.run(task);
  }

  return guardedDb(
    {
      kind: "pglite",

      query: <R>(text: string, params?: readonly unknown[]) => queued(() => run<R>(pglite, text, params)),

      transaction: (body) =>
        queued(async () => {
          try {
            // PGlite's transaction issues BEGIN / COMMIT, and ROLLBACK when body throws.
            return await pglite.transaction((tx) => body((text, params) => run(tx, text, params)));
          } catch (e) {
            throw mapError(e);
          }
        }),

      session: (body) =>
        queued(async () => {
          try {
            return await body((text, params) => run(pglite, text, params));
          } finally {
            // What a pg session's destroyed connection would drop: an unfinished
            // transaction and session-level advisory locks.
            // Best effort: if this fails the instance is broken and the next call says so.
            if (!pglite.closed) {
              if (pglite.isInTransaction()) await pglite.exec("ROLLBACK").catch(() => undefined);
              await pglite.exec("SELECT pg_advisory_unlock_all()").catch(() => undefined);
            }
          }
        }),

      copyIn: (table, columns, rows) =>
        queued(async () => {
          try {
            // PGlite reads COPY … FROM '/dev/blob' from the query's blob.
            const result = await pglite.query(copyStatement(table, columns, "'/dev/blob'"), [], { blob: new Blob([rows]) });
            return result.affectedRows ?? 0;
          } catch (e) {
            throw mapError(e);
          }
        }),

      // One instance: its notifications cannot be lost to a dropped connection, so
      // `resync` is never needed.
      async listen(channel, handlers) {
        const unlisten = await queued(() => pglite.listen(channel, (payload) => handlers.notify(payload)));
        return {
          close: async () => {
            if (closing === undefined && !pglite.closed) await queue.run(() => unlisten());
          },
        };
      },

      // The guard refuses a close from inside a callback: queued behind the running
      // callback, it would wait for itself.
      close() {
        closing ??= queue.run(async () => {
          try {
            if (!pglite.closed) await pglite.close();
          } finally {
            await lock?.release();
          }
        });
        return closing;
      },

      poolStats: () => ({ total: 1, idle: 1, waiting: 0 }),
    },
    // Refuse calls on the Db from inside its own callbacks (default true; see ScopeGuard).
    options.scopeChecks ?? true,
  );
}

/** Another live process holds the data directory's lock; the message names the directory and, when known, the process. */
export class DataDirInUse extends Error {
  override readonly name = "DataDirInUse";
}

/**
 * `<dataDir>/.lock`, created with O_EXCL and holding the owner's pid. Two PGlite
 * instances writing one directory would corrupt it; this makes the second fail
 * with a message naming the holder. A lock whose pid is dead is taken over.
 */
class DataDirLock {
  private constructor(
    private readonly file: string,
    private readonly content: string,
  ) {}

  static async acquire(dataDir: string): Promise<DataDirLock> {
    const file = path.join(dataDir, ".lock");
    const content = `${process.pid}\n`;
    for (let attempt = 0; attempt < 10; attempt++) {
      try {
        const handle = await open(file, "wx", 0o600); // O_CREAT | O_EXCL | O_WRONLY
        try {
          await handle.writeFile(content);
        } finally {
          await handle.close();
        }
        return new DataDirLock(file, content);
      } catch (e) {
        if (errno(e) !== "EEXIST") throw e;
      }

      const held = await readIfExists(file);
      if (held === undefined) continue; // released meanwhile: try again
      const pid = parsePid(held);
      if (pid === undefined) {
        // Empty or garbled. A fresh one is an owner between create and write;
        // an old one is debris from a crash in that instant.
        if (await isRecent(file)) throw new DataDirInUse(`data directory ${dataDir} is being opened by another process`);
      } else if (isAlive(pid)) {
        throw new DataDirInUse(`data directory ${dataDir} is in use by process ${pid}`);
      }
      await takeOver(file, held);
    }
    throw new Error(`could not lock data directory ${dataDir}`);
  }

  /** Remove the lock if it is still ours. */
  async release(): Promise<void> {
    if ((await readIfExists(this.file)) === this.content) await unlink(this.file).catch(() => undefined);
  }
}

/**
 * Remove a stale lock without removing a live one that replaced it meanwhile:
 * rename it aside (atomic, only one process wins a given file), check that what
 * was moved is the stale content, and otherwise put it back.
 */
async function takeOver(file: string, staleContent: string): Promise<void> {
  const aside = `${file}.stale-${process.pid}-${randomBytes(4).toString("hex")}`;
  try {
    await rename(file, aside);
  } catch (e) {
    if (errno(e) === "ENOENT") return; // someone else moved it first
    throw e;
  }
  if ((await readIfExists(aside)) !== staleContent) {
    // We moved a lock another process has just created: restore it. link fails if
    // yet another process created one meanwhile, which then owns the directory.
    await link(aside, file).catch(() => undefined);
  }
  await unlink(aside).catch(() => undefined);
}

function parsePid(content: string): number | undefined {
  const pid = Number(content.trim());
  return Number.isSafeInteger(pid) && pid > 0 ? pid : undefined;
}

/** Signal 0 probes for existence: ESRCH means gone, EPERM means alive under another user. */
function isAlive(pid: number): boolean {
  try {
    process.kill(pid, 0);
    return true;
  } catch (e) {
    return errno(e) === "EPERM";
  }
}

async function isRecent(file: string): Promise<boolean> {
  const info = await stat(file).catch(() => undefined);
  return info !== undefined && Date.now() - info.mtimeMs < 10_000;
}

async function readIfExists(file: string): Promise<string | undefined> {
  try {
    return await readFile(file, "utf8");
  } catch (e) {
    if (errno(e) === "ENOENT") return undefined;
    throw e;
  }
}

function errno(e: unknown): string | undefined {
  return e instanceof Error && "code" in e && typeof e.code === "string" ? e.code : undefined;
}
