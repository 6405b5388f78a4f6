/**
 * The two binary formats stored in Postgres, and their bounds-checked parsers.
 *
 * Value envelope (a secret value sealed under a data key):
 *
 *   offset  size  field
 *   0       1     format = 0x01
 *   1       4     DEK version, u32 big-endian, 1..2^31-1
 *   5       12    nonce
 *   17      n     ciphertext (n >= 0, as long as the plaintext)
 *   17+n    16    GCM tag
 *
 *   header = bytes 0..5 (format + DEK version); it is part of the value's associated data.
 *
 * Wrapped-key envelope (a data key sealed under a master key):
 *
 *   offset  size  field
 *   0       1     format = 0x02
 *   1       1     KEK id length L, 1..64
 *   2       L     KEK id, ASCII [A-Za-z0-9_-]
 *   2+L     12    nonce
 *   14+L    32    ciphertext (the 256-bit data key)
 *   46+L    16    GCM tag; nothing may follow
 *
 *   header = bytes 0..2+L (format + length + id); it is part of the wrapped key's associated data.
 *
 * These formats are persisted: never change a layout in place, add a new format byte instead.
 * Parsers check every length before reading and reject unknown formats, short and trailing data
 * with an integrityFailure; they return copies, never views of the input.
 */
import { Buffer } from "node:buffer";
import { integrityFailure } from "../api/errors.js";
import { KEY_BYTES, NONCE_BYTES, TAG_BYTES } from "./aead.js";

/** Format byte of a value envelope. */
export const VALUE_FORMAT = 0x01;
/** Format byte of a wrapped-key envelope. */
export const WRAPPED_KEY_FORMAT = 0x02;

const VALUE_HEADER_BYTES = 1 + 4;
const MAX_DEK_VERSION = 2 ** 31 - 1;
const MAX_KEK_ID_BYTES = 64;
const KEK_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
/** The wrapped payload is exactly one data key and its tag. */
const WRAPPED_SEALED_BYTES = KEY_BYTES + TAG_BYTES;

/** Builds the 5-byte value header; it goes both into the envelope and into the value's AAD. */
export function valueHeader(dekVersion: number): Buffer {
  if (!isDekVersion(dekVersion)) {
    throw new Error(`DEK version must be an integer in 1..${MAX_DEK_VERSION}`);
  }
  const header = Buffer.alloc(VALUE_HEADER_BYTES);
  header.writeUInt8(VALUE_FORMAT, 0);
  header.writeUInt32BE(dekVersion, 1);
  return header;
}

/**
 * Splits a stored value envelope into its parts, so the caller can check the DEK version against
 * the row before any decryption. Does not authenticate anything: the tag check does that.
 */
export function parseValueEnvelope(bytes: Uint8Array): {
  header: Buffer;
  dekVersion: number;
  nonce: Buffer;
  sealed: Buffer;
} {
  const input = asBuffer(bytes);
  if (input.length < VALUE_HEADER_BYTES + NONCE_BYTES + TAG_BYTES) {
    throw integrityFailure("value envelope: too short");
  }
  if (input[0] !== VALUE_FORMAT) {
    throw integrityFailure("value envelope: unknown format");
  }
  const dekVersion = input.readUInt32BE(1);
  if (!isDekVersion(dekVersion)) {
    throw integrityFailure("value envelope: DEK version out of range");
  }
  const nonceEnd = VALUE_HEADER_BYTES + NONCE_BYTES;
  return {
    header: Buffer.from(input.subarray(0, VALUE_HEADER_BYTES)),
    dekVersion,
    nonce: Buffer.from(input.subarray(VALUE_HEADER_BYTES, nonceEnd)),
    sealed: Buffer.from(input.subarray(nonceEnd)),
  };
}

/** Builds the wrapped-key header for a master key id; it goes into the envelope and the AAD. */
export function wrappedKeyHeader(kekId: string): Buffer {
  if (!KEK_ID_PATTERN.test(kekId)) {
    throw new Error("master key id must match [A-Za-z0-9_-]{1,64}");
  }
  const id = Buffer.from(kekId, "ascii");
  const header = Buffer.alloc(2 + id.length);
  header.writeUInt8(WRAPPED_KEY_FORMAT, 0);
  header.writeUInt8(id.length, 1);
  id.copy(header, 2);
  return header;
}

/**
 * Splits a stored wrapped key into its parts, so the caller can check the master key id against
 * the row before any decryption. Does not authenticate anything: the tag check does that.
 */
export function parseWrappedKeyEnvelope(bytes: Uint8Array): {
  header: Buffer;
  kekId: string;
  nonce: Buffer;
  sealed: Buffer;
} {
  const input = asBuffer(bytes);
  if (input.length < 2) {
    throw integrityFailure("wrapped key: too short");
  }
  if (input[0] !== WRAPPED_KEY_FORMAT) {
    throw integrityFailure("wrapped key: unknown format");
  }
  const idLength = input.readUInt8(1);
  if (idLength < 1 || idLength > MAX_KEK_ID_BYTES) {
    throw integrityFailure("wrapped key: master key id length out of range");
  }
  const headerEnd = 2 + idLength;
  const nonceEnd = headerEnd + NONCE_BYTES;
  const expectedLength = nonceEnd + WRAPPED_SEALED_BYTES;
  if (input.length < expectedLength) {
    throw integrityFailure("wrapped key: too short");
  }
  if (input.length > expectedLength) {
    throw integrityFailure("wrapped key: trailing data");
  }
  // Latin-1 maps each byte to one code unit, so a non-ASCII byte cannot pass the pattern.
  const kekId = input.toString("latin1", 2, headerEnd);
  if (!KEK_ID_PATTERN.test(kekId)) {
    throw integrityFailure("wrapped key: malformed master key id");
  }
  return {
    header: Buffer.from(input.subarray(0, headerEnd)),
    kekId,
    nonce: Buffer.from(input.subarray(headerEnd, nonceEnd)),
    sealed: Buffer.from(input.subarray(nonceEnd)),
  };
}

function isDekVersion(n: number): boolean {
  return Number.isInteger(n) && n >= 1 && n <= MAX_DEK_VERSION;
}

/** A Buffer view of the caller's bytes (no copy), for the bounds-checked readers. */
function asBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}
