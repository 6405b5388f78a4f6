/**
 * Python's lexical grammar, as much of it as the expression scanner (expression.ts) needs: string literals
 * (prefixes, bodies, escapes), identifiers, numbers, and the whitespace, line continuations and comments
 * between tokens. It knows nothing of secrets; the scanner decides what the tokens mean.
 */

/** Python's string prefixes, lower-cased; `t` (template strings, Python 3.14) is treated like `f`. */
export const STRING_PREFIXES = new Set(["", "r", "u", "b", "br", "rb", "f", "fr", "rf", "t", "tr", "rt"]);

const ID_START = /^[\p{ID_Start}_]$/u;
const ID_CONTINUE = /^\p{ID_Continue}$/u;
const NUMBER_CHAR = /^[0-9A-Za-z_.]$/;

/** What `readStaticString` finds: a str literal's end and value, or why there is none to read statically. */
export type StaticString = { end: number; value: string } | "absent" | "not-static" | "unterminated";

/** A str literal at `pos` and its value; f-, t- and bytes literals are `not-static`. */
export function readStaticString(src: string, pos: number): StaticString {
  let quote = pos;
  const wordEnd = identifierEnd(src, pos);
  let prefix = "";
  if (wordEnd > pos) {
    prefix = src.slice(pos, wordEnd).toLowerCase();
    quote = wordEnd;
  }
  const q = src.charAt(quote);
  if ((q !== "'" && q !== '"') || !STRING_PREFIXES.has(prefix)) return "absent";
  if (/[ftb]/.test(prefix)) return "not-static";
  const close = src.startsWith(q + q + q, quote) ? q + q + q : q;
  return readStringBody(src, quote + close.length, close, prefix.includes("r")) ?? "unterminated";
}

/**
 * The body of a str or bytes literal from `pos` to its closing quote: the position after it and the
 * literal's value, or undefined when it does not close. Raw strings keep their backslashes, yet a backslash
 * still keeps the next character from closing the string (so `r'\'` does not end).
 */
export function readStringBody(
  src: string,
  from: number,
  close: string,
  raw: boolean,
): { end: number; value: string } | undefined {
  const triple = close.length === 3;
  let pos = from;
  let value = "";
  for (;;) {
    if (pos >= src.length) return undefined;
    if (src.startsWith(close, pos)) return { end: pos + close.length, value };
    const c = src.charAt(pos);
    if (!triple && (c === "\n" || c === "\r")) return undefined;
    if (c === "\\") {
      if (pos + 1 >= src.length) return undefined;
      if (raw) {
        const width = src.startsWith("\r\n", pos + 1) ? 3 : 2;
        value += src.slice(pos, pos + width);
        pos += width;
        continue;
      }
      const escape = decodeEscape(src, pos);
      value += escape.text;
      pos = escape.end;
      continue;
    }
    value += c;
    pos += 1;
  }
}

const SIMPLE_ESCAPES: Record<string, string> = {
  "\\": "\\",
  "'": "'",
  '"': '"',
  a: "\x07",
  b: "\b",
  f: "\f",
  n: "\n",
  r: "\r",
  t: "\t",
  v: "\v",
};

/** One backslash escape of a non-raw literal at `pos`; unknown escapes keep their backslash, as Python does. */
function decodeEscape(src: string, pos: number): { text: string; end: number } {
  const next = src.charAt(pos + 1);
  if (next === "\n") return { text: "", end: pos + 2 };
  if (next === "\r") return { text: "", end: src.charAt(pos + 2) === "\n" ? pos + 3 : pos + 2 };
  const simple = SIMPLE_ESCAPES[next];
  if (simple !== undefined) return { text: simple, end: pos + 2 };
  const octal = /[0-7]{1,3}/y;
  octal.lastIndex = pos + 1;
  const octalMatch = octal.exec(src);
  if (octalMatch) return { text: String.fromCodePoint(parseInt(octalMatch[0], 8)), end: octal.lastIndex };
  const width = next === "x" ? 2 : next === "u" ? 4 : next === "U" ? 8 : 0;
  if (width > 0) {
    const digits = src.slice(pos + 2, pos + 2 + width);
    const code = /^[0-9A-Fa-f]+$/.test(digits) && digits.length === width ? parseInt(digits, 16) : NaN;
    if (code <= 0x10ffff) return { text: String.fromCodePoint(code), end: pos + 2 + width };
  }
  // `\N{NAME}` and anything unknown: kept as written (such a name breaks the naming rule anyway).
  return { text: src.slice(pos, pos + 2), end: pos + 2 };
}

/** Skip whitespace, line continuations and comments: Python allows them between tokens inside brackets. */
export function skipTrivia(src: string, from: number): number {
  let pos = from;
  for (;;) {
    const c = src.charAt(pos);
    if (c === " " || c === "\t" || c === "\f" || c === "\r" || c === "\n") pos += 1;
    else if (c === "\\" && (src.charAt(pos + 1) === "\n" || src.charAt(pos + 1) === "\r")) pos += 2;
    else if (c === "#") pos = endOfLine(src, pos);
    else return pos;
  }
}

/** The position of the next line break from `from`, or the end of `src`. */
export function endOfLine(src: string, from: number): number {
  const match = /[\r\n]/g;
  match.lastIndex = from;
  return match.exec(src)?.index ?? src.length;
}

/** The end of the run of identifier characters (digits included, even first) that starts at `pos`. */
export function identifierCharsEnd(src: string, pos: number): number {
  let end = pos;
  while (end < src.length) {
    const ch = codePointAt(src, end);
    if (!ID_CONTINUE.test(ch)) break;
    end += ch.length;
  }
  return end;
}

/** The end of the identifier that starts at `pos`, or `pos` when none does. */
export function identifierEnd(src: string, pos: number): number {
  let end = pos;
  while (end < src.length) {
    const ch = codePointAt(src, end);
    if (!(end === pos ? ID_START : ID_CONTINUE).test(ch)) break;
    end += ch.length;
  }
  return end;
}

/** A number token, loosely: digits, letters (hex, exponents, `j`), underscores and dots, signed exponents. */
export function numberEnd(src: string, from: number): number {
  let pos = from;
  const hex = /^0[xX]/.test(src.slice(from, from + 2));
  while (pos < src.length) {
    const c = src.charAt(pos);
    const exponentSign = (c === "+" || c === "-") && !hex && /[eE]/.test(src.charAt(pos - 1));
    if (!NUMBER_CHAR.test(c) && !exponentSign) break;
    pos += 1;
  }
  return pos;
}

/** Whether `c` is one ASCII digit. */
export function isDigit(c: string): boolean {
  return c.length === 1 && c >= "0" && c <= "9";
}

/** The whole character (one or two UTF-16 units) at `pos`. */
function codePointAt(src: string, pos: number): string {
  const code = src.codePointAt(pos);
  return code === undefined ? "" : String.fromCodePoint(code);
}
