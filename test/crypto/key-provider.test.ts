import { describe, it, expect } from "vitest";
import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { KeyBytes } from "../../src/crypto/key-bytes.js";
import { createLocalKeyProvider, parseKeyring, type DataKeyContext } from "../../src/crypto/key-provider.js";
import { AppError } from "../../src/api/errors.js";
import { expectIntegrityFailureAsync } from "./expect-integrity-failure.js";

const DEK_HEX = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const KEK_HEX = "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f";
const NONCE_HEX = "b0b1b2b3b4b5b6b7b8b9babb";
const CONTEXT: DataKeyContext = { developerId: "dev_frozen", dekVersion: 7 };

/**
 * Produced once by the local provider wrapping DEK_HEX under KEK "k1" for CONTEXT with the nonce
 * above. It must keep unwrapping in every release: stored data keys depend on it.
 */
const FROZEN_WRAPPED =
  "02" + "02" + "6b31" + NONCE_HEX +
  "36fb28449626ce093a0417f10f3093398622b0889e5d8226f85db543c93a13c0" + // wrapped DEK
  "e971ff0aeb19fb4ec4e328f17f921a47"; // tag

const kek = (): KeyBytes => KeyBytes.from(Buffer.from(KEK_HEX, "hex"));
const dek = (): KeyBytes => KeyBytes.from(Buffer.from(DEK_HEX, "hex"));
const frozen = (): Buffer => Buffer.from(FROZEN_WRAPPED, "hex");
const b64 = (bytes: Uint8Array): string => Buffer.from(bytes).toString("base64");

/** The message of what `run` throws; fails the test if it throws an AppError or nothing. */
function plainErrorMessage(run: () => unknown): string {
  try {
    run();
  } catch (e) {
    expect(e).toBeInstanceOf(Error);
    expect(e).not.toBeInstanceOf(AppError);
    return (e as Error).message;
  }
  throw new Error("expected an error, but nothing was thrown");
}

describe("parseKeyring", () => {
  const key1 = randomBytes(32);
  const key2 = randomBytes(32);

  it("reads one entry", () => {
    const ring = parseKeyring(`k1:${b64(key1)}`);
    expect([...ring.keys()]).toEqual(["k1"]);
    expect(ring.get("k1")!.exposeSecretBytes().equals(key1)).toBe(true);
  });

  it("reads comma-separated entries in order", () => {
    const ring = parseKeyring(`k1:${b64(key1)},prod_2024-b:${b64(key2)}`);
    expect([...ring.keys()]).toEqual(["k1", "prod_2024-b"]);
    expect(ring.get("prod_2024-b")!.exposeSecretBytes().equals(key2)).toBe(true);
  });

  it("reads a key file with one entry per line, blank lines, CRLF and surrounding spaces", () => {
    const file = `\n  k1:${b64(key1)}  \r\n\r\n\tk2:${b64(key2)},\n`;
    const ring = parseKeyring(file);
    expect([...ring.keys()]).toEqual(["k1", "k2"]);
    expect(ring.get("k1")!.exposeSecretBytes().equals(key1)).toBe(true);
    expect(ring.get("k2")!.exposeSecretBytes().equals(key2)).toBe(true);
  });

  it("rejects an empty keyring", () => {
    for (const text of ["", "   ", "\n\n", " , \n ,"]) {
      expect(plainErrorMessage(() => parseKeyring(text))).toMatch(/empty/);
    }
  });

  it("rejects an entry without a colon, naming its position and not its text", () => {
    const message = plainErrorMessage(() => parseKeyring(`k1:${b64(key1)},${b64(key2)}`));
    expect(message).toMatch(/entry 2/);
    expect(message).not.toContain(b64(key2));
    expect(message).not.toContain(b64(key1));
  });

  it("rejects bad base64, naming the entry but not the key text", () => {
    const good = b64(key1);
    const bad = [
      good.slice(0, -1), // missing padding
      good.replace(/^./, "*"), // not in the alphabet
      Buffer.from(key1).toString("base64url"), // URL-safe alphabet, no padding
      `${good.slice(0, 20)} ${good.slice(20)}`, // space inside
      good.slice(0, 42) + nextBase64Char(good.charAt(42)) + "=", // non-zero trailing bits
      "",
    ];
    for (const encoded of bad) {
      const message = plainErrorMessage(() => parseKeyring(`k0:${b64(key2)}\nk1:${encoded}`));
      expect(message).toMatch(/entry 2 \(id "k1"\)/);
      if (encoded.length > 0) expect(message).not.toContain(encoded);
      expect(message).not.toContain(b64(key2));
    }
  });

  it("rejects a key that is not 32 bytes", () => {
    for (const length of [16, 31, 33, 64]) {
      const encoded = b64(randomBytes(length));
      const message = plainErrorMessage(() => parseKeyring(`k1:${encoded}`));
      expect(message).toMatch(/entry 1 \(id "k1"\) must decode to 32 bytes/);
      expect(message).not.toContain(encoded);
    }
  });

  it("rejects a duplicate id without echoing either key", () => {
    const message = plainErrorMessage(() => parseKeyring(`k1:${b64(key1)},k1:${b64(key2)}`));
    expect(message).toMatch(/entry 2 \(id "k1"\) repeats/);
    expect(message).not.toContain(b64(key1));
    expect(message).not.toContain(b64(key2));
  });

  it("rejects a bad id without echoing it", () => {
    for (const id of ["", "k 1", "k.1", "ké", "A".repeat(65), `${b64(key2).slice(0, 20)}+/`]) {
      const message = plainErrorMessage(() => parseKeyring(`${id}:${b64(key1)}`));
      expect(message).toMatch(/entry 1 has an invalid id/);
      expect(message).not.toContain(b64(key1));
      if (id.length > 2) expect(message).not.toContain(id);
    }
  });
});

