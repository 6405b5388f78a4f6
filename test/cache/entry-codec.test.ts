import { createHmac, hkdfSync, randomBytes, randomUUID } from "node:crypto";
import { describe, expect, it } from "vitest";
import { createEntryCodec, ENTRY_FORMAT, TAG_BYTES } from "../../src/cache/entry-codec.js";
import type { CachedLookup } from "../../src/cache/secret-cache.js";
import { KeyBytes } from "../../src/crypto/key-bytes.js";

// The cache entry format: what a fill seals and what a lookup accepts. Anything
// but the exact entry sealed for this developer, name and generation, under this
// key and before its expiry, must be refused.

const NOW = 1_800_000_000_000;
const LATER = NOW + 30_000;
const key = KeyBytes.random(32);
const codec = createEntryCodec(key);

const found: CachedLookup = {
  kind: "found",
  secretId: randomUUID(),
  version: 7,
  dekVersion: 3,
  ciphertext: randomBytes(60),
};
const missing: CachedLookup = { kind: "missing" };

const where = { developerId: "alice", name: "stripe_api_key", generation: "12" };
const seal = (value: CachedLookup, at = where, expiresAt = LATER) => codec.seal(at.developerId, at.name, at.generation, expiresAt, value);
const open = (bytes: Buffer, at = where, now = NOW) => codec.open(at.developerId, at.name, at.generation, bytes, now);

