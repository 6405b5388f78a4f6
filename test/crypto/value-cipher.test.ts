import { describe, it, expect } from "vitest";
import { Buffer } from "node:buffer";
import { KeyBytes } from "../../src/crypto/key-bytes.js";
import { envelopeDekVersion, openValue, sealValue, type ValueBinding } from "../../src/crypto/value-cipher.js";
import { expectIntegrityFailure } from "./expect-integrity-failure.js";

const DEK_HEX = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const NONCE_HEX = "a0a1a2a3a4a5a6a7a8a9aaab";
const BINDING: ValueBinding = {
  developerId: "dev_frozen",
  secretId: "6f1c1b9e-3c2a-4c1e-9a4e-2f3b5d7e9a01",
  name: "openai_api_key",
  version: 3,
};
const PLAINTEXT = "sk-live-frozen-envelope-value";

/**
 * Produced once by sealValue(DEK, 7, PLAINTEXT, BINDING) with the nonce above. It must keep
 * opening in every release: if this test fails, stored values have become unreadable.
 */
const FROZEN_ENVELOPE =
  "01" + "00000007" + NONCE_HEX +
  "957351412cbd67920417e8a96214edbb1eda3c7cfdc72741ea6f4af31a" + // ciphertext (29 bytes)
  "8405886840ecc8cc01be9fd0f91497f6"; // tag

const dek = (): KeyBytes => KeyBytes.from(Buffer.from(DEK_HEX, "hex"));
const fixedNonce = (n: number): Buffer => {
  expect(n).toBe(12);
  return Buffer.from(NONCE_HEX, "hex");
};
const frozen = (): Buffer => Buffer.from(FROZEN_ENVELOPE, "hex");
/** Sealed by the code under test, so a check does not rest on the frozen bytes alone. */
const fresh = (): Buffer => sealValue(dek(), 7, Buffer.from(PLAINTEXT, "utf8"), BINDING);

describe("frozen value envelope", () => {
  it("still opens to its plaintext", () => {
    expect(openValue(dek(), 7, frozen(), BINDING).toString("utf8")).toBe(PLAINTEXT);
  });

  it("is reproduced byte for byte by sealValue with the same nonce", () => {
    const sealed = sealValue(dek(), 7, Buffer.from(PLAINTEXT, "utf8"), BINDING, fixedNonce);
    expect(sealed.toString("hex")).toBe(FROZEN_ENVELOPE);
  });

  it("names its DEK version in the header", () => {
    expect(envelopeDekVersion(frozen())).toBe(7);
  });
});

describe("sealValue / openValue", () => {
  it("round-trips, including an empty value", () => {
    const key = KeyBytes.random();
    for (const text of ["", "x", "a longer value with unicode: ✓ and more"]) {
      const envelope = sealValue(key, 1, Buffer.from(text, "utf8"), BINDING);
      expect(openValue(key, 1, envelope, BINDING).toString("utf8")).toBe(text);
    }
  });

  it("draws a fresh nonce each time, so equal values give different envelopes", () => {
    const key = KeyBytes.random();
    const a = sealValue(key, 1, Buffer.from("same"), BINDING);
    const b = sealValue(key, 1, Buffer.from("same"), BINDING);
    expect(a.subarray(5, 17).equals(b.subarray(5, 17))).toBe(false);
    expect(a.equals(b)).toBe(false);
  });

  it("fails under another DEK with the same version", () => {
    expectIntegrityFailure(() => openValue(KeyBytes.random(), 7, frozen(), BINDING));
  });
});

describe("tampering", () => {
  it("fails on every single-bit flip anywhere in the envelope", () => {
    const original = frozen();
    let checked = 0;
    for (let i = 0; i < original.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const tampered = Buffer.from(original);
        tampered[i]! ^= 1 << bit;
        expectIntegrityFailure(() => openValue(dek(), 7, tampered, BINDING));
        checked++;
      }
    }
    expect(checked).toBe(original.length * 8);
  });

  it("fails when truncated to any length", () => {
    const original = frozen();
    for (let n = 0; n < original.length; n++) {
      expectIntegrityFailure(() => openValue(dek(), 7, original.subarray(0, n), BINDING));
    }
  });

  it("fails with a byte appended", () => {
    expectIntegrityFailure(() => openValue(dek(), 7, Buffer.concat([frozen(), Buffer.from([0])]), BINDING));
  });

  it("fails on an unknown format byte", () => {
    for (const format of [0x00, 0x02, 0x03, 0xff]) {
      const tampered = frozen();
      tampered[0] = format;
      expectIntegrityFailure(() => openValue(dek(), 7, tampered, BINDING));
    }
  });

  it("fails when the row records another DEK version, without touching the key", () => {
    for (const expected of [6, 8, 1]) {
      expectIntegrityFailure(() => openValue(dek(), expected, frozen(), BINDING));
    }
    // A zeroized key throws a plain Error when used: getting an integrity failure instead shows
    // the version check runs before any decryption is attempted.
    const spent = dek();
    spent.zeroize();
    expectIntegrityFailure(() => openValue(spent, 8, frozen(), BINDING));
  });

  it("fails when the header's DEK version is rewritten to match the row", () => {
    for (const tampered of [frozen(), fresh()]) {
      tampered.writeUInt32BE(8, 1);
      expect(envelopeDekVersion(tampered)).toBe(8);
      expectIntegrityFailure(() => openValue(dek(), 8, tampered, BINDING));
    }
  });
});

describe("associated data binds the value to its row", () => {
  const swaps: Array<[string, ValueBinding]> = [
    ["another developer", { ...BINDING, developerId: "dev_other" }],
    ["another secret id", { ...BINDING, secretId: "6f1c1b9e-3c2a-4c1e-9a4e-2f3b5d7e9a02" }],
    ["another name", { ...BINDING, name: "anthropic_api_key" }],
    ["another version", { ...BINDING, version: 4 }],
  ];
  for (const [what, binding] of swaps) {
    it(`fails when opened for ${what}`, () => {
      expectIntegrityFailure(() => openValue(dek(), 7, frozen(), binding));
      expectIntegrityFailure(() => openValue(dek(), 7, fresh(), binding));
    });
  }
});

describe("envelopeDekVersion", () => {
  it("reads the header without a key, and rejects what is not a value envelope", () => {
    expect(envelopeDekVersion(sealValue(KeyBytes.random(), 123_456, Buffer.from("v"), BINDING))).toBe(123_456);
    expectIntegrityFailure(() => envelopeDekVersion(new Uint8Array(0)));
    expectIntegrityFailure(() => envelopeDekVersion(Buffer.from("0200000007" + "00".repeat(28), "hex")));
  });
});