describe("frozen wrapped key", () => {
  it("still unwraps to its data key", async () => {
    const provider = createLocalKeyProvider(new Map([["k1", kek()]]));
    const unwrapped = await provider.unwrap("k1", frozen(), CONTEXT);
    expect(unwrapped.equals(dek())).toBe(true);
  });

  it("is reproduced byte for byte by wrap with the same nonce", async () => {
    const provider = createLocalKeyProvider(new Map([["k1", kek()]]), () => Buffer.from(NONCE_HEX, "hex"));
    const wrapped = await provider.wrap("k1", dek(), CONTEXT);
    expect(wrapped.toString("hex")).toBe(FROZEN_WRAPPED);
  });
});

describe("local key provider", () => {
  const twoKeys = (): Map<string, KeyBytes> => new Map([["k1", kek()], ["k2", KeyBytes.random()]]);

  it("round-trips a random data key under each master key", async () => {
    const provider = createLocalKeyProvider(twoKeys());
    for (const id of ["k1", "k2"]) {
      const key = KeyBytes.random();
      const wrapped = await provider.wrap(id, key, { developerId: "dev", dekVersion: 1 });
      expect((await provider.unwrap(id, wrapped, { developerId: "dev", dekVersion: 1 })).equals(key)).toBe(true);
    }
  });

  it("lists and reports the master keys it holds", () => {
    const provider = createLocalKeyProvider(twoKeys());
    expect(provider.keyIds()).toEqual(["k1", "k2"]);
    expect(provider.has("k2")).toBe(true);
    expect(provider.has("k3")).toBe(false);
  });

  it("refuses to wrap under a master key it does not hold, naming the id", async () => {
    const provider = createLocalKeyProvider(twoKeys());
    await expect(provider.wrap("k9", dek(), CONTEXT)).rejects.toThrow(/"k9"/);
    await expect(provider.wrap("k9", dek(), CONTEXT)).rejects.not.toBeInstanceOf(AppError);
  });

  it("keeps its own copy of the keyring (copy-on-write)", async () => {
    const ring = new Map([["k1", kek()]]);
    const provider = createLocalKeyProvider(ring);
    ring.get("k1")!.zeroize();
    ring.delete("k1");
    ring.set("k2", KeyBytes.random());
    expect(provider.keyIds()).toEqual(["k1"]);
    expect(provider.has("k2")).toBe(false);
    expect((await provider.unwrap("k1", frozen(), CONTEXT)).equals(dek())).toBe(true);
  });

  it("holds nothing after destroy", async () => {
    const provider = createLocalKeyProvider(twoKeys());
    provider.destroy();
    expect(provider.keyIds()).toEqual([]);
    expect(provider.has("k1")).toBe(false);
    await expect(provider.unwrap("k1", frozen(), CONTEXT)).rejects.toThrow(/"k1"/);
  });

  it("refuses an empty keyring", () => {
    expect(() => createLocalKeyProvider(new Map())).toThrow(/at least one/);
  });
});

