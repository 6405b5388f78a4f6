/**
 * fast-check arbitraries for hostile input (test/e2e/hostile-input.test.ts).
 *
 * Strings that must be traceable in the server's logs are generated as `Marked`
 * templates: the test replaces each with its text plus a fresh random marker (a
 * value marker for values, a name marker for names), so that "this value / this
 * invalid name never reached the logs" can be checked by scanning the logs for the
 * marker, whatever escaping the text itself went through. Large values are
 * generated as a `Fill` (a size and a unit), never as a multi-megabyte string inside
 * the arbitrary, so counterexamples stay printable.
 */
import fc from "fast-check";

/** A string the test completes with a fresh marker (`kind` says which). */
export class Marked {
  constructor(
    readonly kind: "name" | "value",
    readonly text: string,
    /** Where the marker goes: 0 = start, 1 = end, in between = that fraction of the text. */
    readonly at: number,
  ) {}
  toString(): string {
    return `Marked(${this.kind}, ${JSON.stringify(this.text.length > 80 ? `${this.text.slice(0, 80)}…` : this.text)}, ${this.at})`;
  }
  [fc.toStringMethod](): string {
    return this.toString();
  }
}

/** A value of exactly `bytes` UTF-8 bytes (marker included), made of `unit`. */
export class Fill {
  constructor(
    readonly bytes: number,
    readonly unit: string,
  ) {}
  toString(): string {
    return `Fill(${this.bytes} bytes of ${JSON.stringify(this.unit)})`;
  }
  [fc.toStringMethod](): string {
    return this.toString();
  }
}

export const KIB = 1024;
export const MIB = 1024 * 1024;

/** Names that exist (or are created) for the developer under test, so lookups also hit real rows. */
export const POOL_NAMES = [
  "api_key",
  "db_password",
  "stripe_live",
  "A",
  "a_b",
  "axb",
  "Z9_",
  "openai_api_key",
  "x".repeat(128),
] as const;

export const SQL_STRINGS = [
  "'; DROP TABLE secrets; --",
  "'; DROP TABLE secrets; --'",
  "a'; DELETE FROM secret_versions WHERE '1'='1",
  "' OR '1'='1",
  "\" OR \"\"=\"",
  "%",
  "_",
  "\\",
  "a%",
  "a_",
  "%_%",
  "a\\_b",
  "\\x00",
  "$1",
  "$$; SELECT pg_sleep(10); $$",
  "1; SELECT pg_sleep(10)",
  "name COLLATE \"C\"",
  "E'\\\\'",
  "ARRAY['a']",
  "{\"a\":1}",
  "*",
  "?",
  "NULL",
] as const;

export const TRAVERSAL_STRINGS = [
  "../../etc/passwd",
  "..\\..\\windows\\system32\\config\\sam",
  "/etc/shadow",
  "a/../../b",
  "%2e%2e%2f%2e%2e%2f",
  "....//....//",
  "~root/.ssh/id_rsa",
  "file:///etc/passwd",
  "sec:{abc}:entry",
  "/secrets.v1.SecretService/GetSecret?name=api_key",
] as const;

export const UNICODE_STRINGS = [
  "\u202Eyek_ipa", // right-to-left override
  "\u200Fabc\u200E", // RLM / LRM
  "שלום_סוד", // Hebrew
  "مفتاح_سري", // Arabic
  "e\u0301", // combining acute
  "a\u0300\u0301\u0302\u0303\u0304\u0305", // stacked combining marks
  "Z\u0351\u0352\u0353\u0354\u0355\u0356\u0357", // zalgo
  "🔑",
  "👨‍👩‍👧‍👦", // ZWJ sequence
  "🏳️‍🌈",
  "\uD800", // lone high surrogate
  "\uDFFF", // lone low surrogate
  "a\uDC00b\uD83D", // lone surrogates in text
  "\uFEFF", // BOM
  "ａｐｉ_ｋｅｙ", // fullwidth
  "аpi_key", // Cyrillic а
  "İstanbul",
  "straße",
  "\u0085", // NEL
  "\u2028\u2029", // line / paragraph separators
  "\u00A0", // NBSP
  "\u200B", // zero-width space
  "\uFFFD",
  "\uFFFF",
  "\u{10FFFF}",
  "\u{1D400}", // mathematical bold A
] as const;

