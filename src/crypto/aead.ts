/**
 * AES-256-GCM, the one authenticated cipher of the service, with associated data required.
 *
 * Sealed format: `ciphertext || tag`, the ciphertext as long as the plaintext, the tag TAG_BYTES.
 * Nonces are the caller's business: every key must never see the same nonce twice (callers draw
 * 96 random bits per encryption and rotate a key before 2^30 encryptions).
 */
import { createCipheriv, createDecipheriv } from "node:crypto";
import { Buffer } from "node:buffer";
import { integrityFailure } from "../api/errors.js";
import type { KeyBytes } from "./key-bytes.js";

/** AES-256 key length in bytes. */
export const KEY_BYTES = 32;
/** GCM nonce length in bytes (96 bits, the length GCM is designed for). */
export const NONCE_BYTES = 12;
/** GCM tag length in bytes; never truncated. */
export const TAG_BYTES = 16;

const ALGORITHM = "aes-256-gcm";

/**
 * Encrypts and authenticates `plaintext`, binding it to `aad` (required: associated data is what
 * ties a ciphertext to where it belongs). Returns `ciphertext || tag`.
 */
export function aesGcmSeal(key: KeyBytes, nonce: Uint8Array, plaintext: Uint8Array, aad: Uint8Array): Buffer {
  checkArguments(key, nonce, aad);
  const cipher = createCipheriv(ALGORITHM, key.exposeSecretBytes(), nonce, { authTagLength: TAG_BYTES });
  cipher.setAAD(aad);
  const ciphertext = cipher.update(plaintext);
  const final = cipher.final();
  return Buffer.concat([ciphertext, final, cipher.getAuthTag()]);
}

/**
 * Checks the tag of `sealed` (`ciphertext || tag`) under `key`, `nonce` and `aad`, and returns the
 * plaintext. Any failure (bad tag, input shorter than a tag, wrong key or aad) is an
 * integrityFailure, and no plaintext is ever returned unless the tag checks.
 */
export function aesGcmOpen(key: KeyBytes, nonce: Uint8Array, sealed: Uint8Array, aad: Uint8Array): Buffer {
  checkArguments(key, nonce, aad);
  if (sealed.length < TAG_BYTES) {
    throw integrityFailure("aead: sealed input shorter than a tag");
  }
  const split = sealed.length - TAG_BYTES;
  try {
    const decipher = createDecipheriv(ALGORITHM, key.exposeSecretBytes(), nonce, { authTagLength: TAG_BYTES });
    decipher.setAuthTag(sealed.subarray(split));
    decipher.setAAD(aad);
    const head = decipher.update(sealed.subarray(0, split));
    // final() throws when the tag does not check; `head` is then dropped unread.
    const tail = decipher.final();
    // GCM is a stream mode: final() yields nothing, and the copy a concat makes is skipped.
    return tail.length === 0 ? head : Buffer.concat([head, tail]);
  } catch (cause) {
    throw integrityFailure("aead: authentication failed", cause);
  }
}

/** Wrong key or nonce sizes are programming errors, not tampering: a plain Error. */
function checkArguments(key: KeyBytes, nonce: Uint8Array, aad: Uint8Array): void {
  if (key.length !== KEY_BYTES) {
    throw new Error(`AES-256-GCM needs a ${KEY_BYTES}-byte key, got ${key.length}`);
  }
  if (nonce.length !== NONCE_BYTES) {
    throw new Error(`AES-256-GCM needs a ${NONCE_BYTES}-byte nonce, got ${nonce.length}`);
  }
  // The type already requires it; this guards JavaScript callers that pass nothing.
  if (!(aad instanceof Uint8Array)) {
    throw new Error("AES-256-GCM associated data is required");
  }
}
