import { KeyBytes } from "../crypto/key-bytes.js";
import type { DataKeys } from "./data-keys.js";

/**
 * Who the cache entry key belongs to in `data_keys`. `#` is outside the token
 * subject pattern, so no caller can name this owner: not to rotate, shred or read
 * its key, nor to write a secret under it.
 */
export const CACHE_ENTRY_KEY_OWNER = "#cache-entries";

/**
 * The key the value cache authenticates its entries under (cache/entry-codec.ts).
 * It never goes to Redis. It is stored like a developer's data key: wrapped under
 * the active master key in Postgres, created by the first replica that needs it
 * and read by the others (so every replica trusts every other's fills), and
 * rewrapped with the rest when the master key rotates. Returns a copy that the
 * cache owns (and zeroizes when it is done with it); the DEK cache keeps none.
 */
export async function loadCacheEntryKey(dataKeys: Pick<DataKeys, "currentKey" | "evict">): Promise<KeyBytes> {
  const { key } = await dataKeys.currentKey(CACHE_ENTRY_KEY_OWNER);
  const copy = KeyBytes.from(key.exposeSecretBytes());
  dataKeys.evict(CACHE_ENTRY_KEY_OWNER); // not a developer's key: it does not stay among theirs
  return copy;
}
