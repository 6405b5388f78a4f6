/**
 * The chain encodings, the one written now (format 2) and the one written before
 * (format 1, which stored chains still use): frozen vectors (stored chains must keep
 * verifying across releases), every field covered, and no two events encoding alike.
 */
import { createHash } from "node:crypto";
import fc from "fast-check";
import { describe, expect, it } from "vitest";

import { AuditService } from "../../src/api/gen/secrets/v1/audit_pb.js";
import { KeyService } from "../../src/api/gen/secrets/v1/keys_pb.js";
import { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { GENESIS_HASH, chainHash, chainHashOf, chainHashV1, type StoredAuditEvent } from "../../src/audit/chain.js";
import { encodeChainedFields } from "../../src/store/audit-store.js";
import { AUDIT_ACTIONS } from "../../src/audit/audit-service.js";

const EVENT: StoredAuditEvent = {
  time: new Date("2025-01-02T03:04:05.678Z"),
  developerId: "dev-1",
  callerSubject: "dev-1",
  callerTokenId: "jti-9",
  callerIdentity: "",
  action: "AccessSecret",
  secretName: "openai_api_key",
  version: 3,
  outcome: "OK",
  requestId: "8f14e45f-ceea-467f-a0f3-2a1d9c1b7e10",
  peer: "ipv4:10.0.0.7:51234",
  writerId: "replica-a:1735787045000",
  writerSequence: 1,
};

/** One change to each chained field of EVENT. */
const CHANGED: Partial<StoredAuditEvent>[] = [
  { time: new Date(EVENT.time.getTime() + 1) },
  { developerId: "dev-2" },
  { callerSubject: "ops" },
  { callerTokenId: "jti-8" },
  { callerIdentity: "spiffe://x" },
  { action: "GetSecret" },
  { secretName: "other_key" },
  { version: 4 },
  { outcome: "INTERNAL" },
  { requestId: "other" },
  { peer: "ipv4:10.0.0.8:51234" },
  { writerId: "replica-b:1" },
  { writerSequence: 2 },
];

// Independent encoders, written from the module comment.
function documented(prev: string, e: StoredAuditEvent): string {
  const parts = ["secrets.v1/audit-event/1", prev, String(e.time.getTime()), e.developerId, e.callerSubject,
    e.callerTokenId, e.callerIdentity, e.action, e.secretName, String(e.version), e.outcome, e.requestId, e.peer,
    e.writerId, String(e.writerSequence)];
  const chunks = parts.flatMap((p) => {
    const bytes = Buffer.from(p, "utf8");
    const length = Buffer.alloc(4);
    length.writeUInt32BE(bytes.length);
    return [length, bytes];
  });
  return createHash("sha256").update(Buffer.concat(chunks)).digest("hex");
}

function documented2(prev: string, e: StoredAuditEvent): string {
  const escapes: Record<string, string> = { "\\": "\\\\", "\t": "\\t", "\n": "\\n", "\r": "\\r" };
  const fields = ["secrets.v1/audit-event/2", prev, e.time.toISOString(), e.developerId, e.callerSubject, e.callerTokenId,
    e.callerIdentity, e.action, e.secretName, String(e.version), e.outcome, e.requestId, e.peer, e.writerId,
    String(e.writerSequence)];
  const line = fields.map((f) => f.replace(/[\\\t\n\r]/g, (c) => escapes[c] as string)).join("\t");
  return createHash("sha256").update(line, "utf8").digest("hex");
}

/** Text with every character COPY escapes, and characters an escape is made of. */
const awkwardText = fc.string({ unit: fc.constantFrom("a", "t", "n", "r", "\\", "\t", "\n", "\r", "é", "🙂"), maxLength: 6 });
const awkwardEvent = fc.record({
  time: fc.integer({ min: -62_135_596_800_000, max: 253_402_300_799_999 }).map((ms) => new Date(ms)),
  developerId: awkwardText, callerSubject: awkwardText, callerTokenId: awkwardText, callerIdentity: awkwardText,
  action: awkwardText, secretName: awkwardText, version: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }),
  outcome: awkwardText, requestId: awkwardText, peer: awkwardText, writerId: awkwardText,
  writerSequence: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
});

