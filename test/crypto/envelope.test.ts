import { describe, it, expect } from "vitest";
import { Buffer } from "node:buffer";
import {
  parseValueEnvelope,
  parseWrappedKeyEnvelope,
  valueHeader,
  wrappedKeyHeader,
  VALUE_FORMAT,
  WRAPPED_KEY_FORMAT,
} from "../../src/crypto/envelope.js";
import { AppError } from "../../src/api/errors.js";
import { expectIntegrityFailure } from "./expect-integrity-failure.js";

const nonce = Buffer.alloc(12, 0xaa);
const tag = Buffer.alloc(16, 0xbb);

describe("value envelope", () => {
  it("has the documented header: format 0x01, then the DEK version as u32 big-endian", () => {
    expect(VALUE_FORMAT).toBe(0x01);
    expect(valueHeader(7).toString("hex")).toBe("0100000007");
    expect(valueHeader(2 ** 31 - 1).toString("hex")).toBe("017fffffff");
  });

  it("refuses to build a header for a DEK version out of 1..2^31-1", () => {
    for (const version of [0, -1, 1.5, 2 ** 31, Number.NaN]) {
      expect(() => valueHeader(version)).toThrow(/DEK version/);
    }
  });

  it("parses header, version, nonce and sealed part at their offsets", () => {
    const ciphertext = Buffer.from("0102030405", "hex");
    const bytes = Buffer.concat([valueHeader(258), nonce, ciphertext, tag]);
    const parsed = parseValueEnvelope(bytes);
    expect(parsed.header.toString("hex")).toBe("0100000102");
    expect(parsed.dekVersion).toBe(258);
    expect(parsed.nonce.equals(nonce)).toBe(true);
    expect(parsed.sealed.equals(Buffer.concat([ciphertext, tag]))).toBe(true);
  });

  it("accepts an empty ciphertext (33 bytes) and nothing shorter", () => {
    const minimal = Buffer.concat([valueHeader(1), nonce, tag]);
    expect(parseValueEnvelope(minimal).sealed.equals(tag)).toBe(true);
    for (let n = 0; n < minimal.length; n++) {
      expectIntegrityFailure(() => parseValueEnvelope(minimal.subarray(0, n)));
    }
  });

  it("rejects any format byte but 0x01", () => {
    const bytes = Buffer.concat([valueHeader(1), nonce, tag]);
    for (const format of [0x00, 0x02, 0x7f, 0xff]) {
      bytes[0] = format;
      expectIntegrityFailure(() => parseValueEnvelope(bytes));
    }
  });

  it("rejects a stored DEK version out of range", () => {
    for (const version of ["00000000", "80000000", "ffffffff"]) {
      const bytes = Buffer.concat([Buffer.from(`01${version}`, "hex"), nonce, tag]);
      expectIntegrityFailure(() => parseValueEnvelope(bytes));
    }
  });

  it("returns copies, unaffected by later changes to the input", () => {
    const bytes = Buffer.concat([valueHeader(1), nonce, tag]);
    const parsed = parseValueEnvelope(bytes);
    bytes.fill(0);
    expect(parsed.nonce.equals(nonce)).toBe(true);
    expect(parsed.header.toString("hex")).toBe("0100000001");
  });

  it("reads a Uint8Array that is a window on a larger buffer", () => {
    const inner = Buffer.concat([valueHeader(9), nonce, tag]);
    const outer = new Uint8Array(inner.length + 8);
    outer.set(inner, 4);
    expect(parseValueEnvelope(outer.subarray(4, 4 + inner.length)).dekVersion).toBe(9);
  });
});

describe("wrapped-key envelope", () => {
  const sealed = Buffer.alloc(32 + 16, 0xcc);

  it("has the documented header: format 0x02, id length, ASCII id", () => {
    expect(WRAPPED_KEY_FORMAT).toBe(0x02);
    expect(wrappedKeyHeader("k1").toString("hex")).toBe("02026b31");
    const longest = "A".repeat(64);
    expect(wrappedKeyHeader(longest).toString("hex")).toBe("0240" + "41".repeat(64));
  });

  it("refuses to build a header for an invalid id", () => {
    for (const id of ["", "A".repeat(65), "k 1", "k:1", "ké", "k1\n"]) {
      let thrown: unknown;
      try {
        wrappedKeyHeader(id);
      } catch (e) {
        thrown = e;
      }
      expect(thrown).toBeInstanceOf(Error);
      expect(thrown).not.toBeInstanceOf(AppError);
    }
  });

  it("parses header, id, nonce and sealed part at their offsets", () => {
    const bytes = Buffer.concat([wrappedKeyHeader("prod-2024_a"), nonce, sealed]);
    const parsed = parseWrappedKeyEnvelope(bytes);
    expect(parsed.kekId).toBe("prod-2024_a");
    expect(parsed.header.equals(wrappedKeyHeader("prod-2024_a"))).toBe(true);
    expect(parsed.nonce.equals(nonce)).toBe(true);
    expect(parsed.sealed.equals(sealed)).toBe(true);
  });

  it("rejects short input at every length and any trailing byte", () => {
    const bytes = Buffer.concat([wrappedKeyHeader("k1"), nonce, sealed]);
    for (let n = 0; n < bytes.length; n++) {
      expectIntegrityFailure(() => parseWrappedKeyEnvelope(bytes.subarray(0, n)));
    }
    expectIntegrityFailure(() => parseWrappedKeyEnvelope(Buffer.concat([bytes, Buffer.from([0])])));
  });

  it("rejects any format byte but 0x02", () => {
    const bytes = Buffer.concat([wrappedKeyHeader("k1"), nonce, sealed]);
    for (const format of [0x00, 0x01, 0x03, 0xff]) {
      bytes[0] = format;
      expectIntegrityFailure(() => parseWrappedKeyEnvelope(bytes));
    }
  });

  it("rejects an id length of 0 or over 64, and ids outside [A-Za-z0-9_-]", () => {
    const zero = Buffer.concat([Buffer.from([0x02, 0x00]), nonce, sealed]);
    expectIntegrityFailure(() => parseWrappedKeyEnvelope(zero));
    const long = Buffer.concat([Buffer.from([0x02, 65]), Buffer.alloc(65, 0x41), nonce, sealed]);
    expectIntegrityFailure(() => parseWrappedKeyEnvelope(long));
    for (const idByte of [0x20, 0x3a, 0x00, 0xe9, 0xff]) {
      const bytes = Buffer.concat([Buffer.from([0x02, 0x02, 0x6b, idByte]), nonce, sealed]);
      expectIntegrityFailure(() => parseWrappedKeyEnvelope(bytes));
    }
  });
});
