import type { KeyProvider } from "../crypto/key-provider.js";
import { AppError, invalid } from "../api/errors.js";
import type { Db } from "../store/db.js";
import type { DataKeyRow } from "../store/key-store.js";
import * as masterKeyStore from "../store/master-key-store.js";
import * as replicaStore from "../store/replica-store.js";
import { retryConflicts } from "../store/conflicts.js";

/**
 * Master key rotation (docs/design.md, Key lifecycle): a new master key is recorded
 * active once every live replica holds it; data keys are then rewrapped under it in
 * the background, in batches, by any replica. No value is re-encrypted. Each batch
 * reads the active key from Postgres under a share lock, never from this replica's
 * memory, so a replica that has not heard of a rotation yet cannot move keys back.
 */
export interface MasterKeyRotation {
  /** Records `keyId` as the active master key once every live replica holds it; returns the key it replaced. */
  activate(keyId: string): Promise<string>;
  /** Rewraps one batch of data keys under the active master key; returns how many. */
  rewrapBatch(): Promise<number>;
}

export interface MasterKeyRotationDeps {
  db: Db;
  keyProvider: KeyProvider;
  replicaId: string;
  /** Data keys per rewrap batch (SECRETS_KEY_JOB_BATCH). */
  batchSize: number;
  /** This replica's heartbeat: run before the check of which master keys the live replicas hold. */
  heartbeat(): Promise<void>;
  /** Told the active master key each time a batch reads it from the database. */
  sawActiveMasterKey(kekId: string): void;
}

const KEY_ID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;

export function createMasterKeyRotation(deps: MasterKeyRotationDeps): MasterKeyRotation {
  const { db, keyProvider, replicaId } = deps;

  return {
    async activate(keyId) {
      if (!KEY_ID_PATTERN.test(keyId)) throw invalid("INVALID_ARGUMENT", "key_id", "key_id must be a master key id ([A-Za-z0-9_-], 1 to 64)");
      if (!keyProvider.has(keyId)) {
        throw new AppError("KEY_STATE", "this replica's keyring does not hold that master key", { key_id: keyId, replicas: replicaId });
      }
      await deps.heartbeat();
      const lacking = (await replicaStore.liveReplicas(db)).filter((r) => !r.keyIds.includes(keyId)).map((r) => r.id);
      if (lacking.length > 0) {
        throw new AppError("KEY_STATE", `live replicas lack master key ${keyId}: ${lacking.join(", ")}`, {
          key_id: keyId,
          replicas: lacking.join(","),
        });
      }
      return db.transaction((tx) => masterKeyStore.setActiveMasterKey(tx, keyId));
    },

    /**
     * The active master key is read under a share lock for the whole batch (so a
     * rotation waits for it, and the next batch reads the new key), and the batch is
     * written back in one statement.
     */
    rewrapBatch() {
      return retryConflicts(() =>
        db.transaction(async (tx) => {
          const kek = await masterKeyStore.activeMasterKey(tx, { forShare: true });
          deps.sawActiveMasterKey(kek);
          // Keys under a master key this replica lacks are left to a replica that holds it.
          const from = keyProvider.keyIds().filter((id) => id !== kek);
          if (!keyProvider.has(kek) || from.length === 0) return 0;
          const rows = await masterKeyStore.lockDataKeysToRewrap(tx, from, deps.batchSize);
          const rewrapped: { row: DataKeyRow; wrappedKey: Buffer }[] = [];
          for (const row of rows) {
            if (row.wrappedKey === null) continue;
            const context = { developerId: row.developerId, dekVersion: row.version };
            const dek = await keyProvider.unwrap(row.kekId, row.wrappedKey, context);
            try {
              rewrapped.push({ row, wrappedKey: await keyProvider.wrap(kek, dek, context) });
            } finally {
              dek.zeroize(); // our own unwrapped copy, never the one in the DEK cache
            }
          }
          return masterKeyStore.rewrapDataKeys(tx, rewrapped, kek);
        }),
      );
    },
  };
}
