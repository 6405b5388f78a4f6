/**
 * The small database interface the store is written against, and the error
 * normalization both adapters share.
 *
 * Two adapters implement `Db`: `openPostgres` (a `pg.Pool`) and `openPglite`
 * (PGlite in-process). They normalize identically, so one set of store SQL and one
 * test suite run on both:
 *
 * Results
 * - `rowCount`: affected rows for INSERT / UPDATE / DELETE (with or without
 *   RETURNING), rows returned for SELECT, otherwise the command tag's count or
 *   `rows.length` (0 for DDL).
 * - `int8` / `bigint` (including `count(*)`) and `int8[]` → number; a value beyond
 *   Number.MAX_SAFE_INTEGER throws a RangeError rather than losing precision.
 * - `int2` / `int4` / `float8` → number; `numeric` → string (exact; note that
 *   `sum(bigint)` is numeric: cast it, `sum(x)::int8`).
 * - `bytea` → Node `Buffer`; `timestamptz` → `Date`; `json` / `jsonb` → parsed
 *   value; `uuid` / `text` → string; `bool` → boolean.
 *
 * Parameters
 * - bytea: a `Buffer` or `Uint8Array`.
 * - timestamptz: a `Date`.
 * - jsonb: pass JSON text (`JSON.stringify(value)`) and cast in SQL: `$3::jsonb`.
 *   Raw JS values are not portable: `pg` sends a JS array as a Postgres array
 *   literal (invalid JSON) while PGlite stringifies it, so the convention is always
 *   pre-serialized text plus an explicit cast.
 *
 * Statements
 * - A query with parameters is one statement (extended protocol). A query without
 *   parameters goes over the simple protocol and may hold several statements
 *   (migrations do); the result is then the last statement's.
 * - Inside `transaction` / `session`, use only the handle passed to the callback.
 *   Calling the `Db` itself from inside the callback throws (on PGlite it would
 *   deadlock, on Postgres it would silently run outside the transaction).
 *
 * Errors
 * - A server error becomes a `DbError` carrying the SQLSTATE and constraint name.
 * - Losing the database (refused / reset connections, timeouts, SQLSTATE classes
 *   08 and 53, 57P01–57P05, statement timeout 57014, a closed pool or instance)
 *   becomes `AppError("BACKEND_UNAVAILABLE")` with the original error as `cause`.
 * - Anything else (a programming error) is rethrown unchanged.
 */
import { AsyncLocalStorage } from "node:async_hooks";

import { AppError } from "../api/errors.js";

/** What a query returns, identical on both adapters (see the module comment). */
export interface QueryResult<R> {
  rows: R[];
  rowCount: number;
}

/**
 * Something SQL can be sent to: the `Db` itself, or the handle a transaction or
 * session callback receives. Store functions take a `Queryable` so they can run
 * either alone or inside a caller's transaction.
 */
export interface Queryable {
  query<R = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
}

/** A database: Postgres through a pool, or PGlite in-process. */
export interface Db extends Queryable {
  /** Which adapter this is: for logs, health output and the rare test that must tell them apart. */
  readonly kind: "postgres" | "pglite";
  /** BEGIN … COMMIT on one connection; ROLLBACK and rethrow on error. */
  transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T>;
  /** Run fn on one dedicated connection (session-level state such as advisory locks). */
  session<T>(fn: (conn: Queryable) => Promise<T>): Promise<T>;
  /**
   * `COPY table (columns) FROM STDIN`: appends `rows`, lines in COPY's text format
   * (see copyTextField), in their order, in one statement. Returns the number of rows.
   * Postgres parses COPY's text for less than it spends on an INSERT's parameters:
   * the audit trail, a row per call, is written this way.
   */
  copyIn(table: string, columns: readonly string[], rows: string): Promise<number>;
  /**
   * LISTEN on `channel` on a connection of its own: `notify` gets each payload sent
   * there (NOTIFY, delivered at commit). A notification sent while the connection was
   * down is lost, so after every reconnection `resync` is called: a listener then
   * rereads what it relies on. Reconnects by itself until closed.
   */
  listen(channel: string, handlers: NotificationHandlers): Promise<Listener>;
  /** Close the pool or the instance; later calls fail with BACKEND_UNAVAILABLE. */
  close(): Promise<void>;
  /** Connection pool use, for metrics (PGlite has no pool: one in-process session). */
  poolStats(): { total: number; idle: number; waiting: number };
}

/** What a `listen` calls: each notification's payload, and `resync` after a reconnection. */
export interface NotificationHandlers {
  notify(payload: string): void;
  resync(): void;
}

/** A running LISTEN. */
export interface Listener {
  close(): Promise<void>;
}

/**
 * A statement the server rejected, with the SQLSTATE so the store can turn the
 * expected ones (23505 → already exists, 40001 → retry) into AppErrors. Internal:
 * it is logged, never sent to a caller. It deliberately holds no `cause`, no SQL
 * parameters and no `detail` (which quotes row values); for data exceptions
 * (class 22), whose server messages quote the offending input, the message is
 * replaced by a generic one.
 */
export class DbError extends Error {
  override readonly name = "DbError";
  /** The SQLSTATE, e.g. "23505". */
  readonly code: string;
  /** The violated constraint's name, when the server reports one. */
  readonly constraint: string | undefined;

  constructor(code: string, message: string, constraint?: string) {
    super(message);
    this.code = code;
    this.constraint = constraint;
  }
}

/** True for a unique violation (23505), optionally of the named constraint. */
export function isUniqueViolation(e: unknown, constraint?: string): boolean {
  return e instanceof DbError && e.code === "23505" && (constraint === undefined || e.constraint === constraint);
}

