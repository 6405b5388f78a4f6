import type { SecretCache } from "../cache/secret-cache.js";
import { KeyBytes } from "../crypto/key-bytes.js";
import { openValue, sealValue } from "../crypto/value-cipher.js";
import { AppError } from "../api/errors.js";
import type { Db, Queryable } from "../store/db.js";
import * as keyStore from "../store/key-store.js";
import { retryConflicts } from "../store/conflicts.js";
import { DataKeyUnavailable, type DataKey, type DataKeys } from "./data-keys.js";

/**
 * Developer data key rotation (docs/design.md, Key lifecycle): a new data key
 * version for new writes, the old one marked retiring (taken FOR UPDATE, which waits
 * for writes holding it FOR SHARE). In the background the developer's values are
 * re-encrypted row by row with compare-and-swap, and the old version is retired,
 * its wrapped key erased, under FOR UPDATE after a recount shows nothing
 * references it; every replica then drops it from memory (an eviction).
 */
export interface DeveloperKeyRotation {
  /** Adds a new active data key for the developer (KEY_STATE if it has none yet) and starts the background work. */
  rotate(developerId: string): Promise<{ newVersion: number; previousVersion: number }>;
  /** Re-encrypts one batch of values under retiring keys; returns how many it swapped. */
  reencryptBatch(): Promise<number>;
  /** Retires every retiring key that no value references any more; returns how many. */
  retireUnreferenced(): Promise<number>;
}

export interface DeveloperKeyRotationDeps {
  db: Db;
  dataKeys: DataKeys;
  cache: SecretCache;
  /** Values per re-encryption batch (SECRETS_KEY_JOB_BATCH). */
  batchSize: number;
  /** Publishes an eviction of a developer's unwrapped keys to every replica (replica-coordination.ts). */
  publishEviction(developerId: string): Promise<number>;
  /** Runs the background work (re-encryption, retirement) soon. */
  startBackgroundPass(): void;
  report(what: string, e: unknown): void;
  onEvent?: (what: string, fields: Record<string, unknown>) => void;
}

/** A developer whose keys went (a shred) while background work for it was under way. */
class DeveloperGone extends Error {}

export function createDeveloperKeyRotation(deps: DeveloperKeyRotationDeps): DeveloperKeyRotation {
  const { db, dataKeys, cache } = deps;

  /** Re-encrypts one developer's rows under its active key; never creates a first key (DeveloperGone). */
  function reencryptOf(developerId: string, list: readonly keyStore.StaleCiphertextRow[]): Promise<number> {
    const reencrypt = async (tx: Queryable, dek: DataKey) => {
      let swapped = 0;
      for (const row of list) {
        const binding = { developerId, secretId: row.secretId, name: row.name, version: row.version };
        const old = await dataKeys.forRead(developerId, row.dekVersion);
        const plaintext = openValue(old, row.dekVersion, row.ciphertext, binding);
        try {
          const sealed = sealValue(dek.key, dek.version, plaintext, binding);
          if (await keyStore.swapCiphertext(tx, row, sealed, dek.version)) swapped += 1;
        } finally {
          plaintext.fill(0);
        }
      }
      return swapped;
    };
    const options = { encryptions: list.length, beforeFirstKey: () => Promise.reject(new DeveloperGone()) };
    return retryConflicts(() => dataKeys.withWriteKey(developerId, reencrypt, options));
  }

  return {
    async rotate(developerId) {
      const fresh = KeyBytes.random(32);
      try {
        const result = await retryConflicts(() =>
          db.transaction(async (tx) => {
            const active = await keyStore.lockActiveForRotation(tx, developerId);
            if (!active) throw new AppError("KEY_STATE", "this developer has no data key yet", {});
            const next = await dataKeys.wrapNew(tx, developerId, fresh);
            await keyStore.insertRotatedDataKey(tx, developerId, active.version, next.version, next.kekId, next.wrappedKey);
            return { newVersion: next.version, previousVersion: active.version };
          }),
        );
        deps.onEvent?.("data key rotated", { developer: developerId, ...result });
        deps.startBackgroundPass();
        return result;
      } finally {
        fresh.zeroize();
      }
    },

    async reencryptBatch() {
      const rows = await keyStore.ciphertextsUnderRetiringKeys(db, deps.batchSize);
      const byDeveloper = new Map<string, keyStore.StaleCiphertextRow[]>();
      for (const row of rows) byDeveloper.set(row.developerId, [...(byDeveloper.get(row.developerId) ?? []), row]);
      let done = 0;
      for (const [developerId, list] of byDeveloper) {
        try {
          done += await reencryptOf(developerId, list);
        } catch (e) {
          // Shredded since the rows were read: nothing of it is left to re-encrypt.
          if (!(e instanceof DeveloperGone) && !(e instanceof DataKeyUnavailable)) throw e;
        }
      }
      return done;
    },

    async retireUnreferenced() {
      let retired = 0;
      for (const key of await keyStore.retiringDataKeys(db)) {
        const done = await retryConflicts(() => db.transaction((tx) => keyStore.retireIfUnreferenced(tx, key.developerId, key.version)));
        if (!done) continue;
        retired += 1;
        deps.onEvent?.("data key retired", { developer: key.developerId, version: key.version });
        await deps.publishEviction(key.developerId);
        await cache.evictDeveloper(key.developerId).catch((e: unknown) => deps.report("retired key: cache clean-up", e));
      }
      return retired;
    },
  };
}
