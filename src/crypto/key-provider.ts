/**
 * The master-key (KEK) side of the key hierarchy: wrapping and unwrapping data keys.
 *
 * It is an interface so that a cloud KMS, Vault Transit or an HSM can replace the built-in local
 * provider without touching the rest. Whatever the provider, a wrapped key is a wrapped-key
 * envelope (see envelope.ts) whose AAD is `wrappedKeyAad`, and `unwrap` only ever uses the master
 * key that both the row and the envelope header name.
 */
import { randomBytes as systemRandomBytes } from "node:crypto";
import { Buffer } from "node:buffer";
import { integrityFailure } from "../api/errors.js";
import { wrappedKeyAad } from "./aad.js";
import { aesGcmOpen, aesGcmSeal, KEY_BYTES, NONCE_BYTES } from "./aead.js";
import { parseWrappedKeyEnvelope, wrappedKeyHeader } from "./envelope.js";
import { KeyBytes } from "./key-bytes.js";

/** Where a data key belongs; it goes into the wrapped key's AAD. */
export interface DataKeyContext {
  developerId: string;
  dekVersion: number;
}

/** What GetKeyStatus says of a master key: which provider holds it. */
export interface MasterKeyDescription {
  /** `env` (held in this process, from SECRETS_MASTER_KEYS / _FILE) or `pkcs11` (in an HSM token). */
  provider: string;
}

/** Whether a provider can wrap and unwrap now; `reason` says why not, without any secret. */
export type ProviderHealth = { ok: true } | { ok: false; reason: string };

/**
 * Wraps and unwraps data keys under master keys; the seam for an external KMS or HSM.
 * A provider never hands out a master key: it only wraps and unwraps. One whose keys live
 * elsewhere (an HSM) fails a call it cannot make now with BACKEND_UNAVAILABLE, never with an
 * integrity failure, so a transient outage is never mistaken for tampering.
 */
export interface KeyProvider {
  /** Ids of the master keys this replica holds (reported in heartbeats before a key is activated). */
  keyIds(): readonly string[];
  /** Whether this replica holds master key `kekId`. */
  has(kekId: string): boolean;
  /** Seals `dek` under master key `kekId`; returns a wrapped-key envelope. */
  wrap(kekId: string, dek: KeyBytes, context: DataKeyContext): Promise<Buffer>;
  /**
   * Opens a wrapped key read from a row whose recorded master key id is `kekId`. The header's id
   * must equal it (else integrityFailure, nothing decrypted); authentication failures are
   * integrityFailure too.
   */
  unwrap(kekId: string, wrapped: Uint8Array, context: DataKeyContext): Promise<KeyBytes>;
  /** Which provider holds master key `kekId`; undefined when this replica does not hold it. */
  describe(kekId: string): MasterKeyDescription | undefined;
  /** Probes the provider (for an HSM: a session is open and logged in). */
  health(): Promise<ProviderHealth>;
  /** Zeroizes the master keys held (or lets go of the token); the provider holds none afterwards. */
  destroy(): void;
}

const KEY_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
/** Standard base64 with padding; a 32-byte key is exactly 44 characters. */
const BASE64_PATTERN = /^(?:[A-Za-z0-9+/]{4})*(?:[A-Za-z0-9+/]{2}==|[A-Za-z0-9+/]{3}=)?$/;

/**
 * Reads a keyring from configuration text: `id:base64key[,id:base64key…]`. Entries are separated
 * by commas and/or newlines, and whitespace around them is ignored, so a key file may hold one
 * entry per line. Ids match `[A-Za-z0-9_-]{1,64}` and are unique; each key is exactly 32 bytes of
 * standard base64. Errors name an entry by position (and id once the id is known to be valid) and
 * never include key material or the raw text.
 */
export function parseKeyring(text: string): Map<string, KeyBytes> {
  const keyring = new Map<string, KeyBytes>();
  try {
    const entries = text
      .split(/[,\n]/)
      .map((entry) => entry.trim())
      .filter((entry) => entry.length > 0);
    if (entries.length === 0) {
      throw new Error("master keyring is empty: expected id:base64key[,id:base64key...]");
    }
    entries.forEach((entry, index) => {
      const position = index + 1;
      const colon = entry.indexOf(":");
      if (colon < 0) {
        throw new Error(`master keyring entry ${position} is not of the form id:base64key`);
      }
      const id = entry.slice(0, colon);
      const encoded = entry.slice(colon + 1);
      // An invalid id is not echoed: a malformed entry could be key material in the wrong place.
      if (!KEY_ID_PATTERN.test(id)) {
        throw new Error(`master keyring entry ${position} has an invalid id (expected 1-64 of A-Z a-z 0-9 _ -)`);
      }
      if (keyring.has(id)) {
        throw new Error(`master keyring entry ${position} (id "${id}") repeats an earlier id`);
      }
      const decoded = decodeBase64(encoded);
      if (decoded === undefined) {
        throw new Error(`master keyring entry ${position} (id "${id}") is not valid standard base64`);
      }
      try {
        if (decoded.length !== KEY_BYTES) {
          throw new Error(
            `master keyring entry ${position} (id "${id}") must decode to ${KEY_BYTES} bytes, got ${decoded.length}`,
          );
        }
        keyring.set(id, KeyBytes.from(decoded));
      } finally {
        decoded.fill(0);
      }
    });
    return keyring;
  } catch (error) {
    for (const key of keyring.values()) key.zeroize();
    throw error;
  }
}

