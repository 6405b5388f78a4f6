/**
 * The crypto core's public surface: key material, AES-256-GCM, envelope formats, associated data,
 * value sealing, the master-key provider and the in-memory data-key cache.
 */
export { KeyBytes } from "./key-bytes.js";
export { KEY_BYTES, NONCE_BYTES, TAG_BYTES, aesGcmSeal, aesGcmOpen } from "./aead.js";
export {
  VALUE_FORMAT,
  WRAPPED_KEY_FORMAT,
  valueHeader,
  parseValueEnvelope,
  wrappedKeyHeader,
  parseWrappedKeyEnvelope,
} from "./envelope.js";
export { valueAad, wrappedKeyAad } from "./aad.js";
export { type ValueBinding, sealValue, openValue, envelopeDekVersion } from "./value-cipher.js";
export { type DataKeyContext, type KeyProvider, parseKeyring, createLocalKeyProvider } from "./key-provider.js";
export { type DekCache, createDekCache } from "./dek-cache.js";
