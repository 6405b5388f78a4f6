import { hash } from "node:crypto";
import type { NewAuditEvent } from "../store/audit-store.js";

/**
 * The per-writer hash chain of the audit trail, shared by the writer (audit-log.ts)
 * and the verifier (tools/audit-verify.ts): both must encode an event identically,
 * so the encoding lives here and nowhere else.
 *
 * hash = hex SHA-256 of the length-prefixed parts
 *   FORMAT, prevHash, time (integer ms since the epoch), developer id,
 *   caller subject, caller token id, caller identity, action, secret name,
 *   version, outcome, request id, peer, writer id, writer sequence
 * where each part is its UTF-8 byte length as a 4-byte big-endian integer followed
 * by its bytes, and numbers are written in decimal. Length prefixes make the
 * encoding injective: no two events (and no shifting of text between fields)
 * encode alike. Changing the encoding breaks every stored chain: bump FORMAT and
 * teach the verifier both, never edit it in place.
 */

/** The `prev_hash` of a writer's first event (sequence 1). */
export const GENESIS_HASH = "0".repeat(64);

/** Names the encoding above; hashed first so that a future format cannot collide with this one. */
const FORMAT = "secrets.v1/audit-event/1";

/** Every stored field of an event that the chain covers (all but id, prev_hash and hash). */
export type StoredAuditEvent = Omit<NewAuditEvent, "prevHash" | "hash">;

/** The hash of event `e` chained to `prevHash` (see the module comment). */
export function chainHash(prevHash: string, e: StoredAuditEvent): string {
  const parts = [
    FORMAT,
    prevHash,
    String(e.time.getTime()),
    e.developerId,
    e.callerSubject,
    e.callerTokenId,
    e.callerIdentity,
    e.action,
    e.secretName,
    String(e.version),
    e.outcome,
    e.requestId,
    e.peer,
    e.writerId,
    String(e.writerSequence),
  ];
  return hash("sha256", encode(parts), "hex");
}

/** ASCII only: UTF-8 and Latin-1 encode these code points alike, one byte each. */
const ASCII = /^[\x00-\x7f]*$/;

/**
 * The length-prefixed parts (see the module comment), as bytes or as a string of
 * ASCII characters only, whose UTF-8 (what `hash` takes of a string) is exactly
 * those bytes. Runs once per audited call.
 */
function encode(parts: readonly string[]): string | Buffer {
  // Fast path, the usual case: every part is ASCII, so its UTF-8 byte length is its
  // string length, and the whole encoding can be built as one Latin-1 string (the
  // length prefixes as four char codes of 0-255). One test of the whole string then
  // tells whether every char is ASCII, length prefixes included (parts under 128
  // characters): that string is its own encoding and is hashed as it is.
  let latin1 = "";
  for (const p of parts) {
    const n = p.length;
    latin1 += String.fromCharCode(n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff) + p;
  }
  if (ASCII.test(latin1)) return latin1;
  // A prefix byte of 128 or more with ASCII parts: the Latin-1 string's bytes.
  for (const p of parts) if (!ASCII.test(p)) return encodeUtf8(parts);
  return Buffer.from(latin1, "latin1");
}

function encodeUtf8(parts: readonly string[]): Buffer {
  let size = 0;
  for (const p of parts) size += 4 + Buffer.byteLength(p, "utf8");
  const bytes = Buffer.allocUnsafe(size);
  let at = 0;
  for (const p of parts) {
    const n = bytes.write(p, at + 4, "utf8");
    bytes.writeUInt32BE(n, at);
    at += 4 + n;
  }
  return bytes;
}
