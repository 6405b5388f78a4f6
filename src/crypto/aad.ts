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
  return encodeFields([
    text(VALUE_PURPOSE),
    text(b.developerId),
    text(b.secretId),
    text(b.name),
    u32(b.version),
    b.header,
  ]);
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
  return encodeFields([text(DATA_KEY_PURPOSE), text(b.developerId), u32(b.dekVersion), text(b.kekId), b.header]);
}

function encodeFields(fields: readonly Uint8Array[]): Buffer {
  const parts: Uint8Array[] = [];
  for (const field of fields) {
    const prefix = Buffer.alloc(4);
    prefix.writeUInt32BE(field.length, 0);
    parts.push(prefix, field);
  }
  return Buffer.concat(parts);
}

function text(s: string): Buffer {
  const bytes = Buffer.from(s, "utf8");
  // A lone surrogate encodes as U+FFFD, which would make two different strings encode alike.
  if (bytes.toString("utf8") !== s) {
    throw new Error("associated data field is not well-formed Unicode");
  }
  return bytes;
}

function u32(n: number): Buffer {
  if (!Number.isInteger(n) || n < 0 || n > MAX_U32) {
    throw new Error("associated data integer must be in 0..2^32-1");
  }
  const bytes = Buffer.alloc(4);
  bytes.writeUInt32BE(n, 0);
  return bytes;
}
