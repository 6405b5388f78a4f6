/**
 * A scanner for the Python-like expressions of task definitions: just enough of Python's lexical grammar
 * to tell code from text, so that `secrets.NAME`, `secrets['NAME']` and `secrets["NAME"]` are found in code
 * and never in string literals, comments, or the literal parts of f-strings.
 *
 * It is not a parser: it reports what the resolver needs (references, and the places where a reference
 * cannot be known statically or the text cannot be tokenized) and nothing about the rest of the syntax.
 * Where Python versions differ it takes the more generous reading, so that no reference is missed:
 * strings inside f-string replacement fields may reuse the enclosing quote (Python 3.12, PEP 701), and
 * t-strings (Python 3.14) are scanned like f-strings.
 *
 * Python's tokens themselves (literals, identifiers, numbers, comments) are read by python-tokens.ts. The
 * scanner stays one class in one file: its methods are one recursive descent (code, strings, f-strings,
 * replacement fields, code again) over shared state (the references, the problems, the nesting depth).
 */
import {
  endOfLine,
  identifierCharsEnd,
  identifierEnd,
  isDigit,
  numberEnd,
  readStaticString,
  readStringBody,
  skipTrivia,
  STRING_PREFIXES,
} from "./python-tokens.js";

/** The prefix that makes a string scalar of a task an expression: a dollar sign and one space. */
export const EXPRESSION_PREFIX = "$ ";

/** Whether a string scalar of a task is an expression (code) rather than text. */
export function isExpression(value: string): boolean {
  return value.startsWith(EXPRESSION_PREFIX);
}

/** A static reference to a secret; `offset` is that of its `secrets` token in the scanned code. */
export interface ExpressionReference {
  readonly name: string;
  readonly offset: number;
}

/** Something that keeps the scanner from knowing every reference, at an offset in the scanned code. */
export interface ExpressionProblem {
  readonly offset: number;
  readonly message: string;
}

/** What one expression references, and what could not be read; both in source order. */
export interface ExpressionScan {
  readonly references: ExpressionReference[];
  readonly problems: ExpressionProblem[];
}

/** Messages of the problems the scanner reports (exported so that callers and tests can match them). */
export const ExpressionMessages = {
  dynamicSubscript:
    "dynamic secret reference cannot be resolved statically: the subscript of 'secrets' must be a string literal",
  wholeSecrets: "dynamic secret reference cannot be resolved statically: 'secrets' is used as a whole",
  missingName: "expected a secret name after 'secrets.'",
  unterminatedString: "unterminated string literal",
  unterminatedTripleString: "unterminated triple-quoted string literal",
  fieldNotClosed: "f-string: '{' was never closed",
  singleCloseBrace: "f-string: single '}' is not allowed",
  tooDeep: "expression is nested too deeply",
} as const;

/**
 * Scan `code` (an expression without its `$ ` prefix) for references to secrets.
 *
 * Never throws on malformed input: an unterminated string or an unclosed f-string field ends the scan with a
 * problem at its position, and the references found before it are kept.
 */
export function scanExpression(code: string): ExpressionScan {
  const scanner = new Scanner(code);
  try {
    scanner.scanCode(0, undefined);
  } catch (e) {
    if (!(e instanceof Fatal)) throw e;
    scanner.problems.push({ offset: e.offset, message: e.message });
  }
  const byOffset = (a: { offset: number }, b: { offset: number }): number => a.offset - b.offset;
  return { references: scanner.references.sort(byOffset), problems: scanner.problems.sort(byOffset) };
}

/** An error after which the rest of the code cannot be tokenized reliably. */
class Fatal {
  constructor(
    readonly offset: number,
    readonly message: string,
  ) {}
}

/** The f-string replacement field a piece of code stands in. */
interface Field {
  /** Offset of the field's `{`. */
  readonly open: number;
  /** The quote character of the f-string that holds the field. */
  readonly quote: string;
}

/** f-strings within f-strings and fields within format specs recurse; a real expression is nowhere near this. */
const MAX_NESTING = 100;

const OPENERS = "([{";
const CLOSERS = ")]}";

class Scanner {
  readonly references: ExpressionReference[] = [];
  readonly problems: ExpressionProblem[] = [];
  private nesting = 0;

  constructor(private readonly src: string) {}

