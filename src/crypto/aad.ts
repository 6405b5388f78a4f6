/**
 * Associated data, built here and nowhere else: one function per purpose.
 *
 * Encoding (injective, so no two tuples encode alike):
 *
 *   aad   = field(purpose label) field(...) ...     fields in a fixed order per purpose
 *   field = u32 big-endian byte length || bytes
 *           strings: UTF-8 (must be well-formed UTF-16, else two strings could encode alike)
 *           integers: u32 big-endian, so always a 4-byte field with its own length prefix
 *           byte strings (the envelope header): as they are
 *
 * The purpose label comes first, so AAD for one purpose can never be valid AAD for another.
 * Changing a label, the field order or the encoding makes every stored ciphertext unreadable.
 */
import { Buffer } from "node:buffer";

const VALUE_PURPOSE = "secrets.v1/value";
const DATA_KEY_PURPOSE = "secrets.v1/data-key";

const MAX_U32 = 2 ** 32 - 1;

/** A field: a string (UTF-8), an integer (u32) or bytes as they are. */
type Field = string | number | Uint8Array;

/**
 * AAD of a secret value: binds its ciphertext to one developer, secret id, name and version, and
 * to the envelope header (format and DEK version), so a ciphertext moved anywhere else fails.
 */
export function valueAad(b: {
  developerId: string;
  secretId: string;
  name: string;
  version: number;
  header: Uint8Array;
}): Buffer {
  return encodeFields([VALUE_PURPOSE, b.developerId, b.secretId, b.name, b.version, b.header]);
}

/**
 * AAD of a wrapped data key: binds it to its developer, DEK version and master key id, and to the
 * envelope header, so a wrapped key moved to another developer or version fails to unwrap.
 */
export function wrappedKeyAad(b: {
  developerId: string;
  dekVersion: number;
  kekId: string;
  header: Uint8Array;
}): Buffer {
  return encodeFields([DATA_KEY_PURPOSE, b.developerId, b.dekVersion, b.kekId, b.header]);
}

/** ASCII only: UTF-8 and Latin-1 encode these code points alike, one byte each. */
const ASCII = /^[\x00-\x7f]*$/;

/** A u32, big-endian, as four Latin-1 characters. */
const u32Chars = (n: number) => String.fromCharCode(n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);

/**
 * The fields as bytes. Runs on every value read (ten times per ResolveSecrets of
 * ten names). The usual case, every string ASCII, is built as one Latin-1 string
 * (length prefixes and integers as char codes 0–255, bytes as they are) and
 * converted in one native call; otherwise each field is written into one buffer
 * sized up front. Both give the same bytes (test/crypto/aad.test.ts).
 */
function encodeFields(fields: readonly Field[]): Buffer {
  let latin1 = "";
  for (const f of fields) {
    if (typeof f === "string") {
      if (!ASCII.test(f)) return encodeFieldsUtf8(fields);
      latin1 += u32Chars(f.length) + f;
    } else if (typeof f === "number") {
      fieldLength(f); // range check
      latin1 += u32Chars(4) + u32Chars(f);
    } else {
      latin1 += u32Chars(f.length) + Buffer.from(f.buffer, f.byteOffset, f.byteLength).toString("latin1");
    }
  }
  return Buffer.from(latin1, "latin1");
}

function encodeFieldsUtf8(fields: readonly Field[]): Buffer {
  let size = 0;
  for (const f of fields) size += 4 + fieldLength(f);
  const out = Buffer.allocUnsafe(size);
  let at = 0;
  for (const f of fields) {
    if (typeof f === "string") {
      const n = Buffer.byteLength(f, "utf8");
      out.writeUInt32BE(n, at);
      out.write(f, at + 4, n, "utf8");
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

function fieldLength(f: Field): number {
  if (typeof f === "string") {
    // A lone surrogate encodes as U+FFFD, which would make two different strings encode alike.
    if (!f.isWellFormed()) throw new Error("associated data field is not well-formed Unicode");
    return Buffer.byteLength(f, "utf8");
  }
  if (typeof f === "number") {
    if (!Number.isInteger(f) || f < 0 || f > MAX_U32) throw new Error("associated data integer must be in 0..2^32-1");
    return 4;
  }
  return f.length;
}
