import { KeyBytes } from "../crypto/key-bytes.js";
import type { KeyProvider } from "../crypto/key-provider.js";
import type { Db } from "../store/db.js";

/**
 * The key the value cache authenticates its entries under (cache/entry-codec.ts).
 * It never goes to Redis. Replicas serve each other's fills only when they share
 * it; a replica with a key of its own refuses other replicas' entries (misses,
 * never a wrong answer), so a random key per process is safe, only slower.
 */
export async function loadCacheEntryKey(_db: Db, _keyProvider: KeyProvider): Promise<KeyBytes> {
  // Replaced by the key stored wrapped in Postgres (lead's change).
  return KeyBytes.random(32);
}
