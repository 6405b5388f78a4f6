/**
 * The dotenv format, both ways: `import` reads it, `export` and `resolve` write it,
 * and what is written reads back to the same values, in this reader and in a POSIX
 * shell (`set -a; . ./file`).
 *
 * Written: `NAME='value'`, every value single-quoted, a `'` inside written as
 * `'\''` (close the quote, an escaped quote, reopen). Inside single quotes a shell
 * expands nothing (no `$`, backtick or backslash), so sourcing the file runs no code
 * and yields the value byte for byte. A NUL byte is the one thing no environment
 * variable can hold (see envValueProblem).
 *
 * Read: one `NAME=VALUE` per line; blank lines and `#` comments skipped; an
 * optional `export ` prefix; whitespace around `=` ignored. A value is bare (up to
 * an inline ` #` comment, trimmed), or a run of quoted parts: 'single-quoted'
 * (literal), "double-quoted" (escapes \n \r \t \" \\ \$) and backslash-escaped
 * characters between them, as in `'it'\''s'`. A quoted part may span lines, and
 * keeps every character inside it, carriage returns included. Problems are
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

/** One `NAME='value'` line that parseEnvFile and a POSIX shell both read back to exactly `value`. */
export function formatEnvLine(name: string, value: string): string {
  return `${name}='${value.replaceAll("'", "'\\''")}'`;
}

/** The names of `values` that no environment variable (nor a sourced dotenv line) can hold: a NUL byte. */
export function unsettableNames(values: ReadonlyMap<string, string>): string[] {
  return [...values].filter(([, value]) => value.includes("\0")).map(([name]) => name);
}

/** Why the values of `names` (from unsettableNames) are refused; names only, never a value. */
export function unsettableMessage(names: readonly string[]): string {
  return `the value of ${names.join(", ")} holds a NUL byte, which no environment variable can hold`;
}

/** Reads dotenv text. */
export function parseEnvFile(text: string): ParsedFile {
  const scanner = new Scanner(text.replace(/^\uFEFF/, ""));
  const entries: FileEntry[] = [];
  const problems: FileProblem[] = [];
  while (!scanner.done()) {
    const line = scanner.line;
    const source = scanner.restOfLine().replace(/^\s+/, "");
    if (source === "" || source.startsWith("#")) {
      scanner.skipLine();
      continue;
    }
    const rest = source.replace(/^export\s+/, "");
    const eq = rest.indexOf("=");
    if (eq < 0) {
      problems.push({ line, message: "expected NAME=VALUE" });
      scanner.skipLine();
      continue;
    }
    const name = rest.slice(0, eq).trim();
    // Move the scanner to the first character of the value.
    scanner.skip(scanner.restOfLine().length - rest.length + eq + 1);
    scanner.skipBlanks();
    const first = scanner.peek();
    if (first !== "'" && first !== '"') {
      entries.push({ line, name, value: scanner.restOfLine().replace(/\s+#.*$/, "").trimEnd() });
      scanner.skipLine();
      continue;
    }
    const read = readQuoted(scanner);
    if (typeof read === "string") entries.push({ line, name, value: read });
    else problems.push({ line, message: read.problem });
    scanner.skipLine();
  }
  return { entries, problems };
}

/** Reads quoted parts and escapes up to the end of the value; the scanner stops at what follows it. */
function readQuoted(scanner: Scanner): string | { problem: string } {
  let value = "";
  for (;;) {
    const ch = scanner.peek();
    if (ch === "'" || ch === '"') {
      scanner.skip(1);
      const body = scanner.until(ch, ch === '"');
      if (body === undefined) return { problem: `the ${ch === '"' ? "double" : "single"} quote that starts the value is never closed` };
      value += ch === '"' ? unescapeDouble(body) : body;
    } else if (ch === "\\" && !scanner.atLineEnd(1)) {
      value += scanner.peek(1);
      scanner.skip(2);
    } else {
      break;
    }
  }
  const after = scanner.restOfLine().trim();
  if (after !== "" && !after.startsWith("#")) return { problem: "unexpected text after the closing quote" };
  return value;
}

/** A cursor over the text that counts lines; `\n` and `\r\n` end a line outside quotes. */
class Scanner {
  private at = 0;
  line = 1;
  constructor(private readonly text: string) {}

  done(): boolean {
    return this.at >= this.text.length;
  }
  peek(offset = 0): string {
    return this.text.charAt(this.at + offset);
  }
  atLineEnd(offset = 0): boolean {
    const ch = this.peek(offset);
    return ch === "" || ch === "\n" || (ch === "\r" && this.peek(offset + 1) === "\n");
  }
  /** The characters from here to the end of the line, without the line ending. */
  restOfLine(): string {
    const end = this.text.indexOf("\n", this.at);
    const line = this.text.slice(this.at, end < 0 ? this.text.length : end);
    return line.endsWith("\r") ? line.slice(0, -1) : line;
  }
  skip(count: number): void {
    for (let i = 0; i < count && !this.done(); i++) this.advance();
  }
  skipBlanks(): void {
    while (this.peek() === " " || this.peek() === "\t") this.advance();
  }
  /** Moves past the end of the current line. */
  skipLine(): void {
    while (!this.done() && this.peek() !== "\n") this.advance();
    this.advance();
  }
  /**
   * The text up to the next unescaped `quote` (a backslash escapes the next character
   * when `escapes`), leaving the scanner after the quote; undefined if it never comes.
   */
  until(quote: string, escapes: boolean): string | undefined {
    const start = this.at;
    while (!this.done()) {
      const ch = this.peek();
      if (ch === quote) {
        const body = this.text.slice(start, this.at);
        this.advance();
        return body;
      }
      if (escapes && ch === "\\") this.advance();
      this.advance();
    }
    return undefined;
  }
  private advance(): void {
    if (this.text.charAt(this.at) === "\n") this.line += 1;
    if (this.at < this.text.length) this.at += 1;
  }
}

const ESCAPES: Record<string, string> = { n: "\n", r: "\r", t: "\t", '"': '"', "\\": "\\", $: "$" };

function unescapeDouble(text: string): string {
  return text.replace(/\\([\s\S])/g, (whole, ch: string) => ESCAPES[ch] ?? whole);
}
