/**
 * Length-prefixed fields: the injective encoding of a tuple that associated data (crypto/aad.ts), the cache
 * entry MAC (cache/entry-codec.ts) and format 1 of the audit chain (audit/chain.ts) are built on.
 *
 *   field = u32 big-endian byte length || bytes
 *           strings: UTF-8; integers: u32 big-endian, so always a 4-byte field; byte strings: as they are
 *
 * Each length is written before its bytes, so no two tuples of the same shape encode alike. AAD and the audit
 * chain are stored formats and the entry MAC binds what Redis holds: any change to these bytes makes stored
 * ciphertexts, chains and entries unreadable (test/lib/length-prefixed.test.ts pins them).
 *
 * Two builders, same bytes: `latin1Fields`, for the usual case where every string is ASCII (one string that one
 * native call converts, or that a hash takes as it is), and `bufferFields` for any text, into one Buffer sized
 * up front.
 */
import { Buffer } from "node:buffer";

/** A field: a string (UTF-8), an integer (u32) or bytes as they are. */
export type Field = string | number | Uint8Array;

const ASCII = /^[\x00-\x7f]*$/;
const MAX_U32 = 2 ** 32 - 1;

/** Whether every character of `s` is ASCII: then its UTF-8 and its Latin-1 are the same bytes, one per character. */
export function isAscii(s: string): boolean {
  return ASCII.test(s);
}

/** A u32, big-endian, as four Latin-1 characters (char codes 0–255). */
export function u32Latin1(n: number): string {
  return String.fromCharCode(n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
}

/**
 * The fields as a Latin-1 string (one character per byte), or undefined when a string field is not ASCII (then
 * `bufferFields` encodes them). `subject` names the fields in the error for an integer out of range.
 */
export function latin1Fields(fields: readonly Field[], subject: string): string | undefined {
  let latin1 = "";
  for (const f of fields) {
    if (typeof f === "string") {
      if (!ASCII.test(f)) return undefined;
      latin1 += u32Latin1(f.length) + f;
    } else if (typeof f === "number") {
      checkU32(f, subject);
      latin1 += u32Latin1(4) + u32Latin1(f);
    } else {
      latin1 += u32Latin1(f.length) + Buffer.from(f.buffer, f.byteOffset, f.byteLength).toString("latin1");
    }
  }
  return latin1;
}

/**
 * The fields as one Buffer, for any text. `subject` names the fields in errors ("associated data"): a string
 * that is not well-formed UTF-16 is refused, since UTF-8 would encode its lone surrogate as U+FFFD and two
 * different strings alike. With `subject` undefined such a string is encoded with U+FFFD instead; only audit
 * format 1, whose stored hashes were computed that way, asks for that.
 */
export function bufferFields(fields: readonly Field[], subject: string | undefined): Buffer {
  let size = 0;
  for (const f of fields) size += 4 + fieldLength(f, subject);
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const f of fields) {
    if (typeof f === "string") {
      const n = out.write(f, at + 4, "utf8");
      out.writeUInt32BE(n, at);
      at += 4 + n;
    } else if (typeof f === "number") {
      out.writeUInt32BE(4, at);
      out.writeUInt32BE(f, at + 4);
      at += 8;
    } else {
      out.writeUInt32BE(f.length, at);
      out.set(f, at + 4);
      at += 4 + f.length;
    }
  }
  return out;
}

/** The fields as bytes: `latin1Fields` converted when it applies, else `bufferFields` (errors as there). */
export function encodeFields(fields: readonly Field[], subject: string): Buffer {
  const latin1 = latin1Fields(fields, subject);
  return latin1 === undefined ? bufferFields(fields, subject) : Buffer.from(latin1, "latin1");
}

function fieldLength(f: Field, subject: string | undefined): number {
  if (typeof f === "string") {
    if (subject !== undefined && !f.isWellFormed()) throw new Error(`${subject} field is not well-formed Unicode`);
    return Buffer.byteLength(f, "utf8");
  }
  if (typeof f === "number") {
    checkU32(f, subject ?? "a length-prefixed");
    return 4;
  }
  return f.length;
}

function checkU32(n: number, subject: string): void {
  if (!Number.isInteger(n) || n < 0 || n > MAX_U32) throw new Error(`${subject} integer must be in 0..2^32-1`);
}