describe("cache entry codec", () => {
  it("round-trips found and missing entries", () => {
    expect(open(seal(found))).toEqual(found);
    expect(open(seal(missing))).toEqual({ kind: "missing" });
    // An absent generation ("") is a binding like any other.
    const fresh = { ...where, generation: "" };
    expect(open(seal(found, fresh), fresh)).toEqual(found);
  });

  it("has the documented layout: format, kind, expiry, body, 16-byte tag", () => {
    const bytes = seal(found);
    expect(bytes[0]).toBe(ENTRY_FORMAT);
    expect(bytes[1]).toBe(0x01);
    expect(bytes.readUInt32BE(2) * 2 ** 32 + bytes.readUInt32BE(6)).toBe(LATER);
    expect(bytes.toString("hex", 10, 26)).toBe(found.kind === "found" ? found.secretId.replace(/-/g, "") : "");
    expect(bytes.readUInt32BE(26)).toBe(7);
    expect(bytes.readUInt32BE(30)).toBe(3);
    expect(bytes.length).toBe(10 + 24 + 60 + TAG_BYTES);
    expect(seal(missing).length).toBe(10 + TAG_BYTES);
  });

  it.each([
    ["ASCII", where],
    ["a non-ASCII developer id", { developerId: "dév", name: "stripe_api_key", generation: "12" }],
    ["a non-ASCII name", { developerId: "alice", name: "clé", generation: "12" }],
  ])("the tag is HMAC-SHA256 under the HKDF-derived key over the length-prefixed binding, truncated to 16 bytes (%s)", (_label, at) => {
    // Recomputed independently of the codec, so a change of label, field order or
    // encoding (which would orphan every entry in Redis) shows up here.
    const macKey = Buffer.from(hkdfSync("sha256", key.exposeSecretBytes(), Buffer.alloc(0), "secrets.v1/cache-entry-mac-key", 32));
    const field = (b: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, 0].map((_, i) => (b.length >>> (8 * (3 - i))) & 0xff)), b]);
    const bytes = seal(found, at);
    const signed = bytes.subarray(0, bytes.length - TAG_BYTES);
    const input = Buffer.concat(
      ["secrets.v1/cache-entry", at.developerId, at.name, at.generation].map((s) => field(Buffer.from(s, "utf8"))).concat(field(signed)),
    );
    const tag = createHmac("sha256", macKey).update(input).digest().subarray(0, TAG_BYTES);
    expect(bytes.subarray(bytes.length - TAG_BYTES)).toEqual(tag);
    // The raw key is not the MAC key.
    const underRaw = createHmac("sha256", key.exposeSecretBytes()).update(input).digest().subarray(0, TAG_BYTES);
    expect(underRaw).not.toEqual(tag);
  });

  it("keeps its frozen entries under a fixed key (a change would orphan every entry in Redis)", () => {
    const fixed = createEntryCodec(KeyBytes.from(Buffer.alloc(32, 7)));
    const value: CachedLookup = {
      kind: "found",
      secretId: "8f14e45f-ceea-467f-a0f3-2a1d9c1b7e10",
      version: 7,
      dekVersion: 3,
      ciphertext: Buffer.from("0102030405", "hex"),
    };
    const sealed = (developerId: string, name: string, generation: string, v: CachedLookup = value) =>
      fixed.seal(developerId, name, generation, 1_800_000_030_000, v).toString("hex");
    expect(sealed("alice", "stripe_api_key", "12")).toBe("0201000001a3185cc5308f14e45fceea467fa0f32a1d9c1b7e1000000007000000030102030405dcc4e9184b2f0d9ec9ca3a2bbbf2a756");
    expect(sealed("alice", "stripe_api_key", "", missing)).toBe("0202000001a3185cc530737aa6de7c9362539308f2107cadada3");
    // Off the ASCII fast path: a non-ASCII developer, name and generation; a length prefix byte past ASCII.
    expect(sealed("dév", "stripe_api_key", "12")).toBe("0201000001a3185cc5308f14e45fceea467fa0f32a1d9c1b7e1000000007000000030102030405cdb46d248d6d60b13c81448a7d4ec8d6");
    expect(sealed("alice", "nämé", "é")).toBe("0201000001a3185cc5308f14e45fceea467fa0f32a1d9c1b7e100000000700000003010203040548cd45bcc0114e5eb0df26bf98bc018d");
    expect(sealed("alice", "n".repeat(200), "3")).toBe("0201000001a3185cc5308f14e45fceea467fa0f32a1d9c1b7e1000000007000000030102030405e25f0426951f413ef70302dee20301b7");
  });

  it.each([
    ["developer", { ...where, developerId: "bob" }],
    ["developer (case)", { ...where, developerId: "Alice" }],
    ["name", { ...where, name: "stripe_api_key2" }],
    ["generation (a write since)", { ...where, generation: "14" }],
    ["generation (absent now)", { ...where, generation: "" }],
    ["field boundary (name/generation)", { ...where, name: "stripe_api_key1", generation: "2" }],
    ["field boundary (developer/name)", { ...where, developerId: "alicestripe_api_key", name: "" }],
  ])("an entry opened for another %s is refused", (_label, other) => {
    expect(open(seal(found), other)).toBe("invalid");
    expect(open(seal(missing), other)).toBe("invalid");
  });

  it("an entry sealed with another expiry, or whose expiry is rewritten, is refused", () => {
    const bytes = seal(found);
    const later = Buffer.from(bytes);
    later.writeUInt32BE(later.readUInt32BE(6) + 3_600_000, 6);
    expect(open(later)).toBe("invalid");
    // The same entry sealed with the later expiry has another tag.
    expect(seal(found, where, LATER + 3_600_000).subarray(-TAG_BYTES)).not.toEqual(bytes.subarray(-TAG_BYTES));
  });

  it("a changed body is refused: kind, secret id, version, DEK version, ciphertext", () => {
    const bytes = seal(found);
    const asMissing = Buffer.concat([bytes.subarray(0, 10), bytes.subarray(-TAG_BYTES)]);
    asMissing[1] = 0x02;
    expect(open(asMissing)).toBe("invalid");
    for (const [label, offset] of [["secret id", 10], ["version", 29], ["DEK version", 33], ["ciphertext", 40]] as const) {
      const changed = Buffer.from(bytes);
      changed[offset] = (changed[offset] as number) ^ 0x01;
      expect(open(changed), label).toBe("invalid");
    }
    // The same ids with another ciphertext, sealed honestly, do not share the tag either.
    expect(seal({ ...found, ciphertext: randomBytes(60) } as CachedLookup).subarray(-TAG_BYTES)).not.toEqual(bytes.subarray(-TAG_BYTES));
  });

  it("every single-bit flip, every truncation and every extension is refused", () => {
    for (const value of [found, missing]) {
      const bytes = seal(value);
      for (let bit = 0; bit < bytes.length * 8; bit++) {
        const flipped = Buffer.from(bytes);
        flipped[bit >> 3] = (flipped[bit >> 3] as number) ^ (1 << (bit & 7));
        expect(open(flipped), `bit ${bit}`).toBe("invalid");
      }
      for (let n = 0; n < bytes.length; n++) expect(open(bytes.subarray(0, n)), `first ${n} bytes`).toBe("invalid");
      for (const extra of [Buffer.from([0]), randomBytes(1), randomBytes(16)]) {
        expect(open(Buffer.concat([bytes, extra]))).toBe("invalid");
        expect(open(Buffer.concat([extra, bytes]))).toBe("invalid");
      }
    }
    // The previous format (0x01, no expiry, no tag) is not accepted.
    expect(open(Buffer.from([0x01, 0x02]))).toBe("invalid");
    expect(open(Buffer.alloc(0))).toBe("invalid");
  });

  it("an entry whose expiry has passed by the reader's clock is refused, however genuine", () => {
    const bytes = seal(found);
    expect(open(bytes, where, LATER - 1)).toEqual(found);
    expect(open(bytes, where, LATER)).toBe("expired");
    expect(open(bytes, where, LATER + 86_400_000)).toBe("expired");
    expect(open(seal(missing), where, LATER)).toBe("expired");
  });

  it("an entry sealed under another key is refused; a codec under the same key opens it", () => {
    const other = createEntryCodec(KeyBytes.random(32));
    expect(other.open(where.developerId, where.name, where.generation, seal(found), NOW)).toBe("invalid");
    // Replicas sharing the key read each other's entries.
    const twin = createEntryCodec(KeyBytes.from(key.exposeSecretBytes()));
    expect(twin.open(where.developerId, where.name, where.generation, seal(found), NOW)).toEqual(found);
  });

  it("an entry opened again (one Buffer answers many lookups) is judged again for each binding and time", () => {
    const bytes = seal(found);
    const first = open(bytes);
    expect(first).toEqual(found);
    expect(open(bytes)).toBe(first); // remembered, not verified again
    expect(open(bytes, { ...where, generation: "13" })).toBe("invalid");
    expect(open(bytes, { ...where, name: "other_name" })).toBe("invalid");
    expect(open(bytes, { ...where, developerId: "bob" })).toBe("invalid");
    expect(open(bytes, where, LATER)).toBe("expired");
    expect(open(bytes)).toEqual(found);
    // Verified under another binding first, the right one still opens.
    const fresh = seal(found);
    expect(open(fresh, { ...where, generation: "13" })).toBe("invalid");
    expect(open(fresh)).toEqual(found);
    // Expired at first sight, and then earlier (a skewed reader) it opens.
    const late = seal(missing);
    expect(open(late, where, LATER)).toBe("expired");
    expect(open(late, where, NOW)).toEqual({ kind: "missing" });
  });

  it("binds non-ASCII bindings unambiguously and refuses ill-formed ones", () => {
    const accented = { developerId: "dév", name: "clé", generation: "3" };
    expect(open(seal(found, accented), accented)).toEqual(found);
    expect(open(seal(found, accented), { ...accented, name: "cle" })).toBe("invalid");
    const lone = { ...where, name: "a\ud800" };
    expect(() => seal(found, lone)).toThrow("a cache entry field is not well-formed Unicode");
    expect(open(seal(found, { ...where, name: "a\ufffd" }), lone)).toBe("invalid");
  });

  it("refuses to seal what it could not open: bad expiry, empty ciphertext, a secret id that is not a UUID, a short key", () => {
    expect(() => seal(found, where, -1)).toThrow();
    expect(() => seal(found, where, 1.5)).toThrow();
    expect(() => seal({ ...found, ciphertext: Buffer.alloc(0) } as CachedLookup)).toThrow();
    expect(() => seal({ ...found, secretId: "not-a-uuid" } as CachedLookup)).toThrow();
    expect(() => createEntryCodec(KeyBytes.random(16))).toThrow(/32 bytes/);
  });
});