  /**
   * Scan code from `pos`. At top level, to the end of the input. Inside an f-string replacement field, up to
   * the field's end at bracket depth 0 — its `}`, its `!` conversion or its `:` format spec — whose position
   * is returned.
   */
  scanCode(start: number, field: Field | undefined): number {
    const src = this.src;
    let pos = start;
    let depth = 0;
    // Set after a `.` token: an identifier there is an attribute of something else (`obj.secrets.x`).
    let afterDot = false;
    for (;;) {
      if (pos >= src.length) {
        if (field) throw new Fatal(field.open, ExpressionMessages.fieldNotClosed);
        return pos;
      }
      const c = src.charAt(pos);
      if (c === " " || c === "\t" || c === "\f" || c === "\r" || c === "\n" || c === "\\") {
        // Whitespace, and backslash line continuations (a stray backslash is a syntax error with nothing in it).
        pos += 1;
        continue;
      }
      if (c === "#") {
        pos = endOfLine(src, pos);
        continue;
      }
      if (c === "'" || c === '"') {
        pos = this.scanString(pos, pos, "", field);
        afterDot = false;
        continue;
      }
      const wordEnd = identifierEnd(src, pos);
      if (wordEnd > pos) {
        const word = src.slice(pos, wordEnd);
        const next = src.charAt(wordEnd);
        if ((next === "'" || next === '"') && STRING_PREFIXES.has(word.toLowerCase())) {
          pos = this.scanString(pos, wordEnd, word.toLowerCase(), field);
        } else {
          // Python compares identifiers after NFKC normalization.
          if (!afterDot && word.normalize("NFKC") === "secrets") this.secretsToken(pos, wordEnd);
          pos = wordEnd;
        }
        afterDot = false;
        continue;
      }
      if (isDigit(c) || (c === "." && isDigit(src.charAt(pos + 1)))) {
        pos = numberEnd(src, pos);
        afterDot = false;
        continue;
      }
      if (c === ".") {
        afterDot = true;
        pos += 1;
        continue;
      }
      afterDot = false;
      if (field && depth === 0) {
        if (c === "}" || c === ":") return pos;
        if (c === "!" && src.charAt(pos + 1) !== "=") return pos;
      }
      if (OPENERS.includes(c)) depth += 1;
      else if (CLOSERS.includes(c)) depth = Math.max(0, depth - 1);
      pos += 1;
    }
  }

  /**
   * A `secrets` token that is not an attribute of something else: record what it references, or a problem
   * when that cannot be known without running the code. The main scan goes on after the token either way,
   * so a subscript's contents are still scanned (`secrets[secrets.key_name]` references `key_name`).
   */
  private secretsToken(start: number, end: number): void {
    const src = this.src;
    const next = skipTrivia(src, end);
    const c = src.charAt(next);
    if (c === ".") {
      const nameStart = skipTrivia(src, next + 1);
      // Any run of identifier characters, digits first included: `secrets.1bad` is reported as a bad name.
      const nameEnd = identifierCharsEnd(src, nameStart);
      if (nameEnd > nameStart) {
        this.references.push({ name: src.slice(nameStart, nameEnd).normalize("NFKC"), offset: start });
      } else {
        this.problems.push({ offset: start, message: ExpressionMessages.missingName });
      }
      return;
    }
    if (c === "[") {
      this.subscript(start, next);
      return;
    }
    // `f(secrets=...)`: a keyword argument's name, not a use of the variable.
    if (c === "=" && src.charAt(next + 1) !== "=") return;
    // `secrets` passed around whole (`len(secrets)`, `getattr(secrets, n)`): which secrets it needs cannot be
    // known without running the code, so the resolver must not pretend it found them all.
    this.problems.push({ offset: start, message: ExpressionMessages.wholeSecrets });
  }

  /** `secrets[...]`: static when the subscript is one str literal (or adjacent ones, which Python joins). */
  private subscript(start: number, bracket: number): void {
    const src = this.src;
    let pos = skipTrivia(src, bracket + 1);
    let name = "";
    let literals = 0;
    for (;;) {
      const literal = readStaticString(src, pos);
      if (literal === "unterminated") return; // the main scan reports it where it stands
      if (literal === "absent" || literal === "not-static") break;
      name += literal.value;
      literals += 1;
      pos = skipTrivia(src, literal.end);
    }
    if (literals > 0 && src.charAt(pos) === "]") {
      this.references.push({ name, offset: start });
    } else {
      // A variable, an f-string, a bytes literal or any other expression as the subscript: the name is known
      // only at run time, so this is an error rather than a silently missed secret.
      this.problems.push({ offset: start, message: ExpressionMessages.dynamicSubscript });
    }
  }

