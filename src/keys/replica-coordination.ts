import type { KeyProvider } from "../crypto/key-provider.js";
import { AppError } from "../api/errors.js";
import type { Db } from "../store/db.js";
import { activeMasterKey } from "../store/master-key-store.js";
import * as replicaStore from "../store/replica-store.js";
import type { DataKeys } from "./data-keys.js";

/**
 * What one replica does to stay in step with the others (docs/design.md,
 * Evictions): it heartbeats with the ids of the master keys it holds, so a master
 * key rotation can tell that every live replica holds the new key; and it applies
 * every eviction of unwrapped data keys that another replica published (a shred, a
 * retired key) and acknowledges it, so a shred can wait until every live replica
 * has dropped the developer's keys.
 */
export interface ReplicaCoordination {
  /** Records this replica as live, and reads the active master key (sawActiveMasterKey). */
  heartbeat(): Promise<void>;
  /** Acknowledges every eviction published so far: a replica starting holds no unwrapped key yet. */
  acknowledgeAll(): Promise<void>;
  /** Drops the unwrapped keys of every eviction this replica has not acknowledged, and acknowledges them. */
  applyEvictions(): Promise<void>;
  /** Publishes an eviction of a developer's unwrapped keys and applies it here at once; returns its id. */
  publishEviction(developerId: string): Promise<number>;
  /** Waits until every live replica acknowledged eviction `id`; returns how many did. */
  awaitAcknowledgements(id: number): Promise<number>;
  /** Deregisters this replica. */
  remove(): Promise<void>;
}

export interface ReplicaCoordinationDeps {
  db: Db;
  keyProvider: KeyProvider;
  dataKeys: DataKeys;
  replicaId: string;
  /** Told the active master key each time a heartbeat reads it from the database. */
  sawActiveMasterKey(kekId: string): void;
  /** How long awaitAcknowledgements waits before BACKEND_UNAVAILABLE (default 10 s). */
  evictionWaitMs?: number;
}

export function createReplicaCoordination(deps: ReplicaCoordinationDeps): ReplicaCoordination {
  const { db, keyProvider, dataKeys, replicaId } = deps;
  let beats = 0;

  return {
    async heartbeat() {
      await replicaStore.heartbeat(db, replicaId, keyProvider.keyIds());
      deps.sawActiveMasterKey(await activeMasterKey(db));
      // Now and then, forget evictions every replica applied long ago (the DEK cache TTL is minutes).
      if (beats++ % 100 === 0) await replicaStore.pruneEvictions(db, 3_600);
    },

    acknowledgeAll: () => replicaStore.acknowledgeAllEvictions(db, replicaId),

    /**
     * Not a cursor over ids: ids are handed out before commit, so an eviction can
     * become visible after one with a higher id, and "after the last id seen" would
     * skip it.
     */
    async applyEvictions() {
      const evictions = await replicaStore.unacknowledgedEvictions(db, replicaId);
      if (evictions.length === 0) return;
      for (const e of evictions) dataKeys.evict(e.developerId);
      await replicaStore.acknowledgeEvictions(db, replicaId, evictions.map((e) => e.id));
    },

    async publishEviction(developerId) {
      dataKeys.evict(developerId);
      const id = await replicaStore.publishEviction(db, developerId);
      await replicaStore.acknowledgeEvictions(db, replicaId, [id]);
      return id;
    },

    async awaitAcknowledgements(id) {
      const deadline = Date.now() + (deps.evictionWaitMs ?? 10_000);
      for (;;) {
        const missing = await replicaStore.replicasMissingAck(db, id);
        if (missing.length === 0) break;
        if (Date.now() > deadline) {
          throw new AppError("BACKEND_UNAVAILABLE", "not every live replica confirmed the key eviction in time; the shred itself is done", {
            replicas: missing.join(","),
          });
        }
        await new Promise((r) => setTimeout(r, 100));
      }
      return replicaStore.countAcknowledgements(db, id);
    },

    remove: () => replicaStore.removeReplica(db, replicaId),
  };
}
