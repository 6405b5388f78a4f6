/**
 * Sealing and opening secret values under a developer's data key (DEK).
 *
 * A value envelope (see envelope.ts) names the DEK version it was sealed under; the caller passes
 * the version recorded on the row, and a mismatch fails before any decryption: a value is only
 * ever opened with the one key that both the row and the header name, never "try each key".
 */
import { randomBytes as systemRandomBytes } from "node:crypto";
import { Buffer } from "node:buffer";
import { integrityFailure } from "../api/errors.js";
import { valueAad } from "./aad.js";
import { aesGcmOpen, aesGcmSeal, NONCE_BYTES } from "./aead.js";
import { parseValueEnvelope, valueHeader } from "./envelope.js";
import type { KeyBytes } from "./key-bytes.js";

/** Where a value belongs; all of it goes into the AAD, so a value moved elsewhere fails to open. */
export interface ValueBinding {
  developerId: string;
  secretId: string;
  name: string;
  version: number;
}

/**
 * Encrypts one secret version under `dek` (version `dekVersion`) and returns the whole value
 * envelope. Each call draws a fresh 96-bit nonce; `randomBytes` is injectable only so tests can
 * freeze an envelope.
 */
export function sealValue(
  dek: KeyBytes,
  dekVersion: number,
  plaintext: Uint8Array,
  binding: ValueBinding,
  randomBytes: (n: number) => Buffer = systemRandomBytes,
): Buffer {
  const header = valueHeader(dekVersion);
  const nonce = randomBytes(NONCE_BYTES);
  if (nonce.length !== NONCE_BYTES) {
    throw new Error(`randomBytes returned ${nonce.length} bytes, expected ${NONCE_BYTES}`);
  }
  const sealed = aesGcmSeal(dek, nonce, plaintext, valueAad({ ...binding, header }));
  return Buffer.concat([header, nonce, sealed]);
}

/**
 * Decrypts a value envelope read from the row described by `binding`, whose recorded DEK version
 * is `expectedDekVersion`. Throws integrityFailure if the header names another DEK version (no
 * decryption is attempted), or if the envelope fails authentication.
 */
export function openValue(dek: KeyBytes, expectedDekVersion: number, envelope: Uint8Array, binding: ValueBinding): Buffer {
  const parsed = parseValueEnvelope(envelope);
  if (parsed.dekVersion !== expectedDekVersion) {
    throw integrityFailure("value envelope: DEK version differs from the row's");
  }
  // A literal, not a spread of `binding`: on every cache hit, and a spread plus one
  // more property left V8 on its slow (runtime) path for the new object (profiled).
  const aad = valueAad({
    developerId: binding.developerId,
    secretId: binding.secretId,
    name: binding.name,
    version: binding.version,
    header: parsed.header,
  });
  return aesGcmOpen(dek, parsed.nonce, parsed.sealed, aad);
}

/**
 * The DEK version a stored envelope was sealed under (header only, nothing decrypted): lets
 * rotation find the values still under an old DEK and fetch the right key.
 */
export function envelopeDekVersion(envelope: Uint8Array): number {
  return parseValueEnvelope(envelope).dekVersion;
}
