/**
 * The part of the `Db` contract (db.ts, Statements) that both adapters keep alike:
 * a call on a Db from inside its own transaction or session callback is refused
 * (ScopeGuard), and the handle a callback receives stops working when the callback
 * returns (scopedHandle). An adapter says how it runs statements and callbacks on
 * its connections; `guardedDb` puts these checks around them, in one place.
 */
import { ScopeGuard, scopedHandle, type Db, type Listener, type NotificationHandlers, type QueryResult, type Queryable } from "./db.js";

/** Sends one statement on the connection a transaction or session holds. */
export type RunStatement = (text: string, params?: readonly unknown[]) => Promise<QueryResult<unknown>>;

/** What an adapter supplies: the `Db` methods, with transactions and sessions handing their body a RunStatement. */
export interface DbConnections {
  readonly kind: Db["kind"];
  query<R>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>>;
  /** Runs `body` between BEGIN and COMMIT on one connection; rolls back and rethrows when it throws. */
  transaction<T>(body: (run: RunStatement) => Promise<T>): Promise<T>;
  /** Runs `body` on one connection whose session state does not outlive it. */
  session<T>(body: (run: RunStatement) => Promise<T>): Promise<T>;
  copyIn(table: string, columns: readonly string[], rows: string): Promise<number>;
  listen(channel: string, handlers: NotificationHandlers): Promise<Listener>;
  close(): Promise<void>;
  poolStats(): { total: number; idle: number; waiting: number };
}

/**
 * The Db over an adapter's connections. Every call first checks it is not made
 * from inside one of this Db's callbacks (close too: it would wait for the
 * connection that callback holds); `scopeChecks` turns that check on.
 */
export function guardedDb(connections: DbConnections, scopeChecks: boolean): Db {
  const guard = new ScopeGuard(scopeChecks);

  /** Runs fn with a handle on `run` that works only until fn returns, marked as this Db's scope. */
  async function inScope<T>(run: RunStatement, what: "transaction" | "session", fn: (q: Queryable) => Promise<T>): Promise<T> {
    const scope = scopedHandle(run, what);
    try {
      return await guard.run(() => fn(scope.handle));
    } finally {
      scope.end();
    }
  }

  return {
    kind: connections.kind,

    async query<R>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
      guard.check();
      return connections.query<R>(text, params);
    },

    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      guard.check();
      return connections.transaction((run) => inScope(run, "transaction", fn));
    },

    async session<T>(fn: (conn: Queryable) => Promise<T>): Promise<T> {
      guard.check();
      return connections.session((run) => inScope(run, "session", fn));
    },

    async copyIn(table: string, columns: readonly string[], rows: string): Promise<number> {
      guard.check();
      return connections.copyIn(table, columns, rows);
    },

    async listen(channel: string, handlers: NotificationHandlers): Promise<Listener> {
      guard.check();
      return connections.listen(channel, handlers);
    },

    async close(): Promise<void> {
      guard.check();
      return connections.close();
    },

    poolStats: () => connections.poolStats(),
  };
}
