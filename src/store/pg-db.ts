/**
 * The Postgres adapter: `Db` on a `pg.Pool`, normalized as described in db.ts.
 */
import pg from "pg";
import { from as copyFrom } from "pg-copy-streams";

import { AppError } from "../api/errors.js";

import type { Db, Listener, NotificationHandlers, QueryResult } from "./db.js";
import { abortedAtCommit, backendUnavailable, copyStatement, fromServerError, normalizeRowCount, parseInt8 } from "./db.js";
import { guardedDb } from "./guarded-db.js";

/** Tuning for `openPostgres`; every field has a default. */
export interface PostgresOptions {
  /** Pool size (default 10). */
  maxConnections?: number;
  /** Server-side `statement_timeout` per connection, in ms (default: the server's). */
  statementTimeoutMs?: number;
  /** `application_name`, shown in pg_stat_activity (default "secrets-service"). */
  applicationName?: string;
  /** Refuse calls on the Db from inside its own transaction/session callbacks (default true; see ScopeGuard). */
  scopeChecks?: boolean;
  /**
   * Called with errors of idle pooled connections (e.g. the server restarted).
   * The pool drops such a connection by itself; this is for logging.
   */
  onBackgroundError?: (err: Error) => void;
}

const CONNECT_TIMEOUT_MS = 5_000;

const INT8 = 20;
const INT8_ARRAY = 1016;
const NUMERIC = 1700;

/**
 * Type parsers for this pool only: `pg.types.setTypeParser` would change every
 * pool in the process, including other libraries'.
 */
function createTypes(): pg.CustomTypesConfig {
  const types = new pg.TypeOverrides();
  types.setTypeParser(INT8, "text", parseInt8);
  // pg's default int8[] parser yields (nested) arrays of strings and nulls.
  const parseTextArray = (pg.types.getTypeParser as (oid: number, format: "text") => (text: string) => unknown)(INT8_ARRAY, "text");
  types.setTypeParser(INT8_ARRAY, "text", (text) => mapInt8Array(parseTextArray(text)));
  // numeric stays exact text: pg's default, pinned here because the PGlite adapter
  // must match it (PGlite's own default is a lossy number). numeric[] stays text[].
  types.setTypeParser(NUMERIC, "text", (text) => text);
  return types;
}

function mapInt8Array(value: unknown): unknown {
  if (Array.isArray(value)) return value.map(mapInt8Array);
  return typeof value === "string" ? parseInt8(value) : value;
}

/** Node socket errors (ECONNREFUSED, ECONNRESET, ETIMEDOUT, ENOTFOUND, …) carry `syscall`. */
function isSocketError(e: Error): boolean {
  const code = (e as { code?: unknown }).code;
  return "syscall" in e || (typeof code === "string" && /^E[A-Z]+$/.test(code) && "errno" in e);
}

/** pg and pg-pool report lost or unusable connections with these plain Errors (no code). */
const CONNECTION_MESSAGES =
  /^(Connection terminated|timeout expired|timeout exceeded when trying to connect|Query read timeout|Client has encountered a connection error|Client was closed and is not queryable|Cannot use a pool after calling end)/;

/** Map what pg throws to DbError / BACKEND_UNAVAILABLE; programming errors pass through. */
function mapError(e: unknown): unknown {
  if (e instanceof pg.DatabaseError && typeof e.code === "string") {
    return fromServerError({ code: e.code, message: e.message, constraint: e.constraint }, e);
  }
  if (e instanceof Error && (isSocketError(e) || CONNECTION_MESSAGES.test(e.message))) return backendUnavailable(e);
  if (e instanceof AggregateError) return backendUnavailable(e); // happy-eyeballs connect: every address failed
  return e;
}

/** Whether a (mapped) failure leaves the connection unfit for reuse, so it must not go back to the pool. */
function isConnectionLost(e: unknown): boolean {
  return e instanceof AppError && e.reason === "BACKEND_UNAVAILABLE";
}

/** One statement (or, without params, a simple-protocol script) on client, with errors mapped. */
async function run<R>(client: pg.ClientBase, text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
  let res: pg.QueryResult | pg.QueryResult[];
  try {
    // Without params pg uses the simple protocol (several statements allowed) and
    // returns one Result per statement; normalize to the last one.
    res = (await client.query(text, params === undefined ? undefined : [...params])) as pg.QueryResult | pg.QueryResult[];
  } catch (e) {
    throw mapError(e);
  }
  const last = Array.isArray(res) ? res[res.length - 1] : res;
  const rows = (last?.rows ?? []) as R[];
  return { rows, rowCount: normalizeRowCount(last?.rowCount, rows) };
}

/**
 * Open a pool on `url` and check it answers (`SELECT 1`). Fails with
 * BACKEND_UNAVAILABLE if it does not; the message never includes the URL.
 */
