import { randomBytes } from "node:crypto";

import { describe, expect, it } from "vitest";

import { createSecretRedactor, redactSecrets } from "../../packages/client/src/redact.js";

const VALUE = "p@ss w/rd+x=y&z!~*'()";
const M = "[REDACTED:pw]";

function redactOne(text: string, value = VALUE): string {
  return redactSecrets(text, { pw: value });
}

/** Python's json.dumps(..., ensure_ascii=True) inner text: non-ASCII as \uXXXX (surrogate pairs beyond the BMP). */
function jsonAsciiEscaped(value: string, upper = false): string {
  const inner = JSON.stringify(value).slice(1, -1);
  return inner.replace(/[^\x00-\x7f]/g, (ch) => {
    const hex = ch.charCodeAt(0).toString(16).padStart(4, "0");
    return `\\u${upper ? hex.toUpperCase() : hex}`;
  });
}

describe("redactSecrets: forms of a value", () => {
  it("redacts the exact value, every occurrence", () => {
    expect(redactOne(`a ${VALUE} b ${VALUE}${VALUE}`)).toBe(`a ${M} b ${M}${M}`);
  });

  it("redacts the URL-encoded value: encodeURIComponent, form encoding, lower-case hex, Python's quote", () => {
    const component = encodeURIComponent(VALUE);
    const form = new URLSearchParams({ k: VALUE }).toString().slice("k=".length);
    const lower = component.replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase());
    // Python's urllib.parse.quote keeps `/` and escapes `!*'()`.
    const quoteStyle = encodeURIComponent(VALUE)
      .replace(/%2F/g, "/")
      .replace(/[!*'()]/g, (c) => `%${c.charCodeAt(0).toString(16).toUpperCase()}`);
    expect(new Set([component, form, lower, quoteStyle]).size).toBe(4);
    expect(form).toContain("+");
    for (const encoded of [component, form, lower, quoteStyle]) {
      expect(redactOne(`https://x.example/?k=${encoded}&next=1`), encoded).toBe(`https://x.example/?k=${M}&next=1`);
    }
  });

  it("redacts URL-encoded non-ASCII values", () => {
    const value = "clé-secrète-😀";
    expect(redactOne(`?k=${encodeURIComponent(value)}`, value)).toBe(`?k=${M}`);
  });

  it("redacts the hex form in lower and upper case", () => {
    const hex = Buffer.from(VALUE).toString("hex");
    expect(redactOne(`lower ${hex} upper ${hex.toUpperCase()}.`)).toBe(`lower ${M} upper ${M}.`);
  });

  it("redacts the JSON-escaped value: quotes, backslashes, newlines, unicode, `\\/`, `\\uXXXX` in either case", () => {
    const value = 'He said "hi"\\path/to\n\tnext é ✓ 😀 \u0001';
    const plain = JSON.stringify(value).slice(1, -1);
    const slashes = plain.replace(/\//g, "\\/");
    const ascii = jsonAsciiEscaped(value);
    const asciiUpper = jsonAsciiEscaped(value, true);
    expect(new Set([value, plain, slashes, ascii, asciiUpper]).size).toBe(5);
    for (const escaped of [plain, slashes, ascii, asciiUpper]) {
      expect(redactOne(`{"token":"${escaped}","n":1}`, value), escaped).toBe(`{"token":"${M}","n":1}`);
    }
    expect(redactOne(JSON.stringify({ nested: { token: value } }), value)).toBe(`{"nested":{"token":"${M}"}}`);
  });

  describe("base64 and base64url inside a longer base64 text", () => {
    const value = "secret>>>???value";
    /** Fixed bytes around the value, so that the test is the same on every run. */
    const filler = (length: number, seed: number): Buffer =>
      Buffer.from(Array.from({ length }, (_, i) => (i * 167 + seed * 59 + 13) % 256));
    for (const offset of [0, 1, 2]) {
      for (const encoding of ["base64", "base64url"] as const) {
        it(`at byte offset ${offset}, ${encoding}`, () => {
          const prefix = filler(30 + offset, offset);
          const suffix = filler(31, offset + 7);
          const blob = Buffer.concat([prefix, Buffer.from(value), suffix]).toString(encoding);
          // `>>>` and `???` put `+` and `/` (`-` and `_` in base64url) among the characters made of the value's
          // bits alone at every offset, so the two alphabets are both exercised.
          const valueChars = blob.slice(Math.ceil((8 * prefix.length) / 6), Math.floor((8 * (prefix.length + value.length)) / 6));
          expect(valueChars).toMatch(encoding === "base64" ? /[+/]/ : /[-_]/);
          const core = Buffer.from(value).toString(encoding);

          const out = redactOne(`data: ${blob} end`, value);
          const [before, after] = out.split(M);
          expect(out.split(M)).toHaveLength(2);
          // What is left on each side is the surrounding base64, less at most one character that mixes bits.
          const valueStartChar = Math.floor((8 * prefix.length) / 6);
          const valueEndChar = Math.ceil((8 * (prefix.length + value.length)) / 6);
          expect(before).toBe(`data: ${blob.slice(0, valueStartChar)}`);
          expect(after).toBe(`${blob.slice(valueEndChar)} end`);
          if (offset === 0) expect(out).not.toContain(core.slice(0, 8));
        });
      }
    }

    it("redacts a value that is the whole base64 text, padding aside", () => {
      const encoded = Buffer.from(VALUE).toString("base64");
      expect(redactOne(`token=${encoded};`)).toMatch(/^token=\[REDACTED:pw\]=*;$/);
    });
  });

  it("redacts the password in HTTP Basic credentials for user names of every length modulo 3", () => {
    const password = "hunter2-but-longer";
    for (const user of ["al", "bob", "carl", "user"]) {
      const header = `Authorization: Basic ${Buffer.from(`${user}:${password}`).toString("base64")}`;
      const out = redactSecrets(header, { db_password: password });
      expect(out, user).toMatch(/^Authorization: Basic [A-Za-z0-9+/]{0,8}\[REDACTED:db_password\]=*$/);
    }
  });

  it("redacts a value in several encodings in one text", () => {
    const text = [
      VALUE,
      encodeURIComponent(VALUE),
      Buffer.from(VALUE).toString("hex"),
      JSON.stringify(VALUE),
      Buffer.from(VALUE).toString("base64"),
      Buffer.from(VALUE).toString("base64url"),
    ].join(" | ");
    const out = redactOne(text);
    expect(out.split(M)).toHaveLength(7);
    expect(out).not.toContain("ss w");
    expect(out).not.toContain("ss%20w");
  });
});

describe("redactSecrets: long values", () => {
  it("redacts a value of many kilobytes in each encoding common encoders produce", () => {
    // Past 1,024 characters the fixed forms are looked for instead of any mix (a per-character pattern that
    // long does not compile); some 38,000 characters here, with spaces, slashes, quotes, newlines and non-ASCII.
    const value = `-----BEGIN KEY-----\n${'a/b+c "d" é\\ 😀 '.repeat(2400)}\n-----END KEY-----`;
    expect(value.length).toBeGreaterThan(30_000);
    const forms = {
      exact: value,
      component: encodeURIComponent(value),
      componentLower: encodeURIComponent(value).replace(/%[0-9A-F]{2}/g, (e) => e.toLowerCase()),
      form: new URLSearchParams({ k: value }).toString().slice(2),
      json: JSON.stringify(value).slice(1, -1),
      jsonSlashes: JSON.stringify(value).slice(1, -1).replace(/\//g, "\\/"),
      jsonAscii: jsonAsciiEscaped(value),
      jsonAsciiUpper: jsonAsciiEscaped(value, true),
      hexLower: Buffer.from(value).toString("hex"),
      hexUpper: Buffer.from(value).toString("hex").toUpperCase(),
      base64AtOffset1: Buffer.from(`u:${value}!`).toString("base64"),
      base64urlAtOffset2: Buffer.from(`ab:${value}`).toString("base64url"),
    };
    const redact = createSecretRedactor({ key: value });
    for (const [form, encoded] of Object.entries(forms)) {
      const out = redact(`<${encoded}>`);
      expect(out, form).toMatch(/^<[A-Za-z0-9+/=_-]{0,4}\[REDACTED:key\][A-Za-z0-9+/=_-]{0,4}>$/);
    }
  });
});

describe("redactSecrets: several values", () => {
  it("redacts a value inside a longer one as the longer one", () => {
    const secrets = { long: "supersecretvalue", short: "secretvalue" };
    expect(redactSecrets("supersecretvalue and secretvalue", secrets)).toBe(
      "[REDACTED:long] and [REDACTED:short]",
    );
  });

  it("leaves no part of either value showing where two values overlap", () => {
    const secrets = { a: "correcthorsebattery", b: "batterystaple123" };
    expect(redactSecrets("x correcthorsebatterystaple123 y", secrets)).toBe("x [REDACTED:a][REDACTED:b] y");
  });

  it("redacts overlapping occurrences of one value as one, and adjacent ones each", () => {
    expect(redactSecrets("abababababab", { r: "abababab" })).toBe("[REDACTED:r]");
    expect(redactSecrets("x abababab-abababab", { r: "abababab" })).toBe("x [REDACTED:r]-[REDACTED:r]");
    expect(redactSecrets("ababababababababab", { r: "abababab" })).toBe("[REDACTED:r]");
  });

  it("redacts every value in its own name", () => {
    const secrets = { first: "first-secret-value", second: "second-secret-value" };
    const text = `a=${secrets.first}&b=${encodeURIComponent(secrets.second)}`;
    expect(redactSecrets(text, secrets)).toBe("a=[REDACTED:first]&b=[REDACTED:second]");
  });
});

describe("redactSecrets: short and empty values, and text without secrets", () => {
  it("redacts a value under 8 bytes only as written, and warns without saying the value", () => {
    const warnings: string[] = [];
    const value = "Zq9 x";
    const hex = Buffer.from(value).toString("hex");
    const out = redactSecrets(`${value} ${hex} ${encodeURIComponent(value)}`, { pin: value }, {
      onWarning: (w) => warnings.push(w),
    });
    expect(out).toBe(`[REDACTED:pin] ${hex} ${encodeURIComponent(value)}`);
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toContain('"pin"');
    expect(warnings[0]).toContain("8 bytes");
    expect(warnings[0]).not.toContain(value);
  });

  it("counts bytes, not characters: four 2-byte characters are 8 bytes and get every form", () => {
    const warnings: string[] = [];
    const value = "éééé";
    const out = redactSecrets(encodeURIComponent(value), { k: value }, { onWarning: (w) => warnings.push(w) });
    expect(out).toBe("[REDACTED:k]");
    expect(warnings).toEqual([]);
  });

  it("warns nowhere by default", () => {
    expect(redactSecrets("a 1234 b", { pin: "1234" })).toBe("a [REDACTED:pin] b");
  });

  it("ignores empty values", () => {
    const warnings: string[] = [];
    expect(redactSecrets("unchanged text", { empty: "" }, { onWarning: (w) => warnings.push(w) })).toBe("unchanged text");
    expect(warnings).toEqual([]);
  });

  it("leaves text without secrets unchanged", () => {
    const text = `plain, ${randomBytes(64).toString("base64")} ${randomBytes(32).toString("hex")} {"json":"\\u00e9"} %20+`;
    expect(redactSecrets(text, { a: "long-enough-secret", b: VALUE })).toBe(text);
    expect(redactSecrets(text, {})).toBe(text);
  });

  it("does not redact a value that differs in case or by one character", () => {
    expect(redactSecrets("TOKEN-abcdefgh token-abcdefgX", { t: "token-abcdefgh" })).toBe("TOKEN-abcdefgh token-abcdefgX");
  });
});

describe("createSecretRedactor", () => {
  it("builds the patterns once, warns once, and redacts many texts", () => {
    const warnings: string[] = [];
    const redact = createSecretRedactor({ key: "sk_live_0123456789", pin: "42" }, { onWarning: (w) => warnings.push(w) });
    expect(redact("one sk_live_0123456789")).toBe("one [REDACTED:key]");
    expect(redact("two 42")).toBe("two [REDACTED:pin]");
    expect(warnings).toHaveLength(1);
  });
});
