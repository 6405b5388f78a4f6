import { describe, it, expect } from "vitest";
import { Buffer } from "node:buffer";
import { format, inspect } from "node:util";
import { Writable } from "node:stream";
import { pino } from "pino";
import { KeyBytes } from "../../src/crypto/key-bytes.js";

const RAW = Buffer.from("c0ffee00deadbeef0123456789abcdef00112233445566778899aabbccddeeff", "hex");

/** Every spelling of the key bytes that a leak could show. */
function spellings(bytes: Buffer): string[] {
  return [
    bytes.toString("hex"),
    bytes.toString("base64"),
    bytes.toString("base64url"),
    bytes.subarray(0, 8).toString("hex"),
    // How util.inspect prints a Buffer: "<Buffer c0 ff ee ...>".
    [...bytes.subarray(0, 4)].map((b) => b.toString(16).padStart(2, "0")).join(" "),
    // How an array of numbers prints: "192, 255, 238".
    [...bytes.subarray(0, 4)].join(", "),
  ];
}

function expectNoKeyMaterial(text: string): void {
  for (const spelling of spellings(RAW)) {
    expect(text).not.toContain(spelling);
  }
}

describe("KeyBytes never prints its bytes", () => {
  const key = KeyBytes.from(RAW);

  it("JSON.stringify", () => {
    const json = JSON.stringify({ dek: key, nested: [key] });
    expect(json).toBe('{"dek":"[REDACTED]","nested":["[REDACTED]"]}');
    expectNoKeyMaterial(json);
  });

  it("util.inspect, including hidden properties at full depth", () => {
    expect(inspect(key)).toBe("[REDACTED]");
    const deep = inspect({ a: { b: { key } } }, { showHidden: true, depth: Infinity, getters: true });
    expect(deep).toContain("[REDACTED]");
    expectNoKeyMaterial(deep);
  });

  it("template literals and String()", () => {
    expect(`${key}`).toBe("[REDACTED]");
    expect(String(key)).toBe("[REDACTED]");
    expect("" + key).toBe("[REDACTED]");
  });

  it("console.log-style formatting (%s %o %O %j and bare)", () => {
    const text = format("%s %o %O %j", key, key, key, key) + format(key) + format({ key });
    expect(text).toContain("[REDACTED]");
    expectNoKeyMaterial(text);
  });

  it("pino", () => {
    let out = "";
    const sink = new Writable({
      write(chunk: Buffer, _encoding, done) {
        out += chunk.toString("utf8");
        done();
      },
    });
    const logger = pino({}, sink);
    logger.info({ dek: key, nested: { key } }, "loaded");
    logger.info(`key is ${key}`);
    expect(out).toContain('"dek":"[REDACTED]"');
    expectNoKeyMaterial(out);
  });

  it("holds the bytes in no enumerable or own property", () => {
    for (const value of Object.values(key)) {
      expect(value).not.toBeInstanceOf(Uint8Array);
    }
    const own = Object.getOwnPropertyNames(key).map((name) => (key as unknown as Record<string, unknown>)[name]);
    for (const value of own) {
      expect(value).not.toBeInstanceOf(Uint8Array);
    }
    expect(Object.keys(key)).toEqual(["length"]);
  });
});

describe("KeyBytes", () => {
  it("copies on from(): later changes to the source do not reach the key", () => {
    const source = Buffer.from(RAW);
    const key = KeyBytes.from(source);
    source.fill(0);
    expect(key.exposeSecretBytes().equals(RAW)).toBe(true);
    expect(key.length).toBe(32);
  });

  it("random() gives keys of the asked length that differ", () => {
    const a = KeyBytes.random();
    const b = KeyBytes.random();
    expect(a.length).toBe(32);
    expect(KeyBytes.random(16).length).toBe(16);
    expect(a.equals(b)).toBe(false);
    expect(() => KeyBytes.random(0)).toThrow();
  });

  it("equals compares contents", () => {
    expect(KeyBytes.from(RAW).equals(KeyBytes.from(RAW))).toBe(true);
    const other = Buffer.from(RAW);
    other[31]! ^= 1;
    expect(KeyBytes.from(RAW).equals(KeyBytes.from(other))).toBe(false);
    expect(KeyBytes.from(RAW).equals(KeyBytes.from(RAW.subarray(0, 16)))).toBe(false);
  });

  it("zeroize overwrites the bytes and makes the key unusable", () => {
    const key = KeyBytes.from(RAW);
    const exposed = key.exposeSecretBytes();
    key.zeroize();
    expect(exposed.every((b) => b === 0)).toBe(true);
    expect(() => key.exposeSecretBytes()).toThrow(/zeroized/);
    expect(() => key.equals(KeyBytes.from(RAW))).toThrow(/zeroized/);
    expect(JSON.stringify(key)).toBe('"[REDACTED]"');
    key.zeroize();
  });

  it("zeroize does not touch other keys made from the same bytes", () => {
    const a = KeyBytes.from(RAW);
    const b = KeyBytes.from(RAW);
    a.zeroize();
    expect(b.exposeSecretBytes().equals(RAW)).toBe(true);
  });
});
