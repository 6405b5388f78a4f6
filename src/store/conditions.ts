/**
 * The conditions of a WHERE clause, and the parameters they number, built together:
 * each value is pushed onto `params` and its condition names it `$n`. The filters on
 * secret names that more than one query applies (a prefix, a list) are written here
 * once, so that a listing and a watch's snapshot select the same names.
 */
export interface Conditions {
  /** A condition on one new parameter: `sql` gets its placeholder. */
  add(sql: (placeholder: string) => string, value: unknown): void;
  /** A condition on parameters already pushed. */
  push(sql: string): void;
  /**
   * Names that start with `prefix` (every name when it is ""), as a range the
   * (developer_id, name) index serves: names are printable ASCII, below U+007F
   * (api/limits.ts), so every name with the prefix sorts before `prefix + U+007F`.
   */
  namePrefix(prefix: string): void;
  /** Names among `names`, when a list is given. */
  nameIn(names: readonly string[] | undefined): void;
  /** The conditions joined with AND. */
  readonly sql: string;
}

export function conditions(params: unknown[], ...fixed: string[]): Conditions {
  const where = [...fixed];
  const add = (sql: (placeholder: string) => string, value: unknown) => {
    params.push(value);
    where.push(sql(`$${params.length}`));
  };
  return {
    add,
    push: (sql) => void where.push(sql),
    namePrefix(prefix) {
      if (prefix === "") return;
      add((p) => `name >= ${p}`, prefix);
      add((p) => `name < ${p}`, `${prefix}\u007f`);
    },
    nameIn(names) {
      if (names !== undefined) add((p) => `name = ANY(${p}::text[])`, names);
    },
    get sql() {
      return where.join(" AND ");
    },
  };
}
