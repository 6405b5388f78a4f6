import { createHmac, createSecretKey, hkdfSync, timingSafeEqual, type KeyObject } from "node:crypto";
import type { KeyBytes } from "../crypto/key-bytes.js";
import { bufferFields, isAscii, u32Latin1 } from "../lib/length-prefixed.js";
import type { CachedLookup } from "./secret-cache.js";

/**
 * Cache entries, sealed and opened here and nowhere else. An entry is authenticated
 * by the service: a MAC under a key Redis never sees, over the entry, its expiry and
 * where it belongs. So whoever can write to Redis can delete entries, or write back
 * an entry the service sealed earlier, but cannot make one up, move one to another
 * name or developer, or have one served past its expiry.
 *
 * Entry format 0x02, parsed with explicit bounds:
 *
 *   [0x02][kind][expires at: u64 BE, ms since the epoch][body][tag: 16 bytes]
 *     kind 0x01, found:   body = [secret id: 16 bytes][version u32 BE][DEK version u32 BE][ciphertext, ≥ 1 byte]
 *     kind 0x02, missing: body = (empty)
 *
 *   tag    = HMAC-SHA256(macKey, field(purpose) field(developer id) field(name) field(generation)
 *                                field(entry up to the tag)), first 16 bytes
 *   field  = u32 BE byte length || bytes (strings UTF-8), as in crypto/aad.ts, so no two tuples encode alike
 *            (lib/length-prefixed.ts; a string with a lone surrogate is refused)
 *   macKey = HKDF-SHA256(entry key, empty salt, info MAC_KEY_INFO, 32 bytes): the entry key has one purpose
 *
 * What each bound field stops:
 * - developer id and name are the ones the lookup asked for, not the Redis key: an
 *   entry copied under another name or developer (or a developer whose 64-bit key
 *   prefix collides) fails.
 * - generation: the fill script stores an entry only while the name's generation
 *   equals the one its lookup saw, and every write INCRs the generation and deletes
 *   the entry atomically; so a genuine entry always sits beside the generation it
 *   was sealed with, and one written back after any write fails.
 * - expiry: an entry written back together with its old generation is served at
 *   most until its expiry, checked against the reader's clock.
 * - the entry itself: its format, kind, ids, versions and ciphertext.
 *
 * The tag is truncated to 128 bits (HMAC-SHA-256-128, as RFC 4868 uses for IPsec):
 * a forger gets one online guess per lookup, each right with probability 2^-128,
 * and an entry is 16 bytes shorter.
 */

/** Result of opening an entry: the entry, or why it was refused. Either refusal is a miss, never an answer. */
export type OpenedEntry = CachedLookup | "invalid" | "expired";

export interface EntryCodec {
  /**
   * The entry for `value`, stored under (developerId, name) beside `generation`
   * ("" when the name has none) and valid until `expiresAt` (ms since the epoch).
   */
  seal(developerId: string, name: string, generation: string, expiresAt: number, value: CachedLookup): Buffer;
  /**
   * Opens `bytes` as read for (developerId, name) beside `generation` at time `now`:
   * "invalid" when it is malformed or its tag does not verify, "expired" when its
   * expiry is not after `now`. `bytes` must never change afterwards: a found entry's
   * ciphertext is a view of it, and its verification is remembered with it.
   */
  open(developerId: string, name: string, generation: string, bytes: Buffer, now: number): OpenedEntry;
}

export const ENTRY_FORMAT = 0x02;
const FOUND = 0x01;
const MISSING = 0x02;
/** Format, kind and expiry. */
const HEADER = 1 + 1 + 8;
/** Secret id, version and DEK version. */
const FOUND_FIELDS = 16 + 4 + 4;
export const TAG_BYTES = 16;
const MAX_EXPIRY = Number.MAX_SAFE_INTEGER;

const MAC_KEY_INFO = "secrets.v1/cache-entry-mac-key";
const PURPOSE = "secrets.v1/cache-entry";

/** Names the MAC input's fields in errors. */
const FIELDS = "a cache entry";
/** field(PURPOSE), the same for every entry (PURPOSE is ASCII). */
const PURPOSE_FIELD = u32Latin1(PURPOSE.length) + PURPOSE;

