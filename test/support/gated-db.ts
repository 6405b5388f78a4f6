import type { Db, Queryable, QueryResult } from "../../src/store/db.js";

/**
 * A Db whose statements wait at a gate before they go to the database, so that a
 * test decides the order in which concurrent calls' statements (and their
 * transactions' BEGIN and COMMIT) are issued. fast-check's scheduler is such a
 * gate: `gated.use(s)` inside a property, `gated.use(undefined)` after it (then
 * `s.waitIdle()` lets go of whatever was still held).
 *
 * Only the issuing order is decided; Postgres still runs what was issued, locks
 * and all. A gate always opens at once when released (its task is already
 * resolved), so a statement blocked on a row lock never holds the gate up.
 */
export interface StatementGate {
  schedule<T>(task: Promise<T>, label?: string): Promise<T>;
}

export interface GatedDb {
  readonly db: Db;
  /** The gate for the statements from now on; undefined lets them through. */
  use(gate: StatementGate | undefined): void;
}

export function gatedDb(inner: Db, name: string): GatedDb {
  let gate: StatementGate | undefined;
  const wait = (label: string): Promise<void> => (gate ? gate.schedule(Promise.resolve(), `${name}: ${label}`) : Promise.resolve());
  const gated = (q: Queryable): Queryable => ({
    async query<R = Record<string, unknown>>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
      await wait(text.replace(/\s+/g, " ").trim().slice(0, 60));
      return q.query<R>(text, params);
    },
  });
  const db: Db = {
    kind: inner.kind,
    query: gated(inner).query,
    async transaction<T>(fn: (tx: Queryable) => Promise<T>): Promise<T> {
      await wait("BEGIN");
      return inner.transaction(async (tx) => {
        const result = await fn(gated(tx));
        await wait("COMMIT");
        return result;
      });
    },
    // Sessions hold advisory locks (migrations), which these tests do not race.
    session: (fn) => inner.session(fn),
    listen: (channel, handlers) => inner.listen(channel, handlers),
    async copyIn(table, columns, rows) {
      await wait(`COPY ${table}`);
      return inner.copyIn(table, columns, rows);
    },
    close: () => inner.close(),
    poolStats: () => inner.poolStats(),
  };
  return { db, use: (g) => void (gate = g) };
}