/**
 * The built-in provider: master keys held in this process, read from configuration. It keeps its
 * own copies of the keys (copy-on-write: later changes to the caller's map or keys do not reach
 * it). `randomBytes` is injectable only so tests can freeze a wrapped key.
 */
export function createLocalKeyProvider(
  keyring: ReadonlyMap<string, KeyBytes>,
  randomBytes: (n: number) => Buffer = systemRandomBytes,
): KeyProvider {
  const keys = new Map<string, KeyBytes>();
  for (const [id, key] of keyring) {
    if (!KEY_ID_PATTERN.test(id)) {
      throw new Error("master key ids must match [A-Za-z0-9_-]{1,64}");
    }
    if (key.length !== KEY_BYTES) {
      throw new Error(`master key "${id}" must be ${KEY_BYTES} bytes`);
    }
    keys.set(id, KeyBytes.from(key.exposeSecretBytes()));
  }
  if (keys.size === 0) {
    throw new Error("the local key provider needs at least one master key");
  }

  function requireKey(kekId: string): KeyBytes {
    const key = keys.get(kekId);
    if (key === undefined) {
      throw new Error(`master key "${kekId}" is not in this replica's keyring`);
    }
    return key;
  }

  return {
    keyIds() {
      return Object.freeze([...keys.keys()]);
    },

    has(kekId) {
      return keys.has(kekId);
    },

    describe(kekId) {
      return keys.has(kekId) ? { provider: "env" } : undefined;
    },

    async health() {
      return keys.size > 0 ? { ok: true } : { ok: false, reason: "the local key provider was destroyed" };
    },

    async wrap(kekId, dek, context) {
      const kek = requireKey(kekId);
      if (dek.length !== KEY_BYTES) {
        throw new Error(`a data key must be ${KEY_BYTES} bytes`);
      }
      const header = wrappedKeyHeader(kekId);
      const nonce = randomBytes(NONCE_BYTES);
      if (nonce.length !== NONCE_BYTES) {
        throw new Error(`randomBytes returned ${nonce.length} bytes, expected ${NONCE_BYTES}`);
      }
      const aad = wrappedKeyAad({ developerId: context.developerId, dekVersion: context.dekVersion, kekId, header });
      const sealed = aesGcmSeal(kek, nonce, dek.exposeSecretBytes(), aad);
      return Buffer.concat([header, nonce, sealed]);
    },

    async unwrap(kekId, wrapped, context) {
      const parsed = parseWrappedKeyEnvelope(wrapped);
      if (parsed.kekId !== kekId) {
        throw integrityFailure("wrapped key: master key id differs from the row's");
      }
      const kek = requireKey(kekId);
      const aad = wrappedKeyAad({
        developerId: context.developerId,
        dekVersion: context.dekVersion,
        kekId,
        header: parsed.header,
      });
      const plain = aesGcmOpen(kek, parsed.nonce, parsed.sealed, aad);
      try {
        return KeyBytes.from(plain);
      } finally {
        plain.fill(0);
      }
    },

    destroy() {
      for (const key of keys.values()) key.zeroize();
      keys.clear();
    },
  };
}

/**
 * Several providers behind one: each master key id belongs to exactly one of them, and every call
 * goes to the provider that holds the key it names. This is what lets a rotation move data keys
 * from a key held in this process to one in an HSM, or between two HSM keys. Key ids keep the
 * providers' order (the first one is what an empty database records as active). Two providers
 * naming one id is refused: a row's master key id must pick one key.
 */
export function combineKeyProviders(providers: readonly KeyProvider[]): KeyProvider {
  if (providers.length === 1) return providers[0] as KeyProvider;
  const owner = new Map<string, KeyProvider>();
  for (const provider of providers) {
    for (const id of provider.keyIds()) {
      if (owner.has(id)) throw new Error(`master key id "${id}" is configured by two key providers`);
      owner.set(id, provider);
    }
  }
  if (owner.size === 0) throw new Error("no master key is configured");
  const ids = Object.freeze([...owner.keys()]);
  const providerOf = (kekId: string): KeyProvider => {
    const provider = owner.get(kekId);
    if (provider === undefined) throw new Error(`master key "${kekId}" is not in this replica's keyring`);
    return provider;
  };
  return {
    keyIds: () => ids,
    has: (kekId) => owner.has(kekId),
    describe: (kekId) => owner.get(kekId)?.describe(kekId),
    wrap: (kekId, dek, context) => providerOf(kekId).wrap(kekId, dek, context),
    unwrap: (kekId, wrapped, context) => providerOf(kekId).unwrap(kekId, wrapped, context),
    async health() {
      for (const provider of providers) {
        const health = await provider.health();
        if (!health.ok) return health;
      }
      return { ok: true };
    },
    destroy() {
      for (const provider of providers) provider.destroy();
    },
  };
}

/** Strict standard base64 (with padding, canonical trailing bits), or undefined. */
function decodeBase64(encoded: string): Buffer | undefined {
  if (encoded.length === 0 || !BASE64_PATTERN.test(encoded)) {
    return undefined;
  }
  const decoded = Buffer.from(encoded, "base64");
  // Node ignores non-zero trailing bits; re-encoding catches a non-canonical spelling.
  if (decoded.toString("base64") !== encoded) {
    decoded.fill(0);
    return undefined;
  }
  return decoded;
}