  /**
   * A string literal whose prefix starts at `start` and whose opening quote is at `quote`; returns the
   * position after it. Only f-strings (and t-strings) have code in them.
   */
  private scanString(start: number, quote: number, prefix: string, field: Field | undefined): number {
    const src = this.src;
    const q = src.charAt(quote);
    const triple = src.startsWith(q + q + q, quote);
    const close = triple ? q + q + q : q;
    const raw = prefix.includes("r");
    const formatted = prefix.includes("f") || prefix.includes("t");
    try {
      if (!formatted) {
        const literal = readStringBody(src, quote + close.length, close, raw);
        if (literal === undefined) throw new Fatal(start, unterminated(triple));
        return literal.end;
      }
      return this.scanFStringBody(start, quote + close.length, close, raw);
    } catch (e) {
      // Inside a field, a string that opens with the enclosing f-string's own quote and never closes is
      // almost always that f-string's end, reached before the field's `}`: say so.
      if (e instanceof Fatal && e.offset === start && e.message === unterminated(triple) && q === field?.quote) {
        throw new Fatal(field.open, ExpressionMessages.fieldNotClosed);
      }
      throw e;
    }
  }

  /** The body of an f-string from `pos` (after its opening quote); returns the position after its closing quote. */
  private scanFStringBody(start: number, from: number, close: string, raw: boolean): number {
    const src = this.src;
    const triple = close.length === 3;
    this.enter(start);
    try {
      let pos = from;
      for (;;) {
        if (pos >= src.length) throw new Fatal(start, unterminated(triple));
        if (src.startsWith(close, pos)) return pos + close.length;
        const c = src.charAt(pos);
        if (!triple && (c === "\n" || c === "\r")) throw new Fatal(start, unterminated(triple));
        if (c === "\\") {
          pos = this.fStringEscapeEnd(pos, raw, start, triple);
          continue;
        }
        if (c === "{") {
          if (src.charAt(pos + 1) === "{") {
            pos += 2; // `{{` is a literal brace
            continue;
          }
          pos = this.scanField(pos, close);
          continue;
        }
        if (c === "}") {
          if (src.charAt(pos + 1) === "}") {
            pos += 2; // `}}` is a literal brace
            continue;
          }
          this.problems.push({ offset: pos, message: ExpressionMessages.singleCloseBrace });
        }
        pos += 1;
      }
    } finally {
      this.nesting -= 1;
    }
  }

  /**
   * The end of a backslash sequence in the text of an f-string. A backslash never hides a brace: `\{` is a
   * backslash and then a field. `\N{NAME}` in a non-raw f-string is a named character, not a field.
   */
  private fStringEscapeEnd(pos: number, raw: boolean, start: number, triple: boolean): number {
    const src = this.src;
    const next = src.charAt(pos + 1);
    if (next === "") throw new Fatal(start, unterminated(triple));
    if (next === "{" || next === "}") return pos + 1;
    if (!raw && next === "N") {
      const named = /\\N\{[A-Za-z0-9 -]*\}/y;
      named.lastIndex = pos;
      if (named.test(src)) return named.lastIndex;
    }
    if (next === "\r" && src.charAt(pos + 2) === "\n") return pos + 3;
    return pos + 2;
  }

  /**
   * A replacement field whose `{` is at `open`: its expression is code, then an optional `!conversion`, then
   * an optional `:format spec` that is text except for nested fields. Returns the position after its `}`.
   */
  private scanField(open: number, close: string): number {
    const src = this.src;
    const triple = close.length === 3;
    const quote = close.charAt(0);
    this.enter(open);
    try {
      let pos = this.scanCode(open + 1, { open, quote });
      if (src.charAt(pos) === "!") {
        pos += 1;
        while (pos < src.length && !":}\r\n".includes(src.charAt(pos)) && !src.startsWith(close, pos)) pos += 1;
      }
      if (src.charAt(pos) === ":") {
        pos += 1;
        for (;;) {
          if (pos >= src.length || src.startsWith(close, pos)) break;
          const c = src.charAt(pos);
          if (!triple && (c === "\n" || c === "\r")) break;
          if (c === "}") break;
          if (c === "{") {
            pos = this.scanField(pos, close);
            continue;
          }
          if (c === "\\") {
            pos = this.fStringEscapeEnd(pos, false, open, triple);
            continue;
          }
          pos += 1;
        }
      }
      if (src.charAt(pos) !== "}") throw new Fatal(open, ExpressionMessages.fieldNotClosed);
      return pos + 1;
    } finally {
      this.nesting -= 1;
    }
  }

  private enter(offset: number): void {
    this.nesting += 1;
    if (this.nesting > MAX_NESTING) throw new Fatal(offset, ExpressionMessages.tooDeep);
  }
}

function unterminated(triple: boolean): string {
  return triple ? ExpressionMessages.unterminatedTripleString : ExpressionMessages.unterminatedString;
}