export const CONTROL_STRINGS = [
  "\u0000",
  "a\u0000b",
  "\u0001",
  "\t",
  "\n",
  "\r\n",
  "\u001b[31mred\u001b[0m",
  "\u007f",
  "\u0008\u0008",
  '{"level":60,"msg":"forged log line"}\n',
] as const;

const HOSTILE = [...SQL_STRINGS, ...TRAVERSAL_STRINGS, ...UNICODE_STRINGS, ...CONTROL_STRINGS];

/** A hostile fragment. */
export const hostileFragment = fc.constantFrom(...HOSTILE);

const validNameChars = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_]{0,24}$/);

/** Text a name is built from: valid, nearly valid, hostile, random Unicode, long. */
const nameText: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: validNameChars },
  { weight: 3, arbitrary: hostileFragment },
  {
    weight: 3,
    arbitrary: fc
      .array(fc.oneof(hostileFragment, validNameChars, fc.string({ unit: "binary", maxLength: 4 })), { minLength: 1, maxLength: 5 })
      .map((parts) => parts.join("")),
  },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 40 }) },
  { weight: 1, arbitrary: fc.string({ unit: "grapheme", maxLength: 20 }) },
  { weight: 1, arbitrary: fc.constantFrom("", " ", "1abc", "_abc", "abc ", " abc", "ab-c", "ab.c", "a b", "ABC\u0000") },
  // Too long: valid characters past 128, up to very long.
  {
    weight: 1,
    arbitrary: fc
      .tuple(fc.integer({ min: 129, max: 20_000 }), fc.constantFrom("a", "Z", "_", "9"))
      .map(([n, c]) => `k${c.repeat(n - 1)}`),
  },
);

/**
 * A name: a pool name as is (so lookups hit real rows), or a template the test
 * completes with a name marker (which keeps a valid template valid when short).
 */
export const nameArb: fc.Arbitrary<string | Marked> = fc.oneof(
  { weight: 3, arbitrary: fc.constantFrom(...POOL_NAMES) },
  { weight: 7, arbitrary: fc.tuple(nameText, fc.constantFrom(0, 1, 0.5, 1, 1)).map(([t, at]) => new Marked("name", t, at)) },
);

/** A name that matches the documented pattern (for allowlists and round trips). */
export const validNameArb = fc.oneof(fc.constantFrom(...POOL_NAMES), fc.stringMatching(/^[A-Za-z][A-Za-z0-9_]{0,30}$/));

const valueText = fc.oneof(
  fc.string({ unit: "binary", maxLength: 64 }),
  fc.string({ unit: "grapheme", maxLength: 32 }),
  hostileFragment,
  fc.array(hostileFragment, { maxLength: 6 }).map((a) => a.join("")),
);

/**
 * A value: empty, small Unicode (lone surrogates included: they arrive as U+FFFD),
 * exact sizes around 64 KiB in 1-, 2-, 3- and 4-byte units, about 1 MiB, and
 * (rarely) near and over the 8 MiB message limit.
 */
export const valueArb: fc.Arbitrary<string | Marked | Fill> = fc.oneof(
  { weight: 1, arbitrary: fc.constant("") },
  { weight: 10, arbitrary: fc.tuple(valueText, fc.constantFrom(0, 1, 0.5)).map(([t, at]) => new Marked("value", t, at)) },
  {
    weight: 3,
    arbitrary: fc
      .tuple(fc.constantFrom(64 * KIB - 3, 64 * KIB - 1, 64 * KIB, 64 * KIB + 1, 64 * KIB + 2, 64 * KIB + 4, 70 * KIB), fc.constantFrom("v", "é", "€", "🔑", "\u0000"))
      .map(([n, u]) => new Fill(n, u)),
  },
  { weight: 1, arbitrary: fc.constantFrom(new Fill(1 * MIB, "x"), new Fill(4 * MIB + 7, "€")) },
  {
    weight: 1,
    arbitrary: fc
      .constantFrom(8 * MIB - 64 * KIB, 8 * MIB - 200, 8 * MIB - 16, 8 * MIB, 8 * MIB + 1, 9 * MIB)
      .map((n) => new Fill(n, "z")),
  },
);

/** Descriptions: empty, Unicode, exactly 1,024 code points of multi-unit text, over the limit, NUL. */
export const descriptionArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constant("") },
  { weight: 4, arbitrary: fc.string({ unit: "binary", maxLength: 80 }) },
  { weight: 2, arbitrary: hostileFragment },
  {
    weight: 3,
    arbitrary: fc
      .tuple(fc.constantFrom(1023, 1024, 1025, 1100, 5000), fc.constantFrom("d", "🔑", "e\u0301", "\u0000", "\uD800"))
      .map(([n, u]) => [...u.repeat(n)].slice(0, n).join("")),
  },
);

