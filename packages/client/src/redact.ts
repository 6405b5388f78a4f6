/**
 * Redaction of secret values from text an agent runtime is about to show or store (tool output, logs,
 * model transcripts), in the forms a value commonly takes on its way there.
 *
 * Each value is looked for as written; URL-encoded (any mix of `%XX` escapes in either case and literal
 * characters, `+` for a space); as hex (either case); JSON-escaped (short escapes, `\/`, `\uXXXX` for any
 * non-alphanumeric character); and base64 / base64url at each of the three byte offsets it can have inside
 * a longer base64 text (so `Authorization: Basic base64("user:" + value)` is caught). Values over 1,024
 * characters are looked for in the fixed URL, JSON and hex forms that common encoders produce, rather than
 * in any mix of escaped and literal characters (see FLEXIBLE_PATTERN_MAX_CHARS). Not looked for:
 * double encodings (`%2520`, JSON inside JSON), base64 broken across lines, and a value split between two
 * separately redacted texts.
 *
 * Base64 of a value embedded in other data has, at each end, a character that mixes the value's bits with
 * its neighbour's. The match is on the characters made of the value's bits alone; the mixed characters at
 * either end are redacted too, so one character of the surrounding base64 on each side may disappear into
 * the marker. That is the price of leaking none of the value's bits.
 */

/** Values shorter than this many UTF-8 bytes are redacted only as written (see `RedactOptions.onWarning`). */
export const MIN_ENCODED_REDACTION_BYTES = 8;

/** Options of `redactSecrets` and `createSecretRedactor`. */
export interface RedactOptions {
  /**
   * Told about each value too short to redact in its encoded forms (their hex or base64 would match
   * unrelated text). The warning names the secret, never its value. Default: ignore.
   */
  onWarning?: (warning: string) => void;
}

/** The marker that replaces a secret's value. */
export function redactionMarker(name: string): string {
  return `[REDACTED:${name}]`;
}

/**
 * Replace every occurrence of each secret's value in `text`, in each form listed above, by
 * `[REDACTED:name]`. Longer matches win; where matches of different secrets overlap, each character is
 * redacted once and no part of either value is left showing. Empty values are ignored.
 */
export function redactSecrets(text: string, secrets: Record<string, string>, options: RedactOptions = {}): string {
  return createSecretRedactor(secrets, options)(text);
}

/**
 * `redactSecrets` with its patterns built once, for redacting many texts (a log stream) with the same
 * secrets; warnings are given once, here.
 */
export function createSecretRedactor(
  secrets: Record<string, string>,
  options: RedactOptions = {},
): (text: string) => string {
  const onWarning = options.onWarning ?? (() => undefined);
  const finders: Finder[] = [];
  for (const [name, value] of Object.entries(secrets)) {
    if (typeof value !== "string" || value === "") continue;
    const bytes = Buffer.from(value, "utf8");
    if (bytes.length < MIN_ENCODED_REDACTION_BYTES) {
      onWarning(
        `secret ${JSON.stringify(name)} is shorter than ${MIN_ENCODED_REDACTION_BYTES} bytes: only its exact text ` +
          "is redacted, not its URL-encoded, hex, JSON-escaped or base64 forms (they would match unrelated text)",
      );
      finders.push(literalFinder(name, value));
      continue;
    }
    finders.push(...encodedFinders(name, value, bytes));
  }
  return (text) => redact(text, finders);
}

/** Finds the spans of one secret's form in a text; overlapping occurrences included. */
interface Finder {
  readonly name: string;
  find(text: string): Iterable<{ start: number; end: number }>;
}

interface Match {
  readonly start: number;
  readonly end: number;
  readonly name: string;
}

/**
 * Values up to this many characters get patterns that accept any mix of escaped and literal characters.
 * Such a pattern has an alternation per character, and V8 cannot compile one for a value of some thousands
 * of characters; longer values are matched in the fixed forms that common encoders produce.
 */
