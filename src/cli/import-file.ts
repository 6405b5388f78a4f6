import { SECRET_NAME_PATTERN, valueProblem } from "@secrets-service/client";
import { parseEnvFile, type FileEntry, type FileProblem, type ParsedFile } from "./env-file.js";

/**
 * What `secrets import` reads: a .env file or a JSON object of `"NAME": "value"`,
 * checked whole before anything is written. Every problem is reported with its
 * line number; an invalid name is not repeated (it may be a value pasted into the
 * wrong place), and no value ever is.
 */

/** The formats `import` reads. */
export type ImportFormat = "env" | "json";

/** The format of `path` when none is given: JSON for `.json`, .env otherwise. */
export function formatOf(path: string): ImportFormat {
  return path.toLowerCase().endsWith(".json") ? "json" : "env";
}

/** Reads `text` and checks every entry against the API's rules. */
export function readImportFile(text: string, format: ImportFormat): ParsedFile {
  const parsed = format === "json" ? parseJsonFile(text) : parseEnvFile(text);
  return { entries: parsed.entries, problems: [...parsed.problems, ...checkEntries(parsed.entries)].sort((a, b) => a.line - b.line) };
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
