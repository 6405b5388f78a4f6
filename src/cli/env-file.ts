/**
 * The .env format, both ways: `import` reads it, `export` and `resolve` write it,
 * and what is written reads back to the same values.
 *
 * Read: one `NAME=VALUE` per line; blank lines and `#` comments skipped; an
 * optional `export ` prefix; whitespace around `=` ignored. A value is bare (up to
 * an inline ` #` comment, trimmed), 'single-quoted' (literal) or "double-quoted"
 * (escapes \n \r \t \" \\ \$), and a quoted value may span lines. Problems are
 * reported by line number and never quote the line: it may hold a value.
 */

/** One `NAME=VALUE` of a file, with the line it starts on. */
export interface FileEntry {
  readonly line: number;
  readonly name: string;
  readonly value: string;
}

/** Something wrong at a line; the message never holds a value. */
export interface FileProblem {
  readonly line: number;
  readonly message: string;
}

/** A file read into entries, and what could not be read. */
export interface ParsedFile {
  readonly entries: FileEntry[];
  readonly problems: FileProblem[];
}

/** Reads .env text. */
export function parseEnvFile(text: string): ParsedFile {
  const lines = text.replace(/^\uFEFF/, "").split(/\r?\n/);
  const entries: FileEntry[] = [];
  const problems: FileProblem[] = [];
  let i = 0;
  while (i < lines.length) {
    const line = i + 1;
    const source = (lines[i] ?? "").replace(/^\s+/, "");
    i += 1;
    if (source === "" || source.startsWith("#")) continue;
    const rest = source.replace(/^export\s+/, "");
    const eq = rest.indexOf("=");
    if (eq < 0) {
      problems.push({ line, message: "expected NAME=VALUE" });
      continue;
    }
    const name = rest.slice(0, eq).trim();
    const raw = rest.slice(eq + 1).replace(/^[ \t]+/, "");
    const quote = raw[0];
    if (quote !== '"' && quote !== "'") {
      entries.push({ line, name, value: raw.replace(/\s+#.*$/, "").trimEnd() });
      continue;
    }
    // A quoted value: scan for the closing quote, taking more lines while there is none.
    let body = raw.slice(1);
    let collected = "";
    let closed = false;
    for (;;) {
      const end = closingQuote(body, quote);
      if (end >= 0) {
        collected += body.slice(0, end);
        const after = body.slice(end + 1).trim();
        if (after !== "" && !after.startsWith("#")) problems.push({ line, message: "unexpected text after the closing quote" });
        else closed = true;
        break;
      }
      if (i >= lines.length) {
        problems.push({ line, message: `the ${quote === '"' ? "double" : "single"} quote that starts the value is never closed` });
        break;
      }
      collected += `${body}\n`;
      body = lines[i] ?? "";
      i += 1;
    }
    if (closed) entries.push({ line, name, value: quote === '"' ? unescapeDouble(collected) : collected });
  }
  return { entries, problems };
}

/** One `NAME=value` line that parseEnvFile reads back to exactly `value`. */
export function formatEnvLine(name: string, value: string): string {
  if (/^[A-Za-z0-9_.\/:@+,=-]+$/.test(value)) return `${name}=${value}`;
  if (!/['\r\n]/.test(value)) return `${name}='${value}'`;
  return `${name}="${escapeDouble(value)}"`;
}

function closingQuote(text: string, quote: string): number {
  for (let k = 0; k < text.length; k++) {
    const ch = text[k];
    if (quote === '"' && ch === "\\") k += 1;
    else if (ch === quote) return k;
  }
  return -1;
}

const ESCAPES: Record<string, string> = { n: "\n", r: "\r", t: "\t", '"': '"', "\\": "\\", $: "$" };

function unescapeDouble(text: string): string {
  return text.replace(/\\([\s\S])/g, (whole, ch: string) => ESCAPES[ch] ?? whole);
}

function escapeDouble(text: string): string {
  return text.replace(/[\\"$\n\r\t]/g, (ch) => {
    switch (ch) {
      case "\n":
        return "\\n";
      case "\r":
        return "\\r";
      case "\t":
        return "\\t";
      default:
        return `\\${ch}`;
    }
  });
}