describe("wrapped keys are bound to their row", () => {
  const provider = createLocalKeyProvider(new Map([["k1", kek()], ["k2", KeyBytes.random()]]));

  const fresh = (): Promise<Buffer> => provider.wrap("k1", dek(), CONTEXT);

  it("fails for another developer", async () => {
    const other = { ...CONTEXT, developerId: "dev_other" };
    await expectIntegrityFailureAsync(() => provider.unwrap("k1", frozen(), other));
    const wrapped = await fresh();
    await expectIntegrityFailureAsync(() => provider.unwrap("k1", wrapped, other));
  });

  it("fails for another DEK version", async () => {
    const other = { ...CONTEXT, dekVersion: 8 };
    await expectIntegrityFailureAsync(() => provider.unwrap("k1", frozen(), other));
    const wrapped = await fresh();
    await expectIntegrityFailureAsync(() => provider.unwrap("k1", wrapped, other));
  });

  it("fails when the row records another master key id", async () => {
    await expectIntegrityFailureAsync(() => provider.unwrap("k2", frozen(), CONTEXT));
    // The header's id is checked before anything else: even a key this provider lacks fails the same way.
    await expectIntegrityFailureAsync(() => provider.unwrap("k3", frozen(), CONTEXT));
  });

  it("fails when the header's id is rewritten to match the row", async () => {
    const tampered = frozen();
    tampered[3] = 0x32; // "k1" -> "k2"
    await expectIntegrityFailureAsync(() => provider.unwrap("k2", tampered, CONTEXT));
    // Same key under both ids: only the header in the AAD tells the two apart.
    const twin = createLocalKeyProvider(new Map([["k1", kek()], ["k2", kek()]]));
    const wrapped = await twin.wrap("k1", dek(), CONTEXT);
    wrapped[3] = 0x32;
    await expectIntegrityFailureAsync(() => twin.unwrap("k2", wrapped, CONTEXT));
  });

  it("fails on every single-bit flip", async () => {
    const original = frozen();
    for (let i = 0; i < original.length; i++) {
      for (let bit = 0; bit < 8; bit++) {
        const tampered = Buffer.from(original);
        tampered[i]! ^= 1 << bit;
        await expectIntegrityFailureAsync(() => provider.unwrap("k1", tampered, CONTEXT));
      }
    }
  });

  it("fails when truncated to any length or extended", async () => {
    const original = frozen();
    for (let n = 0; n < original.length; n++) {
      await expectIntegrityFailureAsync(() => provider.unwrap("k1", original.subarray(0, n), CONTEXT));
    }
    await expectIntegrityFailureAsync(() => provider.unwrap("k1", Buffer.concat([original, Buffer.from([0])]), CONTEXT));
  });

  it("fails on a value envelope passed as a wrapped key", async () => {
    const notWrapped = Buffer.concat([Buffer.from([0x01]), frozen().subarray(1)]);
    await expectIntegrityFailureAsync(() => provider.unwrap("k1", notWrapped, CONTEXT));
  });
});

/** The base64 character after `c`, which sets the lowest of its six bits. */
function nextBase64Char(c: string): string {
  const alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
  return alphabet.charAt(alphabet.indexOf(c) ^ 1);
}
