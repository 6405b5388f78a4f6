import { describe, it, expect } from "vitest";
import { Buffer } from "node:buffer";
import { aesGcmOpen, aesGcmSeal } from "../../src/crypto/aead.js";
import { KeyBytes } from "../../src/crypto/key-bytes.js";
import { AppError } from "../../src/api/errors.js";
import { expectIntegrityFailure } from "./expect-integrity-failure.js";

const hex = (s: string): Buffer => Buffer.from(s, "hex");

const K15 = "feffe9928665731c6d6a8f9467308308feffe9928665731c6d6a8f9467308308";
const P15 =
  "d9313225f88406e5a55909c5aff5269a86a7a9531534f7da2e4c303d8a318a72" +
  "1c3c0c95956809532fcf0e2449a6b525b16aedf5aa0de657ba637b391aafd255";
const C15 =
  "522dc1f099567d07f47f37a32a84427d643a8cdcbfe5c0c97598a2bd2555d1aa" +
  "8cb08e48590dbb3da7b08b1056828838c5f61e6393ba7a0abcc9f662898015ad";

/**
 * McGrew & Viega, "The Galois/Counter Mode of Operation (GCM)", Appendix B: the test cases with
 * 256-bit keys. Case 16 has associated data and a 60-byte plaintext.
 */
const VECTORS = [
  {
    name: "Test Case 13 (empty plaintext)",
    key: "00".repeat(32),
    iv: "00".repeat(12),
    plaintext: "",
    aad: "",
    ciphertext: "",
    tag: "530f8afbc74536b9a963b4f1c4cb738b",
  },
  {
    name: "Test Case 14 (one zero block)",
    key: "00".repeat(32),
    iv: "00".repeat(12),
    plaintext: "00".repeat(16),
    aad: "",
    ciphertext: "cea7403d4d606b6e074ec5d3baf39d18",
    tag: "d0d1c8a799996bf0265b98b5d48ab919",
  },
  {
    name: "Test Case 15 (four blocks)",
    key: K15,
    iv: "cafebabefacedbaddecaf888",
    plaintext: P15,
    aad: "",
    ciphertext: C15,
    tag: "b094dac5d93471bdec1a502270e3cc6c",
  },
  {
    name: "Test Case 16 (partial block, with AAD)",
    key: K15,
    iv: "cafebabefacedbaddecaf888",
    plaintext: P15.slice(0, 120),
    aad: "feedfacedeadbeeffeedfacedeadbeefabaddad2",
    ciphertext: C15.slice(0, 120),
    tag: "76fc6ece0f4e1768cddf8853bb2d551b",
  },
] as const;

describe("AES-256-GCM known answers", () => {
  for (const v of VECTORS) {
    it(`${v.name}: seal gives ciphertext || tag`, () => {
      const sealed = aesGcmSeal(KeyBytes.from(hex(v.key)), hex(v.iv), hex(v.plaintext), hex(v.aad));
      expect(sealed.toString("hex")).toBe(v.ciphertext + v.tag);
    });

    it(`${v.name}: open gives the plaintext`, () => {
      const opened = aesGcmOpen(KeyBytes.from(hex(v.key)), hex(v.iv), hex(v.ciphertext + v.tag), hex(v.aad));
      expect(opened.toString("hex")).toBe(v.plaintext);
    });

    it(`${v.name}: open with a flipped tag bit fails`, () => {
      const sealed = hex(v.ciphertext + v.tag);
      sealed[sealed.length - 1]! ^= 0x01;
      expectIntegrityFailure(() => aesGcmOpen(KeyBytes.from(hex(v.key)), hex(v.iv), sealed, hex(v.aad)));
    });
  }
});

describe("aesGcmOpen", () => {
  const key = KeyBytes.from(hex(K15));
  const nonce = hex("cafebabefacedbaddecaf888");
  const aad = Buffer.from("bound-to-this");

  it("fails on other associated data", () => {
    const sealed = aesGcmSeal(key, nonce, Buffer.from("secret"), aad);
    expectIntegrityFailure(() => aesGcmOpen(key, nonce, sealed, Buffer.from("bound-to-that")));
    expectIntegrityFailure(() => aesGcmOpen(key, nonce, sealed, new Uint8Array(0)));
  });

  it("fails under another key", () => {
    const sealed = aesGcmSeal(key, nonce, Buffer.from("secret"), aad);
    expectIntegrityFailure(() => aesGcmOpen(KeyBytes.random(), nonce, sealed, aad));
  });

  it("fails on input shorter than a tag", () => {
    for (let n = 0; n < 16; n++) {
      expectIntegrityFailure(() => aesGcmOpen(key, nonce, new Uint8Array(n), aad));
    }
  });
});

describe("argument checks (programming errors, not integrity failures)", () => {
  const nonce = new Uint8Array(12);
  const aad = new Uint8Array(0);

  it("rejects a key that is not 32 bytes", () => {
    const short = KeyBytes.from(new Uint8Array(16));
    expect(() => aesGcmSeal(short, nonce, new Uint8Array(1), aad)).toThrow(/32-byte key/);
    expect(() => aesGcmOpen(short, nonce, new Uint8Array(32), aad)).toThrow(/32-byte key/);
  });

  it("rejects a nonce that is not 12 bytes", () => {
    const key = KeyBytes.random();
    for (const length of [0, 8, 11, 13, 16]) {
      expect(() => aesGcmSeal(key, new Uint8Array(length), new Uint8Array(1), aad)).toThrow(/12-byte nonce/);
    }
  });

  it("rejects missing associated data from untyped callers", () => {
    const seal = aesGcmSeal as (...args: unknown[]) => Buffer;
    let thrown: unknown;
    try {
      seal(KeyBytes.random(), nonce, new Uint8Array(1));
    } catch (e) {
      thrown = e;
    }
    expect(thrown).toBeInstanceOf(Error);
    expect(thrown).not.toBeInstanceOf(AppError);
    expect((thrown as Error).message).toMatch(/associated data is required/);
  });
});