describe("chainHash (format 2, written now)", () => {
  it("matches frozen vectors (also computed independently from the documented encoding)", () => {
    const first = chainHashOf(GENESIS_HASH, EVENT);
    expect(first).toBe(documented2(GENESIS_HASH, EVENT));
    expect(first).toBe("f455de39cc14cf5d57e5ec651777f94660febdb7f18bbcf8c96386bca350783e");
    const second = { ...EVENT, writerSequence: 2, outcome: "NOT_FOUND", version: 0 };
    expect(chainHashOf(first, second)).toBe(documented2(first, second));
    expect(chainHashOf(first, second)).toBe("e616bddeff9e6fdaad47fae8aeb39bb832aa700f32be808549df49e17004a34e");
  });

  it("hashes the event's chained fields as the writer sends them to COPY", () => {
    expect(chainHash(GENESIS_HASH, encodeChainedFields(EVENT))).toBe(chainHashOf(GENESIS_HASH, EVENT));
    expect(encodeChainedFields(EVENT)).toBe(
      "2025-01-02T03:04:05.678Z\tdev-1\tdev-1\tjti-9\t\tAccessSecret\topenai_api_key\t3\tOK\t" +
        "8f14e45f-ceea-467f-a0f3-2a1d9c1b7e10\tipv4:10.0.0.7:51234\treplica-a:1735787045000\t1",
    );
  });

  it("changes with the previous hash and with every stored field, and differs from format 1", () => {
    const base = chainHashOf(GENESIS_HASH, EVENT);
    expect(chainHashOf("1".repeat(64), EVENT)).not.toBe(base);
    expect(chainHashV1(GENESIS_HASH, EVENT)).not.toBe(base);
    const hashes = CHANGED.map((c) => chainHashOf(GENESIS_HASH, { ...EVENT, ...c }));
    expect(new Set([base, ...hashes]).size).toBe(CHANGED.length + 1);
  });

  it("does not let text move between adjacent fields, nor an escape pass for what it escapes", () => {
    // Without the escaping, the first two would encode alike, and so would the first and the third.
    const variants: Partial<StoredAuditEvent>[] = [
      { callerTokenId: "a\tb", callerIdentity: "c" },
      { callerTokenId: "a", callerIdentity: "b\tc" },
      { callerTokenId: "a\\tb", callerIdentity: "c" },
      { callerTokenId: "a\\", callerIdentity: "tb\tc" },
      { callerTokenId: "a\nb", callerIdentity: "c" },
      { callerTokenId: "a\\nb", callerIdentity: "c" },
      { callerTokenId: "a\rb", callerIdentity: "c" },
    ];
    const hashes = variants.map((v) => chainHashOf(GENESIS_HASH, { ...EVENT, ...v }));
    expect(new Set(hashes).size).toBe(variants.length);
    const prevs = ["a\tb", "a\\tb"].map((p) => chainHashOf(p, EVENT));
    expect(new Set(prevs).size).toBe(2);
  });

  it("hashes any event exactly as documented, and no two events alike", () => {
    fc.assert(
      fc.property(fc.oneof(fc.constant(GENESIS_HASH), awkwardText), awkwardEvent, awkwardEvent, (p, a, b) => {
        expect(chainHashOf(p, a)).toBe(documented2(p, a));
        const same = JSON.stringify(a) === JSON.stringify(b);
        expect(encodeChainedFields(a) === encodeChainedFields(b)).toBe(same);
        expect(chainHashOf(p, a) === chainHashOf(p, b)).toBe(same);
      }),
      { numRuns: 2_000 },
    );
  });

  it("is lowercase hex SHA-256", () => {
    expect(chainHashOf(GENESIS_HASH, EVENT)).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe("chainHashV1 (format 1, verified in chains written before format 2)", () => {
  it("matches frozen vectors (also computed independently from the documented encoding)", () => {
    expect(GENESIS_HASH).toBe("0".repeat(64));
    const first = chainHashV1(GENESIS_HASH, EVENT);
    expect(first).toBe("567cf7bb43b1186371b216d77593630f90e234c0501d92d70414b4b6df10b9e3");
    expect(chainHashV1(first, { ...EVENT, writerSequence: 2, outcome: "NOT_FOUND", version: 0 })).toBe(
      "2bf6ef89315f7d7046972c4bf1d0a9b783d7287e3a86b1dd3a15acfbb13f0c43",
    );
  });

  it("matches frozen vectors off the ASCII fast path: a long part, non-ASCII text, a lone surrogate", () => {
    // A length prefix byte past ASCII; UTF-8 text; a lone surrogate, which format 1 hashed as U+FFFD.
    expect(chainHashV1(GENESIS_HASH, { ...EVENT, requestId: "r".repeat(200) })).toBe("e16fd273b9afa4cf936b6b1b2f8e66b41c24b107821ef1dce3dbcbc67fbf5331");
    expect(chainHashV1(GENESIS_HASH, { ...EVENT, callerIdentity: "spiffe://exämple.org/agent" })).toBe("c9f9cd5dea07768923b14041c69ff91d832dd8db46e94c875178af034aa60f37");
    expect(chainHashV1(GENESIS_HASH, { ...EVENT, peer: "a\ud800" })).toBe("f96e4f6da4e93c98528cbd6940df07626b4d392016cff9e653ce49eb3f996ecd");
  });

  it("changes with the previous hash and with every stored field", () => {
    const base = chainHashV1(GENESIS_HASH, EVENT);
    expect(chainHashV1("1".repeat(64), EVENT)).not.toBe(base);
    const hashes = CHANGED.map((c) => chainHashV1(GENESIS_HASH, { ...EVENT, ...c }));
    expect(new Set([base, ...hashes]).size).toBe(CHANGED.length + 1);
  });

  it("does not let text move between adjacent fields unnoticed (length prefixes)", () => {
    const a = chainHashV1(GENESIS_HASH, { ...EVENT, callerTokenId: "ab", callerIdentity: "c" });
    const b = chainHashV1(GENESIS_HASH, { ...EVENT, callerTokenId: "a", callerIdentity: "bc" });
    const c = chainHashV1(GENESIS_HASH, { ...EVENT, callerTokenId: "", callerIdentity: "abc" });
    expect(new Set([a, b, c]).size).toBe(3);
  });

  it("encodes non-ASCII text as UTF-8 and lengths past one byte big-endian, as documented", () => {
    const cases: Partial<StoredAuditEvent>[] = [
      {},
      { callerIdentity: "spiffe://exämple.org/agent" },
      { secretName: "<invalid:length=3:sha256=ab>", peer: "ipv6:[::1]:5000" },
      { requestId: "r".repeat(300) }, // a length prefix of two bytes
      { callerTokenId: "x".repeat(70_000) }, // three bytes
      { developerId: "dév-🙂" },
      { peer: "\u007f\u0080" }, // the last ASCII code point and the first that is not
    ];
    for (const c of cases) {
      const e = { ...EVENT, ...c };
      expect(chainHashV1(GENESIS_HASH, e)).toBe(documented(GENESIS_HASH, e));
    }
  });

  it("hashes any event exactly as documented, on its ASCII fast path and off it", () => {
    // ASCII in every field (the fast path) except, in most events, one field that
    // leaves it (any code point, lone surrogates included) or has a length around the
    // edge of a length that fits one byte (255, 256).
    const short = fc.string({ unit: fc.integer({ min: 0, max: 0x7f }).map((c) => String.fromCharCode(c)), maxLength: 40 });
    const edge = fc.oneof(
      fc.integer({ min: 254, max: 257 }).chain((n) => fc.string({ minLength: n, maxLength: n })),
      fc.string({ unit: "binary", minLength: 1, maxLength: 20 }),
      fc.constantFrom("\u0000", "\u007f", "\u0080", "é", "🙂", "\ud800"),
    );
    const textFields = ["developerId", "callerSubject", "callerTokenId", "callerIdentity", "action", "secretName", "outcome",
      "requestId", "peer", "writerId"] as const;
    const event = fc.record({
      time: fc.integer({ min: -62_135_596_800_000, max: 253_402_300_799_999 }).map((ms) => new Date(ms)),
      developerId: short, callerSubject: short, callerTokenId: short, callerIdentity: short, action: short,
      secretName: short, version: fc.integer({ min: -(2 ** 31), max: 2 ** 31 - 1 }), outcome: short,
      requestId: short, peer: short, writerId: short, writerSequence: fc.integer({ min: 1, max: Number.MAX_SAFE_INTEGER }),
    });
    const prev = fc.oneof(fc.constant(GENESIS_HASH), fc.stringMatching(/^[0-9a-f]{64}$/), edge);
    const override = fc.option(fc.tuple(fc.constantFrom(...textFields), edge), { freq: 4 });
    fc.assert(
      fc.property(prev, event, override, (p, e, o) => {
        const ev: StoredAuditEvent = o === null ? e : { ...e, [o[0]]: o[1] };
        expect(chainHashV1(p, ev)).toBe(documented(p, ev));
      }),
      { numRuns: 1_000 },
    );
  });

  it("is lowercase hex SHA-256", () => {
    expect(chainHashV1(GENESIS_HASH, EVENT)).toMatch(/^[0-9a-f]{64}$/);
  });
});

describe("AUDIT_ACTIONS", () => {
  it("is exactly the RPC names of the services and the lifecycle job's actions, so the action filter accepts every event", () => {
    const rpcs = [SecretService, KeyService, AuditService].flatMap((s) => s.methods.map((m) => m.name));
    expect([...AUDIT_ACTIONS].sort()).toEqual([...rpcs, "ExpireSecret", "RotationDue", "PurgeSecret"].sort());
  });
});
