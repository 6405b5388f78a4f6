/**
 * Where a character of a YAML scalar's value stands in the YAML source, so that an error inside an expression
 * can name its line and column (task-references.ts). The yaml package gives each scalar's source range; what
 * lies between (quotes, escapes, folded lines) is worked out here.
 */
import type { Scalar } from "yaml";

/**
 * Where the character at `offset` of a scalar's value stands in the YAML source, or undefined if that
 * cannot be worked out.
 *
 * The source is cut into lines; each line's content is decoded as its style requires (`''` in single-quoted
 * scalars, escapes in double-quoted ones), with the source offset of every decoded character kept. Folding
 * only turns line breaks and indentation into spaces or newlines, so the trimmed content of each line is
 * found, in order, in the value.
 */
export function scalarSourceOffset(scalar: Scalar, value: string, text: string, offset: number): number | undefined {
  const range = scalar.range;
  if (!range) return undefined;
  const [start, valueEnd] = range;
  const segments = sourceSegments(text, start, valueEnd, scalar.type);
  let cursor = 0;
  for (const segment of segments) {
    if (segment.text.length === 0) continue;
    const at = value.indexOf(segment.text, cursor);
    if (at === -1) return undefined;
    if (offset < at) return segment.sources[0];
    if (offset < at + segment.text.length) return segment.sources[offset - at];
    cursor = at + segment.text.length;
  }
  return undefined;
}

interface Segment {
  /** Decoded text of one source line, without its leading and trailing whitespace. */
  text: string;
  /** For each UTF-16 unit of `text`, its offset in the source. */
  sources: number[];
}

function sourceSegments(text: string, start: number, end: number, type: Scalar["type"]): Segment[] {
  let from = start;
  let to = end;
  if (type === "QUOTE_SINGLE" || type === "QUOTE_DOUBLE") {
    from += 1;
    to -= 1;
  } else if (type === "BLOCK_LITERAL" || type === "BLOCK_FOLDED") {
    const header = text.indexOf("\n", from);
    if (header === -1 || header >= to) return [];
    from = header + 1;
  }
  const segments: Segment[] = [];
  let lineStart = from;
  while (lineStart <= to) {
    let lineEnd = text.indexOf("\n", lineStart);
    if (lineEnd === -1 || lineEnd > to) lineEnd = to;
    segments.push(decodeLine(text, lineStart, lineEnd, type));
    lineStart = lineEnd + 1;
  }
  return segments;
}

const YAML_ESCAPES: Record<string, string> = {
  "0": "\0",
  a: "\x07",
  b: "\b",
  t: "\t",
  "\t": "\t",
  n: "\n",
  v: "\v",
  f: "\f",
  r: "\r",
  e: "\x1b",
  " ": " ",
  '"': '"',
  "/": "/",
  "\\": "\\",
  N: "\u0085",
  _: "\u00a0",
  L: "\u2028",
  P: "\u2029",
};

function decodeLine(text: string, from: number, to: number, type: Scalar["type"]): Segment {
  const chars: string[] = [];
  const sources: number[] = [];
  const push = (s: string, at: number): void => {
    for (let i = 0; i < s.length; i += 1) {
      chars.push(s.charAt(i));
      sources.push(at);
    }
  };
  let pos = from;
  while (pos < to) {
    const c = text.charAt(pos);
    if (type === "QUOTE_SINGLE" && c === "'" && text.charAt(pos + 1) === "'") {
      push("'", pos);
      pos += 2;
      continue;
    }
    if (type === "QUOTE_DOUBLE" && c === "\\") {
      const next = text.charAt(pos + 1);
      const simple = YAML_ESCAPES[next];
      if (simple !== undefined) {
        push(simple, pos);
        pos += 2;
        continue;
      }
      const width = next === "x" ? 2 : next === "u" ? 4 : next === "U" ? 8 : 0;
      const digits = text.slice(pos + 2, pos + 2 + width);
      if (width > 0 && digits.length === width && /^[0-9A-Fa-f]+$/.test(digits)) {
        const code = parseInt(digits, 16);
        push(code <= 0x10ffff ? String.fromCodePoint(code) : "\ufffd", pos);
        pos += 2 + width;
        continue;
      }
      // A backslash before the line break joins the lines; it stands for nothing.
      pos += 1;
      continue;
    }
    push(c, pos);
    pos += 1;
  }
  let first = 0;
  let last = chars.length;
  while (first < last && /[ \t\r]/.test(chars[first]!)) first += 1;
  while (last > first && /[ \t\r]/.test(chars[last - 1]!)) last -= 1;
  return { text: chars.slice(first, last).join(""), sources: sources.slice(first, last) };
}