// ---------------------------------------------------------------------------
// Shared by the two adapters; not part of the store's public surface (index.ts
// does not re-export these).

/** The fields of a server error (pg's and PGlite's DatabaseError both carry them). @internal */
export interface ServerErrorFields {
  readonly code: string;
  readonly message: string;
  readonly constraint?: string | undefined;
}

/** Whether a SQLSTATE means the database itself is unavailable rather than the statement wrong. @internal */
export function isUnavailableSqlState(code: string): boolean {
  return (
    code.startsWith("08") || // connection exception
    code.startsWith("53") || // insufficient resources (too many connections, disk full, out of memory)
    /^57P0[1-5]$/.test(code) || // admin / crash shutdown, cannot connect now, database dropped, idle session timeout
    code === "57014" // query canceled: statement_timeout
  );
}

/** The error thrown when the database cannot be reached or was lost; `cause` keeps the original. @internal */
export function backendUnavailable(cause: unknown): AppError {
  return new AppError("BACKEND_UNAVAILABLE", "database unavailable", {}, { cause });
}

/** Turn a server error into a DbError, or BACKEND_UNAVAILABLE for the connection-level SQLSTATEs. @internal */
export function fromServerError(e: ServerErrorFields, original: unknown): DbError | AppError {
  if (isUnavailableSqlState(e.code)) return backendUnavailable(original);
  const message = e.code.startsWith("22")
    ? `invalid input value (SQLSTATE ${e.code}); the server's message is withheld because it may quote the value`
    : e.message;
  return new DbError(e.code, message, e.constraint === undefined || e.constraint === "" ? undefined : e.constraint);
}

/** The DbError both adapters throw when COMMIT finds the transaction already aborted. @internal */
export function abortedAtCommit(): DbError {
  return new DbError("25P02", "transaction was aborted by an earlier error and rolled back at COMMIT");
}

/**
 * int8 text → number, refusing values a JS number cannot hold exactly. The
 * message does not quote the value. @internal
 */
export function parseInt8(text: string): number {
  const n = Number(text);
  if (!Number.isSafeInteger(n)) throw new RangeError("int8 value outside Number.MAX_SAFE_INTEGER");
  return n;
}

/** Normalize a command's reported count (null / undefined for DDL) into `rowCount`. @internal */
export function normalizeRowCount(tagCount: number | null | undefined, rows: readonly unknown[]): number {
  return typeof tagCount === "number" && Number.isFinite(tagCount) ? tagCount : rows.length;
}

/**
 * Stops a callback of `transaction` / `session` from calling its own Db (which
 * would deadlock on PGlite and escape the transaction on Postgres). One per Db:
 * AsyncLocalStorage tells the callback's own async work apart from unrelated
 * concurrent callers.
 *
 * A development check: on by default in the adapters (`scopeChecks`), off in the
 * service unless SECRETS_DB_SCOPE_CHECKS=1, which the test suite sets. On Node 20
 * the first AsyncLocalStorage.run turns on async hooks for the whole process, and
 * every promise of every call then pays for them (docs/configuration.md,
 * SECRETS_DB_SCOPE_CHECKS). The mistake it catches belongs to a code path, which the tests run. @internal
 */
export class ScopeGuard {
  readonly #inside: AsyncLocalStorage<{ active: boolean }> | undefined;

  constructor(enabled: boolean) {
    this.#inside = enabled ? new AsyncLocalStorage() : undefined;
  }

  /** Throw if the current async context is inside one of this Db's scopes. */
  check(): void {
    if (this.#inside?.getStore()?.active === true) {
      throw new Error(
        "Db called from inside its own transaction/session callback: use the handle the callback receives",
      );
    }
  }

  /** Run fn as a scope; the mark ends with fn, even for work fn left running. */
  async run<T>(fn: () => Promise<T>): Promise<T> {
    if (this.#inside === undefined) return fn();
    const state = { active: true };
    try {
      return await this.#inside.run(state, fn);
    } finally {
      state.active = false;
    }
  }
}

/**
 * A Queryable that works only until `end()`: a transaction or session handle kept
 * past its callback must not reach a connection that is back in the pool (or, on
 * PGlite, someone else's transaction). @internal
 */
export function scopedHandle(
  query: (text: string, params?: readonly unknown[]) => Promise<QueryResult<unknown>>,
  what: "transaction" | "session",
): { handle: Queryable; end(): void } {
  let ended = false;
  const handle: Queryable = {
    query<R>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
      if (ended) return Promise.reject(new Error(`${what} handle used after its callback returned`));
      return query(text, params) as Promise<QueryResult<R>>;
    },
  };
  return {
    handle,
    end() {
      ended = true;
    },
  };
}

/** A string as one field of COPY's text format: backslash, tab, newline and carriage return escaped. */
export function copyTextField(s: string): string {
  return COPY_SPECIAL.test(s) ? s.replace(COPY_SPECIAL_ALL, (c) => COPY_ESCAPES[c] as string) : s;
}

const COPY_SPECIAL = /[\\\t\n\r]/;
const COPY_SPECIAL_ALL = /[\\\t\n\r]/g;
const COPY_ESCAPES: Record<string, string> = { "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r" };
/** Names `copyStatement` puts in SQL as they are: lower-case, unquoted. */
const PLAIN_IDENTIFIER = /^[a-z_][a-z0-9_]*$/;

/** The statement `copyIn` runs, on either adapter (`source`: STDIN, or PGlite's '/dev/blob'). */
export function copyStatement(table: string, columns: readonly string[], source: string): string {
  for (const name of [table, ...columns]) if (!PLAIN_IDENTIFIER.test(name)) throw new Error(`not a plain identifier: ${name}`);
  return `COPY ${table} (${columns.join(", ")}) FROM ${source}`;
}