type Json = null | boolean | number | string | Json[] | { [k: string]: Json };

const metaKey = fc.oneof(
  { weight: 4, arbitrary: fc.stringMatching(/^[a-z]{1,8}$/) },
  { weight: 1, arbitrary: fc.string({ unit: "binary", maxLength: 10 }) },
  { weight: 1, arbitrary: hostileFragment },
  { weight: 1, arbitrary: fc.constantFrom("", "__proto__", "constructor", "prototype", "toString", "a.b", "$where", "k\u0000") },
);

const metaLeaf: fc.Arbitrary<Json> = fc.oneof(
  { weight: 4, arbitrary: fc.string({ unit: "binary", maxLength: 20 }) },
  { weight: 2, arbitrary: fc.double() },
  { weight: 2, arbitrary: fc.integer() },
  { weight: 1, arbitrary: fc.boolean() },
  { weight: 1, arbitrary: fc.constant(null) },
  { weight: 1, arbitrary: hostileFragment },
  { weight: 1, arbitrary: fc.constantFrom(Number.NaN, Infinity, -Infinity, -0, 1e308, 5e-324, 2 ** 53 + 1, "\u0000", "a\u0000") },
);

const metaValue: fc.Arbitrary<Json> = fc.letrec<{ v: Json; arr: Json[]; obj: Record<string, Json> }>((tie) => ({
  v: fc.oneof({ depthSize: "small", withCrossShrink: true }, metaLeaf, tie("arr"), tie("obj")),
  arr: fc.array(tie("v"), { maxLength: 4 }),
  obj: fc.dictionary(metaKey, tie("v"), { maxKeys: 5, noNullPrototype: true }),
})).v;

/** `depth` nested objects (`{}` is depth 1), with a leaf at the bottom. */
export function nested(depth: number, viaArrays = false): Record<string, Json> {
  let v: Json = "leaf";
  for (let i = 1; i < depth; i++) v = viaArrays && i % 2 === 0 ? [v] : { [`d${i}`]: v };
  return { top: v };
}

/** `n` keys in all, spread over `groups` nested objects. */
export function manyKeys(n: number, groups: number): Record<string, Json> {
  const out: Record<string, Json> = {};
  const per = Math.ceil((n - groups) / groups);
  let left = n - groups;
  for (let g = 0; g < groups; g++) {
    const inner: Record<string, Json> = {};
    for (let i = 0; i < per && left > 0; i++, left--) inner[`k${i}`] = i;
    out[`g${g}`] = inner;
  }
  return out;
}

/** Metadata: random objects (hostile keys, NUL, NaN), and ones at and past the size, depth and key limits. */
export const metadataArb: fc.Arbitrary<Record<string, Json>> = fc.oneof(
  { weight: 2, arbitrary: fc.constant<Record<string, Json>>({}) },
  { weight: 2, arbitrary: fc.constant<Record<string, Json>>({ team: "billing", tier: 1, tags: ["a", "b"] }) },
  { weight: 6, arbitrary: fc.dictionary(metaKey, metaValue, { maxKeys: 6, noNullPrototype: true }) },
  // Depth around the limit of 8, well past it, and past protobuf's recursion limit (50 levels).
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.oneof({ weight: 3, arbitrary: fc.integer({ min: 7, max: 12 }) }, { weight: 1, arbitrary: fc.integer({ min: 13, max: 60 }) }), fc.boolean())
      .map(([d, a]) => nested(d, a)),
  },
  // Keys around the limit of 256, and past it.
  {
    weight: 2,
    arbitrary: fc.tuple(fc.constantFrom(255, 256, 257, 300, 1000), fc.integer({ min: 1, max: 8 })).map(([n, g]) => manyKeys(n, g)),
  },
  // Size around the limit of 16 KiB of JSON, and past it.
  {
    weight: 2,
    arbitrary: fc
      .tuple(fc.constantFrom(16 * KIB - 200, 16 * KIB + 1, 17 * KIB, 100 * KIB, 1 * MIB), fc.constantFrom("m", "é", "🔑"))
      .map(([n, u]): Record<string, Json> => ({ blob: u.repeat(Math.ceil(n / Buffer.byteLength(u))) })),
  },
);

