/**
 * Secret key material behind a type that cannot leak by accident.
 *
 * The bytes sit in a `#private` field, so no enumerable property holds them: `JSON.stringify`,
 * `util.inspect`, `console.log`, pino and `String()` all print "[REDACTED]". The only way to the
 * bytes is `exposeSecretBytes()`, a name chosen to stand out in review and to be found with grep.
 */
import { randomFillSync, timingSafeEqual } from "node:crypto";
import { inspect } from "node:util";
import { Buffer } from "node:buffer";

const REDACTED = "[REDACTED]";

/**
 * Key material (a master key or a data key). Exists so that key bytes are never a plain Buffer
 * that a log line, an error or a JSON response could print.
 */
export class KeyBytes {
  /**
   * Invariant: a Buffer of its own (`Buffer.alloc`, never a slice of Node's shared pool), so that
   * zeroizing it clears the only copy this object owns and nothing else. `undefined` once zeroized.
   */
  #bytes: Buffer | undefined;

  /** Length of the key in bytes; stays the same after `zeroize()`. */
  readonly length: number;

  private constructor(bytes: Buffer) {
    this.#bytes = bytes;
    this.length = bytes.length;
  }

  /** Wraps a copy of `bytes`; the caller stays responsible for clearing its own buffer. */
  static from(bytes: Uint8Array): KeyBytes {
    const own = Buffer.alloc(bytes.length);
    own.set(bytes);
    return new KeyBytes(own);
  }

  /** A fresh key from the operating system's CSPRNG (32 bytes: an AES-256 key). */
  static random(length = 32): KeyBytes {
    if (!Number.isInteger(length) || length <= 0) {
      throw new Error("key length must be a positive integer");
    }
    return new KeyBytes(randomFillSync(Buffer.alloc(length)));
  }

  /**
   * The one fenced way to reach the bytes. Returns the internal buffer, not a copy: use it at once
   * (pass it to a cipher) and never keep, log or return it. Throws after `zeroize()`.
   */
  exposeSecretBytes(): Buffer {
    if (this.#bytes === undefined) {
      throw new Error("key has been zeroized");
    }
    return this.#bytes;
  }

  /** Constant-time comparison, so that comparing keys reveals nothing through timing. */
  equals(other: KeyBytes): boolean {
    const a = this.exposeSecretBytes();
    const b = other.exposeSecretBytes();
    // Key lengths are not secret; timingSafeEqual requires equal lengths.
    return a.length === b.length && timingSafeEqual(a, b);
  }

  /** Overwrites the bytes with zeros and makes this object unusable; later use throws. */
  zeroize(): void {
    this.#bytes?.fill(0);
    this.#bytes = undefined;
  }

  /** What `JSON.stringify` (and so pino) prints. */
  toJSON(): string {
    return REDACTED;
  }

  /** What `String(key)`, template literals and `console.log("%s", key)` print. */
  toString(): string {
    return REDACTED;
  }

  /** What `util.inspect` and `console.log(key)` print. */
  [inspect.custom](): string {
    return REDACTED;
  }
}
