/**
 * Associated data, built here and nowhere else: one function per purpose.
 *
 * Encoding (injective, so no two tuples encode alike), written by lib/length-prefixed.ts:
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
import type { Buffer } from "node:buffer";
import { encodeFields } from "../lib/length-prefixed.js";

const VALUE_PURPOSE = "secrets.v1/value";
const DATA_KEY_PURPOSE = "secrets.v1/data-key";

/** Names the fields in errors: a lone surrogate or an integer past u32 is refused (lib/length-prefixed.ts). */
const SUBJECT = "associated data";

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
  return encodeFields([VALUE_PURPOSE, b.developerId, b.secretId, b.name, b.version, b.header], SUBJECT);
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
  return encodeFields([DATA_KEY_PURPOSE, b.developerId, b.dekVersion, b.kekId, b.header], SUBJECT);
}