export async function openPostgres(url: string, options: PostgresOptions = {}): Promise<Db> {
  const pool = new pg.Pool({
    connectionString: url,
    max: options.maxConnections ?? 10,
    connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
    keepAlive: true,
    application_name: options.applicationName ?? "secrets-service",
    ...(options.statementTimeoutMs === undefined ? {} : { statement_timeout: options.statementTimeoutMs }),
    types: createTypes(),
  });
  // An idle client's error (server restart, network drop) is emitted on the pool;
  // without a listener it would crash the process. The pool discards that client.
  pool.on("error", (err) => options.onBackgroundError?.(err));

  let closing: Promise<void> | undefined;

  async function connect(): Promise<pg.PoolClient> {
    try {
      return await pool.connect();
    } catch (e) {
      // Whatever stops us getting a connection (refused, auth, no such database,
      // too many connections, pool ended) means the backend is unusable.
      throw backendUnavailable(e);
    }
  }

  /**
   * Run fn on one pooled client and release it exactly once; a client whose
   * connection broke (or that fn marks broken) is destroyed, not reused.
   */
  async function withClient<T>(
    fn: (client: pg.PoolClient, markBroken: () => void) => Promise<T>,
    destroyAfter = false,
  ): Promise<T> {
    const client = await connect();
    let broken = destroyAfter;
    // pg-pool listens for a client's errors only while it is idle. A connection
    // that drops while checked out but between statements emits 'error' on the
    // client, which would crash the process without a listener; its next query
    // then fails ("not queryable") and is reported as BACKEND_UNAVAILABLE.
    const onError = () => {
      broken = true;
    };
    client.on("error", onError);
    try {
      return await fn(client, () => {
        broken = true;
      });
    } catch (e) {
      if (isConnectionLost(e)) broken = true;
      throw e;
    } finally {
      // A broken client is destroyed by release; keep swallowing its late errors.
      if (!broken) client.removeListener("error", onError);
      client.release(broken);
    }
  }

  const db = guardedDb(
    {
      kind: "postgres",

      query: <R>(text: string, params?: readonly unknown[]) => withClient((client) => run<R>(client, text, params)),

      transaction: (body) =>
        withClient(async (client, markBroken) => {
          await run(client, "BEGIN");
          try {
            const result = await body((text, params) => run(client, text, params));
            const commit = await client.query("COMMIT").catch((e: unknown) => Promise.reject(mapError(e)));
            // COMMIT of a transaction in which a statement failed (and the error was
            // caught) answers ROLLBACK instead of failing; PGlite throws. Match PGlite.
            if (commit.command === "ROLLBACK") throw abortedAtCommit();
            return result;
          } catch (e) {
            // If ROLLBACK fails too, the connection is unusable: destroy it, and
            // report the original error, which says what went wrong first.
            await run(client, "ROLLBACK").catch(markBroken);
            throw e;
          }
        }),

      // The connection is destroyed afterwards, not returned to the pool, so
      // session-level state (advisory locks, SET, an unfinished transaction)
      // can never leak into an unrelated request.
      session: (body) => withClient((client) => body((text, params) => run(client, text, params)), true),

      copyIn: (table, columns, rows) =>
        withClient(async (client) => {
          const copy = client.query(copyFrom(copyStatement(table, columns, "STDIN")));
          try {
            // 'finish' comes once the server has answered the COPY (its CommandComplete).
            await new Promise<void>((resolve, reject) => {
              copy.on("finish", resolve);
              copy.on("error", reject);
              copy.end(rows);
            });
          } catch (e) {
            throw mapError(e);
          }
          return copy.rowCount;
        }),

      listen: (channel, handlers) => listenOn(url, options, channel, handlers),

      close() {
        closing ??= pool.end();
        return closing;
      },

      poolStats: () => ({ total: pool.totalCount, idle: pool.idleCount, waiting: pool.waitingCount }),
    },
    options.scopeChecks ?? true,
  );

  try {
    await db.query("SELECT 1");
  } catch (e) {
    await pool.end().catch(() => undefined);
    throw isConnectionLost(e) ? e : backendUnavailable(e);
  }
  return db;
}

/** Lets go of a connection: no more of its events reach us, a late error of its end is swallowed. */
function discard(c: pg.Client): Promise<void> {
  c.removeAllListeners();
  c.on("error", () => undefined);
  return c.end().catch(() => undefined);
}

/** Delays between attempts to reconnect a LISTEN connection. */
const LISTEN_RETRY_MS = { first: 100, max: 5_000 };

/**
 * A LISTEN on a connection outside the pool (a pooled connection goes back and
 * would stop listening). When it drops, it reconnects with backoff and, once it
 * listens again, calls `resync`; a first connection that fails is retried alike.
 */
async function listenOn(url: string, options: PostgresOptions, channel: string, handlers: NotificationHandlers): Promise<Listener> {
  let client: pg.Client | undefined;
  let closed = false;
  let retry: NodeJS.Timeout | undefined;
  let delay = LISTEN_RETRY_MS.first;

  const connect = async (): Promise<void> => {
    const c = new pg.Client({
      connectionString: url,
      connectionTimeoutMillis: CONNECT_TIMEOUT_MS,
      keepAlive: true,
      application_name: options.applicationName ?? "secrets-service",
    });
    c.on("notification", (n) => {
      if (n.channel === channel) handlers.notify(n.payload ?? "");
    });
    c.on("error", (e) => {
      options.onBackgroundError?.(e);
      reconnect(c);
    });
    c.on("end", () => reconnect(c));
    try {
      await c.connect();
      await c.query(`LISTEN "${channel.replaceAll('"', '""')}"`);
    } catch (e) {
      await discard(c);
      throw e;
    }
    client = c;
    delay = LISTEN_RETRY_MS.first;
  };

  const attempt = (): void => {
    retry = undefined;
    if (closed) return;
    connect().then(
      () => (closed ? void (client && discard(client)) : handlers.resync()),
      () => {
        delay = Math.min(delay * 2, LISTEN_RETRY_MS.max);
        schedule();
      },
    );
  };
  const schedule = (): void => {
    if (closed || retry !== undefined) return;
    retry = setTimeout(attempt, delay);
    retry.unref();
  };
  /** The listening connection `c` dropped: reconnect, once. */
  const reconnect = (c: pg.Client): void => {
    if (client !== c) return;
    client = undefined;
    void discard(c);
    schedule();
  };

  try {
    await connect();
  } catch {
    schedule();
  }
  return {
    async close() {
      closed = true;
      clearTimeout(retry);
      const c = client;
      client = undefined;
      if (c) await discard(c);
    },
  };
}