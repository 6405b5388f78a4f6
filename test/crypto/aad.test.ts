import { describe, it, expect } from "vitest";
import { Buffer } from "node:buffer";
import { valueAad, wrappedKeyAad } from "../../src/crypto/aad.js";

const header = Buffer.from("0100000001", "hex");

describe("valueAad", () => {
  it("keeps its frozen encoding (changing it would make every stored value unreadable)", () => {
    const aad = valueAad({ developerId: "d", secretId: "s", name: "n", version: 1, header });
    expect(aad.toString("hex")).toBe(
      "00000010" + "73656372657473" + "2e7631" + "2f76616c7565" + // "secrets.v1/value"
        "00000001" + "64" + // "d"
        "00000001" + "73" + // "s"
        "00000001" + "6e" + // "n"
        "00000004" + "00000001" + // version 1
        "00000005" + "0100000001", // header
    );
  });

  it("keeps its frozen encoding off the ASCII fast path (non-ASCII text, the largest version)", () => {
    const aad = valueAad({ developerId: "dév-🙂", secretId: "s", name: "n\u0000", version: 2 ** 32 - 1, header: Buffer.from("ff80007f", "hex") });
    expect(aad.toString("hex")).toBe("00000010736563726574732e76312f76616c75650000000964c3a9762df09f99820000000173000000026e0000000004ffffffff00000004ff80007f");
  });

  it("encodes strings as UTF-8 with their byte length", () => {
    const aad = valueAad({ developerId: "é", secretId: "", name: "", version: 0, header: new Uint8Array(0) });
    expect(aad.subarray(20, 26).toString("hex")).toBe("00000002c3a9");
  });

  it("gives different AAD to tuples that naive concatenation would merge", () => {
    const base = { developerId: "dev", secretId: "id", name: "name", version: 1, header };
    const tuples = [
      base,
      { ...base, developerId: "ab", secretId: "c" },
      { ...base, developerId: "a", secretId: "bc" },
      { ...base, secretId: "ab", name: "c" },
      { ...base, secretId: "a", name: "bc" },
      { ...base, name: "ab", developerId: "c" },
      { ...base, name: "a", developerId: "bc" },
      { ...base, developerId: "a", secretId: "", name: "b" },
      { ...base, developerId: "", secretId: "a", name: "b" },
      { ...base, developerId: "a", secretId: "b", name: "" },
      // A name ending in what looks like a length prefix and version.
      { ...base, name: "n\u0000\u0000\u0000\u0004", version: 2 },
      { ...base, version: 2 },
      { ...base, version: 0x01000000 },
      { ...base, header: Buffer.from("0100000002", "hex") },
      { ...base, name: "name\u0000", header: Buffer.from("00000001", "hex") },
    ];
    const encodings = tuples.map((t) => valueAad(t).toString("hex"));
    expect(new Set(encodings).size).toBe(tuples.length);
  });

  it("encodes as documented whatever the text (the ASCII fast path and the general one agree)", () => {
    // An independent encoder, written from the module comment.
    const field = (bytes: Buffer) => Buffer.concat([Buffer.from([0, 0, 0, 0].map((_, i) => (bytes.length >>> (24 - 8 * i)) & 0xff)), bytes]);
    const u32 = (n: number) => Buffer.from([n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff]);
    const documented = (t: { developerId: string; secretId: string; name: string; version: number; header: Uint8Array }) =>
      Buffer.concat([
        field(Buffer.from("secrets.v1/value")),
        field(Buffer.from(t.developerId, "utf8")),
        field(Buffer.from(t.secretId, "utf8")),
        field(Buffer.from(t.name, "utf8")),
        field(u32(t.version)),
        field(Buffer.from(t.header)),
      ]).toString("hex");
    const cases = [
      { developerId: "dev-1", secretId: "8f14e45f-ceea-467f-a0f3-2a1d9c1b7e10", name: "stripe_api_key", version: 7, header },
      { developerId: "dév", secretId: "s", name: "n", version: 1, header },
      { developerId: "d".repeat(300), secretId: "s", name: "n", version: 2 ** 32 - 1, header: Buffer.from([0xff, 0x80, 0x00, 0x7f]) },
      { developerId: "\u007f", secretId: "\u0080", name: "🙂", version: 0, header: new Uint8Array(0) },
      { developerId: "x".repeat(70_000), secretId: "", name: "", version: 256, header: Buffer.alloc(300, 0xab).subarray(10, 290) },
    ];
    for (const t of cases) expect(valueAad(t).toString("hex")).toBe(documented(t));
  });

  it("rejects strings that UTF-8 cannot encode faithfully", () => {
    const lone = { developerId: "dev", secretId: "id", name: "a\ud800", version: 1, header };
    expect(() => valueAad(lone)).toThrow(/well-formed/);
  });

  it("rejects versions that do not fit a u32", () => {
    for (const version of [-1, 1.5, 2 ** 32, Number.NaN]) {
      expect(() => valueAad({ developerId: "d", secretId: "s", name: "n", version, header })).toThrow(/2\^32/);
    }
  });
});

describe("wrappedKeyAad", () => {
  const wrappedHeader = Buffer.from("02026b31", "hex");

  it("keeps its frozen encoding", () => {
    const aad = wrappedKeyAad({ developerId: "d", dekVersion: 7, kekId: "k1", header: wrappedHeader });
    expect(aad.toString("hex")).toBe(
      "00000013" + "73656372657473" + "2e7631" + "2f646174612d6b6579" + // "secrets.v1/data-key"
        "00000001" + "64" + // "d"
        "00000004" + "00000007" + // DEK version 7
        "00000002" + "6b31" + // "k1"
        "00000004" + "02026b31", // header
    );
  });

  it("keeps its frozen encoding off the ASCII fast path", () => {
    const aad = wrappedKeyAad({ developerId: "ü", dekVersion: 0, kekId: "kek-é", header: new Uint8Array(0) });
    expect(aad.toString("hex")).toBe("00000013736563726574732e76312f646174612d6b657900000002c3bc0000000400000000000000066b656b2dc3a900000000");
  });

  it("differs for every field", () => {
    const base = { developerId: "dev", dekVersion: 1, kekId: "k1", header: wrappedHeader };
    const tuples = [
      base,
      { ...base, developerId: "dev2" },
      { ...base, dekVersion: 2 },
      { ...base, kekId: "k2" },
      { ...base, header: Buffer.from("02026b32", "hex") },
      { ...base, developerId: "devk", kekId: "1" },
    ];
    expect(new Set(tuples.map((t) => wrappedKeyAad(t).toString("hex"))).size).toBe(tuples.length);
  });

  it("never equals a value's AAD (the purpose label comes first)", () => {
    const a = valueAad({ developerId: "d", secretId: "s", name: "n", version: 1, header });
    const b = wrappedKeyAad({ developerId: "d", dekVersion: 1, kekId: "n", header });
    expect(a.subarray(0, 24).equals(b.subarray(0, 24))).toBe(false);
  });
});
