import type { KeyProvider } from "../crypto/key-provider.js";
import type { Queryable } from "../store/db.js";
import { dataKeysPerMasterKey, ensureActiveMasterKey } from "../store/master-key-store.js";

/** The master keys configured do not cover what the database holds; the message names the missing key. */
export class MasterKeyMissing extends Error {
  override readonly name = "MasterKeyMissing";
}

/**
 * At start: records the provider's first key as active when the database has none
 * yet, and refuses to serve when a data key is wrapped under a master key the
 * provider lacks, or the recorded active key is not configured. Returns the active key.
 */
export async function checkMasterKeys(db: Queryable, keyProvider: KeyProvider): Promise<string> {
  const activeKekId = await ensureActiveMasterKey(db, keyProvider.keyIds()[0] as string);
  for (const [kekId, count] of await dataKeysPerMasterKey(db)) {
    if (!keyProvider.has(kekId)) throw new MasterKeyMissing(`lacks master key "${kekId}", which ${count} data key(s) are wrapped under`);
  }
  if (!keyProvider.has(activeKekId)) throw new MasterKeyMissing(`lacks the active master key "${activeKekId}" recorded in the database`);
  return activeKekId;
}
