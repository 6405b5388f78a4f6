/**
 * The length-prefixed encoder that AAD, the cache entry MAC and audit format 1 are built on. Each of those
 * formats pins its own bytes with frozen vectors in its own test (test/crypto/aad.test.ts,
 * test/cache/entry-codec.test.ts, test/audit/audit-chain.test.ts).
 */
import { Buffer } from "node:buffer";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

import { bufferFields, encodeFields, latin1Fields, type Field } from "../../src/lib/length-prefixed.js";

// An independent encoder, written from the module comment.
const documented = (fields: readonly Field[]): string =>
  Buffer.concat(
    fields.map((f) => {
      const bytes = typeof f === "string" ? Buffer.from(f, "utf8") : typeof f === "number" ? u32(f) : Buffer.from(f);
      return Buffer.concat([u32(bytes.length), bytes]);
    }),
  ).toString("hex");
const u32 = (n: number): Buffer => {
  const b = Buffer.alloc(4);
  b.writeUInt32BE(n);
  return b;
};

describe("length-prefixed fields", () => {
  it("encodes strings, integers and bytes as documented", () => {
    const fields: Field[] = ["ab", "", 7, Buffer.from("ff00", "hex"), "é🙂", 2 ** 32 - 1];
    expect(encodeFields(fields, "test").toString("hex")).toBe(
      "00000002" + "6162" + "00000000" + "00000004" + "00000007" + "00000002" + "ff00" + "00000006" + "c3a9f09f9982" +
        "00000004" + "ffffffff",
    );
  });

  it("builds the same bytes as a Latin-1 string and as a Buffer, whatever the fields", () => {
    const field = fc.oneof(
      fc.string({ unit: fc.integer({ min: 0, max: 0x7f }).map((c) => String.fromCharCode(c)), maxLength: 300 }),
      fc.string({ unit: "grapheme", maxLength: 20 }),
      fc.integer({ min: 0, max: 2 ** 32 - 1 }),
      fc.uint8Array({ maxLength: 300 }),
    );
    fc.assert(
      fc.property(fc.array(field, { maxLength: 6 }), (fields) => {
        const expected = documented(fields);
        expect(bufferFields(fields, "test").toString("hex")).toBe(expected);
        expect(encodeFields(fields, "test").toString("hex")).toBe(expected);
        const latin1 = latin1Fields(fields, "test");
        const ascii = fields.every((f) => typeof f !== "string" || /^[\x00-\x7f]*$/.test(f));
        expect(latin1 === undefined).toBe(!ascii);
        if (latin1 !== undefined) expect(Buffer.from(latin1, "latin1").toString("hex")).toBe(expected);
      }),
      { numRuns: 500 },
    );
  });

  it("refuses a lone surrogate and an integer past u32, naming the subject", () => {
    expect(() => encodeFields(["a", "b\ud800"], "associated data")).toThrow("associated data field is not well-formed Unicode");
    for (const n of [-1, 1.5, 2 ** 32, Number.NaN]) {
      expect(() => encodeFields(["a", n], "associated data")).toThrow("associated data integer must be in 0..2^32-1");
      expect(() => bufferFields(["é", n], "associated data")).toThrow("associated data integer must be in 0..2^32-1");
    }
  });

  it("encodes a lone surrogate as U+FFFD only when asked to (no subject: audit format 1)", () => {
    expect(bufferFields(["a\ud800"], undefined).toString("hex")).toBe("00000004" + "61efbfbd");
  });
});