/** Page tokens: empty, garbage, forged base64url JSON, padding, very long. */
export const pageTokenArb: fc.Arbitrary<string> = fc.oneof(
  { weight: 3, arbitrary: fc.constant("") },
  { weight: 2, arbitrary: fc.string({ unit: "binary", maxLength: 60 }) },
  { weight: 2, arbitrary: fc.base64String({ maxLength: 80 }) },
  { weight: 1, arbitrary: hostileFragment },
  {
    weight: 3,
    arbitrary: fc
      .tuple(fc.oneof(fc.string(), fc.integer(), fc.constant(null), fc.constant("zzzz")), fc.string({ maxLength: 30 }))
      .map(([a, h]) => Buffer.from(JSON.stringify({ a, h })).toString("base64url")),
  },
  { weight: 1, arbitrary: fc.constantFrom("=", "====", "-", "_", "A".repeat(1025), "e30", "bnVsbA", "W10", "eyJhIjoiYSJ9", "A".repeat(5000)) },
);

const INT32_MIN = -(2 ** 31);
const INT32_MAX = 2 ** 31 - 1;

/** int32 page sizes: 0, the limits, negative, huge. */
export const pageSizeArb = fc.oneof(
  fc.constantFrom(0, 1, 2, 50, 500, 501, -1, INT32_MIN, INT32_MAX),
  fc.integer({ min: INT32_MIN, max: INT32_MAX }),
);

/** int32 version numbers: 0, small, negative, huge. */
export const versionArb = fc.oneof(
  fc.constantFrom(0, 1, 2, 3, 20, 21, -1, INT32_MIN, INT32_MAX),
  fc.integer({ min: INT32_MIN, max: INT32_MAX }),
);

/** A Timestamp: in range, at the edges of years 1 and 9999, far outside, odd nanos. */
export const timestampArb = fc.oneof(
  fc.record({ seconds: fc.bigInt({ min: 0n, max: 4_102_444_800n }), nanos: fc.integer({ min: 0, max: 999_999_999 }) }),
  fc.record({
    seconds: fc.constantFrom(-62_135_596_800n, -62_135_596_801n, 253_402_300_799n, 253_402_300_800n, -(2n ** 63n), 2n ** 63n - 1n),
    nanos: fc.constantFrom(0, 999_999_999, -1, INT32_MAX, INT32_MIN),
  }),
);

/** Random bytes for a request body, and mutations of a real encoding. */
export function bodyArb(validEncodings: readonly Uint8Array[]): fc.Arbitrary<Uint8Array> {
  const mutated = fc
    .tuple(fc.constantFrom(...validEncodings), fc.array(fc.tuple(fc.nat(), fc.integer({ min: 0, max: 255 })), { maxLength: 4 }), fc.nat(), fc.boolean())
    .map(([base, flips, cut, truncate]) => {
      const b = Uint8Array.from(base);
      for (const [i, v] of flips) if (b.length > 0) b[i % b.length] = v;
      return truncate && b.length > 0 ? b.subarray(0, cut % b.length) : b;
    });
  return fc.oneof(
    { weight: 4, arbitrary: fc.uint8Array({ maxLength: 64 }) },
    { weight: 1, arbitrary: fc.uint8Array({ minLength: 64, maxLength: 4096 }) },
    { weight: 4, arbitrary: mutated },
    {
      weight: 2,
      arbitrary: fc.constantFrom(
        Uint8Array.of(),
        Uint8Array.of(0xff),
        Uint8Array.of(0x0a, 0xff, 0xff, 0xff, 0xff, 0x0f), // length beyond the end
        Uint8Array.of(0x0a, 0x02, 0xc3, 0x28), // field 1: invalid UTF-8
        Uint8Array.of(0x0a, 0x03, 0xed, 0xa0, 0x80), // field 1: an encoded surrogate (invalid UTF-8)
        Uint8Array.of(0x0a, 0x01, 0x00), // field 1: NUL
        Uint8Array.of(0x08, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x01), // varint -1
        Uint8Array.of(0x0b), // start group
        Uint8Array.of(0x0c), // end group
        Uint8Array.of(0x0f), // wire type 7
        Uint8Array.of(0x00), // field 0
        Uint8Array.of(0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80, 0x80), // over-long varint
        new Uint8Array(300).fill(0x0b), // 300 nested groups
      ),
    },
  );
}