const FLEXIBLE_PATTERN_MAX_CHARS = 1024;

function encodedFinders(name: string, value: string, bytes: Buffer): Finder[] {
  const hex = bytes.toString("hex");
  const literals = new Set<string>([value]);
  const finders: Finder[] = [];
  if ([...value].length <= FLEXIBLE_PATTERN_MAX_CHARS) {
    finders.push(
      regExpFinder(name, new RegExp(urlEncodedPattern(value), "g")),
      regExpFinder(name, new RegExp(jsonEscapedPattern(value), "g")),
      regExpFinder(name, new RegExp(hex, "gi")),
    );
  } else {
    const component = encodeURIComponent(value);
    const form = new URLSearchParams([["", value]]).toString().slice(1);
    const json = JSON.stringify(value).slice(1, -1);
    const jsonAscii = json.replace(/[^\x00-\x7f]/g, (ch) => `\\u${ch.charCodeAt(0).toString(16).padStart(4, "0")}`);
    for (const encoded of [component, form]) {
      literals.add(encoded).add(encoded.replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase()));
    }
    literals.add(json).add(json.replace(/\//g, "\\/")).add(jsonAscii).add(upperCaseUnicodeEscapes(jsonAscii));
    literals.add(hex).add(hex.toUpperCase());
  }
  for (const literal of literals) finders.push(literalFinder(name, literal));
  finders.push(...base64Finders(name, bytes));
  return finders;
}

function upperCaseUnicodeEscapes(json: string): string {
  return json.replace(/\\u[0-9a-f]{4}/g, (e) => `\\u${e.slice(2).toUpperCase()}`);
}

function literalFinder(name: string, literal: string, extend = { before: false, after: false }): Finder {
  return {
    name,
    *find(text) {
      for (let at = text.indexOf(literal); at !== -1; at = text.indexOf(literal, at + 1)) {
        let start = at;
        let end = at + literal.length;
        if (extend.before && start > 0 && BASE64_CHAR.test(text.charAt(start - 1))) start -= 1;
        if (extend.after && BASE64_CHAR.test(text.charAt(end))) end += 1;
        yield { start, end };
      }
    },
  };
}

function regExpFinder(name: string, regex: RegExp): Finder {
  return {
    name,
    *find(text) {
      regex.lastIndex = 0;
      for (let m = regex.exec(text); m !== null; m = regex.exec(text)) {
        yield { start: m.index, end: m.index + m[0].length };
        // The next search starts one character further, so overlapping occurrences are all found.
        regex.lastIndex = m.index + 1;
      }
    },
  };
}

function redact(text: string, finders: readonly Finder[]): string {
  const matches: Match[] = [];
  for (const finder of finders) {
    for (const { start, end } of finder.find(text)) matches.push({ start, end, name: finder.name });
  }
  if (matches.length === 0) return text;

  // Longest first (ties: leftmost, then by name, for a stable result). Each character belongs to the first
  // match that covers it; what a later match adds outside earlier ones is still redacted, under its own
  // name — or joined to the earlier match when both are of the same secret, so that overlapping occurrences
  // of one value give one marker.
  matches.sort((a, b) => b.end - b.start - (a.end - a.start) || a.start - b.start || a.name.localeCompare(b.name));
  const owner = new Int32Array(text.length).fill(-1);
  matches.forEach((match, index) => {
    let claim = index;
    for (let i = match.start; i < match.end; i += 1) {
      const earlier = owner[i]!;
      if (earlier !== -1 && matches[earlier]!.name === match.name) {
        claim = earlier;
        break;
      }
    }
    for (let i = match.start; i < match.end; i += 1) if (owner[i] === -1) owner[i] = claim;
  });

  let out = "";
  let i = 0;
  while (i < text.length) {
    const index = owner[i]!;
    if (index === -1) {
      let j = i + 1;
      while (j < text.length && owner[j] === -1) j += 1;
      out += text.slice(i, j);
      i = j;
      continue;
    }
    let j = i + 1;
    while (j < text.length && owner[j] === index) j += 1;
    out += redactionMarker(matches[index]!.name);
    i = j;
  }
  return out;
}

function escapeRegExp(s: string): string {
  return s.replace(/[.*+?^${}()|[\]\\/]/g, "\\$&");
}

/** A hex digit of an escape, matched in either case. */
function hexDigitPattern(digit: string): string {
  return /[0-9]/.test(digit) ? digit : `[${digit.toLowerCase()}${digit.toUpperCase()}]`;
}

function hexPattern(hex: string): string {
  return [...hex].map(hexDigitPattern).join("");
}

const ALPHANUMERIC = /^[A-Za-z0-9]$/;

/**
 * The value URL-encoded by any common encoder: each non-alphanumeric character either as is or as its
 * UTF-8 `%XX` escapes (hex in either case), and a space also as `+` (application/x-www-form-urlencoded).
 */
function urlEncodedPattern(value: string): string {
  let source = "";
  for (const ch of value) {
    if (ALPHANUMERIC.test(ch)) {
      source += ch;
      continue;
    }
    const escapes = [...Buffer.from(ch, "utf8")].map((byte) => `%${hexPattern(hex2(byte))}`).join("");
    const forms = [escapeRegExp(ch), escapes];
    if (ch === " ") forms.push("\\+");
    source += `(?:${forms.join("|")})`;
  }
  return source;
}

const JSON_SHORT_ESCAPES: Record<string, string> = {
  '"': '\\"',
  "\\": "\\\\",
  "/": "\\/",
  "\b": "\\b",
  "\f": "\\f",
  "\n": "\\n",
  "\r": "\\r",
  "\t": "\\t",
};

/**
 * The value inside a JSON string: each non-alphanumeric character as is, by its short escape (`\"`, `\\`,
 * `\/`, `\n`…), or as `\uXXXX` (a surrogate pair beyond the BMP; hex in either case), which covers
 * `JSON.stringify`, Python's `ensure_ascii` and serializers that escape `/` or HTML characters.
 */
function jsonEscapedPattern(value: string): string {
  let source = "";
  for (const ch of value) {
    if (ALPHANUMERIC.test(ch)) {
      source += ch;
      continue;
    }
    const forms = [escapeRegExp(ch)];
    const short = JSON_SHORT_ESCAPES[ch];
    if (short !== undefined) forms.push(escapeRegExp(short));
    const units = [];
    for (let i = 0; i < ch.length; i += 1) units.push(ch.charCodeAt(i).toString(16).padStart(4, "0"));
    forms.push(units.map((unit) => `\\\\u${hexPattern(unit)}`).join(""));
    source += `(?:${forms.join("|")})`;
  }
  return source;
}

/** A character of base64 or base64url. */
const BASE64_CHAR = /^[A-Za-z0-9+/_-]$/;

/**
 * The value inside base64 and base64url text at byte offsets 0, 1 and 2: for offset k, the characters of
 * base64(k filler bytes + value) that hold only the value's bits, widened by the base64 character on each
 * side that holds some of them (see the module comment).
 */
function base64Finders(name: string, bytes: Buffer): Finder[] {
  const finders: Finder[] = [];
  for (let k = 0; k < 3; k += 1) {
    const data = Buffer.concat([Buffer.alloc(k), bytes]);
    const encoded = data.toString("base64");
    const core = encoded.slice(Math.ceil((8 * k) / 6), Math.floor((8 * data.length) / 6));
    const extend = { before: (8 * k) % 6 !== 0, after: (8 * data.length) % 6 !== 0 };
    const urlCore = core.replace(/\+/g, "-").replace(/\//g, "_");
    finders.push(literalFinder(name, core, extend));
    if (urlCore !== core) finders.push(literalFinder(name, urlCore, extend));
  }
  return finders;
}

function hex2(byte: number): string {
  return byte.toString(16).padStart(2, "0");
}
