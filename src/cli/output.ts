/**
 * What the CLI prints: tables for people, JSON for scripts. Only `access`,
 * `resolve` and `export` ever hand a value to these functions.
 */

/** Writes `data` as JSON (two-space indent) and a newline to stdout. */
export function printJson(data: unknown): void {
  process.stdout.write(`${JSON.stringify(data, null, 2)}\n`);
}

/** Writes a line to stdout. */
export function printLine(text: string): void {
  process.stdout.write(`${text}\n`);
}

/** Writes a note for people (progress, summaries of side effects) to stderr. */
export function note(text: string): void {
  process.stderr.write(`${text}\n`);
}

/** A column-aligned table with a header row; cells are single-line strings. */
export function formatTable(header: readonly string[], rows: readonly (readonly string[])[]): string {
  const clean = (cell: string) => cell.replace(/[\r\n\t]+/g, " ");
  const all = [header, ...rows].map((r) => r.map(clean));
  const widths = header.map((_, i) => Math.max(...all.map((r) => (r[i] ?? "").length)));
  return all
    .map((r) => r.map((cell, i) => (i === r.length - 1 ? cell : cell.padEnd(widths[i] ?? 0))).join("  ").trimEnd())
    .join("\n");
}

/** `key: value` lines for one record, keys aligned. */
export function formatRecord(fields: readonly (readonly [string, string])[]): string {
  const width = Math.max(...fields.map(([k]) => k.length));
  return fields.map(([k, v]) => `${`${k}:`.padEnd(width + 1)} ${v}`).join("\n");
}

/** A timestamp for people: UTC, to the second. */
export function formatTime(date: Date): string {
  return `${date.toISOString().slice(0, 19).replace("T", " ")}Z`;
}

/** Shortens `text` to `max` characters with an ellipsis. */
export function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max - 1)}…`;
}