/** The codec under `entryKey` (32 bytes). Keeps only the derived MAC key, not `entryKey`. */
export function createEntryCodec(entryKey: KeyBytes): EntryCodec {
  if (entryKey.length !== 32) throw new Error("the cache entry key must be 32 bytes");
  const okm = Buffer.from(hkdfSync("sha256", entryKey.exposeSecretBytes(), Buffer.alloc(0), MAC_KEY_INFO, 32));
  const macKey: KeyObject = createSecretKey(okm);
  okm.fill(0);

  /** The full 32-byte HMAC of an entry's signed part (`signed`: everything before the tag). */
  const mac = (developerId: string, name: string, generation: string, signed: Buffer): Buffer => {
    const h = createHmac("sha256", macKey);
    // The fields and the signed part's length prefix, in one native call when all ASCII.
    if (isAscii(developerId) && isAscii(name) && isAscii(generation)) {
      h.update(
        PURPOSE_FIELD +
          u32Latin1(developerId.length) + developerId +
          u32Latin1(name.length) + name +
          u32Latin1(generation.length) + generation +
          u32Latin1(signed.length),
        "latin1",
      );
    } else {
      h.update(bufferFields([PURPOSE, developerId, name, generation], FIELDS));
      h.update(u32Latin1(signed.length), "latin1");
    }
    h.update(signed);
    return h.digest();
  };

  /**
   * Entries verified, by their Buffer: the lookups one coalesced MGET reply answers
   * share one Buffer per key (redis-cache.ts), and the hot names of a turn are asked
   * for many times, so each distinct entry of a reply is verified once (the in-process
   * store hands out the one Buffer it keeps per entry, so there once per fill). A result is
   * reused only for the same Buffer (same bytes, by the invariant above) opened for
   * the same developer, name and generation; the expiry is checked on every open.
   * Weak: an entry is forgotten with its Buffer.
   */
  const verified = new WeakMap<Buffer, { developerId: string; name: string; generation: string; expiresAt: number; value: CachedLookup }>();

  return {
    seal(developerId, name, generation, expiresAt, value) {
      if (!Number.isInteger(expiresAt) || expiresAt < 0 || expiresAt > MAX_EXPIRY) throw new Error("entry expiry out of range");
      const bodyLength = value.kind === "found" ? FOUND_FIELDS + value.ciphertext.length : 0;
      const out = Buffer.allocUnsafe(HEADER + bodyLength + TAG_BYTES);
      out[0] = ENTRY_FORMAT;
      out[1] = value.kind === "found" ? FOUND : MISSING;
      out.writeUInt32BE(Math.floor(expiresAt / 2 ** 32), 2);
      out.writeUInt32BE(expiresAt >>> 0, 6);
      if (value.kind === "found") {
        if (value.ciphertext.length === 0) throw new Error("an entry's ciphertext is empty");
        const id = Buffer.from(value.secretId.replace(/-/g, ""), "hex");
        if (id.length !== 16) throw new Error("secret id is not a UUID");
        id.copy(out, HEADER);
        out.writeUInt32BE(value.version, HEADER + 16);
        out.writeUInt32BE(value.dekVersion, HEADER + 20);
        value.ciphertext.copy(out, HEADER + FOUND_FIELDS);
      }
      const signedLength = HEADER + bodyLength;
      mac(developerId, name, generation, out.subarray(0, signedLength)).copy(out, signedLength, 0, TAG_BYTES);
      return out;
    },

    open(developerId, name, generation, bytes, now) {
      const known = verified.get(bytes);
      if (known !== undefined && known.developerId === developerId && known.name === name && known.generation === generation) {
        return known.expiresAt <= now ? "expired" : known.value;
      }
      const length = bytes.length;
      if (length < HEADER + TAG_BYTES || bytes[0] !== ENTRY_FORMAT) return "invalid";
      const kind = bytes[1];
      const sized = kind === FOUND ? length > HEADER + FOUND_FIELDS + TAG_BYTES : kind === MISSING && length === HEADER + TAG_BYTES;
      if (!sized) return "invalid";
      const signedLength = length - TAG_BYTES;
      let expected: Buffer;
      try {
        expected = mac(developerId, name, generation, bytes.subarray(0, signedLength));
      } catch {
        return "invalid"; // a binding that cannot be encoded unambiguously
      }
      if (!timingSafeEqual(expected.subarray(0, TAG_BYTES), bytes.subarray(signedLength))) return "invalid";
      const value = decodeBody(kind, bytes, signedLength);
      const expiresAt = bytes.readUInt32BE(2) * 2 ** 32 + bytes.readUInt32BE(6);
      verified.set(bytes, { developerId, name, generation, expiresAt, value });
      // Verified first, so "expired" always means a genuine entry past its time.
      return expiresAt <= now ? "expired" : value;
    },
  };
}

/** The body of a verified entry of `kind`, which ends at `end` (the tag). */
function decodeBody(kind: number | undefined, bytes: Buffer, end: number): CachedLookup {
  if (kind === MISSING) return { kind: "missing" };
  const hex = bytes.toString("hex", HEADER, HEADER + 16);
  return {
    kind: "found",
    secretId: `${hex.slice(0, 8)}-${hex.slice(8, 12)}-${hex.slice(12, 16)}-${hex.slice(16, 20)}-${hex.slice(20)}`,
    version: bytes.readUInt32BE(HEADER + 16),
    dekVersion: bytes.readUInt32BE(HEADER + 20),
    ciphertext: bytes.subarray(HEADER + FOUND_FIELDS, end),
  };
}
