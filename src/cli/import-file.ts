import { SECRET_NAME_PATTERN, valueProblem } from "@secrets-service/client";
import { formatEnvLine, parseEnvFile, type FileEntry, type FileProblem, type ParsedFile } from "./env-file.js";

/**
 * What `secrets import` reads and `secrets export` writes: a dotenv file or a JSON
 * object of `"NAME": "value"`, checked whole before anything is written. Every
 * problem is reported with its line number; an invalid name is not repeated (it may
 * be a value pasted into the wrong place), and no value ever is.
 */

/** The file formats of import and export. */
export type FileFormat = "dotenv" | "json";

/** The `--format` choices; `env` is another spelling of `dotenv`. */
export const FORMAT_CHOICES = ["dotenv", "json", "env"] as const;

/** The format asked for with `--format`, else JSON for a `.json` path, else dotenv. */
export function formatOf(path: string | undefined, asked?: (typeof FORMAT_CHOICES)[number]): FileFormat {
  if (asked !== undefined) return asked === "json" ? "json" : "dotenv";
  return path?.toLowerCase().endsWith(".json") ? "json" : "dotenv";
}

/** A file read for import: the entries to write, those left out for an empty value, and the problems. */
export interface ImportFile extends ParsedFile {
  readonly skippedEmpty: FileEntry[];
}

/**
 * Reads `text` and checks every entry against the API's rules. With `skipEmpty`,
 * entries with an empty value are set aside instead of being problems.
 */
export function readImportFile(text: string, format: FileFormat, options: { skipEmpty?: boolean } = {}): ImportFile {
  const parsed = format === "json" ? parseJsonFile(text) : parseEnvFile(text);
  const skip = (e: FileEntry) => options.skipEmpty === true && e.value === "";
  const entries = parsed.entries.filter((e) => !skip(e));
  return {
    entries,
    skippedEmpty: parsed.entries.filter(skip),
    problems: [...parsed.problems, ...checkEntries(entries)].sort((a, b) => a.line - b.line),
  };
}

/** The text of a file `import` reads back to `values`: JSON (an object) or dotenv (one line each). */
export function formatFile(values: ReadonlyMap<string, string>, format: FileFormat): string {
  if (format === "json") return `${JSON.stringify(Object.fromEntries(values), null, 2)}\n`;
  return [...values].map(([name, value]) => `${formatEnvLine(name, value)}\n`).join("");
}

/** The name rule, each value's size and encoding, and names given twice. */
export function checkEntries(entries: readonly FileEntry[]): FileProblem[] {
  const problems: FileProblem[] = [];
  const firstLine = new Map<string, number>();
  for (const { line, name, value } of entries) {
    if (!SECRET_NAME_PATTERN.test(name)) {
      problems.push({ line, message: `invalid name (${name.length} characters; names must match ${SECRET_NAME_PATTERN.source})` });
      continue;
    }
    const problem = valueProblem(value);
    if (problem) problems.push({ line, message: `${name}: ${problem}` });
    const first = firstLine.get(name);
    if (first !== undefined) problems.push({ line, message: `${name} is also set on line ${first}` });
    else firstLine.set(name, line);
  }
  return problems;
}

/** Reads a JSON object of names to string values, keeping each key's line number. */
export function parseJsonFile(text: string): ParsedFile {
  const source = text.replace(/^\uFEFF/, "");
  let parsed: unknown;
  try {
    parsed = JSON.parse(source);
  } catch (e) {
    // V8's message quotes the text around the fault, which may be a value: report only where.
    const at = /position (\d+)/.exec(e instanceof Error ? e.message : "");
    const line = at ? lineAt(source, Number(at[1])) : 1;
    return { entries: [], problems: [{ line, message: "not valid JSON" }] };
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) {
    return { entries: [], problems: [{ line: 1, message: 'expected a JSON object of "NAME": "value"' }] };
  }
  const entries: FileEntry[] = [];
  const problems: FileProblem[] = [];
  for (const { key, line } of topLevelKeys(source)) {
    const value: unknown = (parsed as Record<string, unknown>)[key];
    if (typeof value === "string") entries.push({ line, name: key, value });
    else if (SECRET_NAME_PATTERN.test(key)) problems.push({ line, message: `${key}: value must be a string` });
    else problems.push({ line, message: "value must be a string (and the name is invalid)" });
  }
  return { entries, problems };
}

/**
 * The keys of the top-level object of valid JSON `text`, in order (repeats kept),
 * each with the line it starts on. JSON.parse keeps no positions, hence this scan.
 */
function topLevelKeys(text: string): { key: string; line: number }[] {
  const keys: { key: string; line: number }[] = [];
  let depth = 0;
  let line = 1;
  let expectingKey = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (ch === "\n") line += 1;
    else if (ch === "{" || ch === "[") {
      depth += 1;
      expectingKey = depth === 1;
    } else if (ch === "}" || ch === "]") depth -= 1;
    else if (ch === "," && depth === 1) expectingKey = true;
    else if (ch === '"') {
      const start = i;
      const startLine = line;
      for (i += 1; i < text.length && text[i] !== '"'; i++) {
        if (text[i] === "\\") i += 1;
        else if (text[i] === "\n") line += 1;
      }
      if (depth === 1 && expectingKey) {
        keys.push({ key: JSON.parse(text.slice(start, i + 1)) as string, line: startLine });
        expectingKey = false;
      }
    }
  }
  return keys;
}

function lineAt(text: string, position: number): number {
  return text.slice(0, position).split("\n").length;
}
