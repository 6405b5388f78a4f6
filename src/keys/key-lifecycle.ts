import { SUBJECT_PATTERN, type Principal } from "../auth/principal.js";
import type { SecretCache } from "../cache/secret-cache.js";
import type { KeyProvider } from "../crypto/key-provider.js";
import { invalid } from "../api/errors.js";
import type { Db } from "../store/db.js";
import * as keyStore from "../store/key-store.js";
import * as masterKeyStore from "../store/master-key-store.js";
import * as replicaStore from "../store/replica-store.js";
import { requireScope } from "../auth/authorize.js";
import type { DataKeys } from "./data-keys.js";
import { createDeveloperKeyRotation } from "./developer-key-rotation.js";
import { createDeveloperShred, type ShredResult } from "./developer-shred.js";
import { createMasterKeyRotation } from "./master-key-rotation.js";
import { createReplicaCoordination } from "./replica-coordination.js";

/**
 * The key lifecycle, run while the service serves traffic (docs/design.md, Key
 * lifecycle): the KeyService use cases, which authorize and validate here, and the
 * background loops that carry the work on. The mechanisms live beside it:
 *
 * - master key rotation and the rewrap of data keys (master-key-rotation.ts);
 * - developer key rotation, re-encryption and retirement (developer-key-rotation.ts);
 * - shredding a developer (developer-shred.ts);
 * - this replica's heartbeat and the evictions every replica applies
 *   (replica-coordination.ts).
 *
 * All progress lives in the database, so work interrupted by a crash resumes when
 * any replica runs again. The active master key is read from Postgres wherever it
 * decides something (a rewrap's target, a new key's wrapping, GetKeyStatus), never
 * from a replica's memory. The row locks these take follow the order written in
 * store/key-store.ts.
 */

export type { ShredResult } from "./developer-shred.js";

export interface KeyStatus {
  activeMasterKeyId: string;
  dataKeysPerMasterKey: Map<string, number>;
  dataKeysToRewrap: number;
  versionsToReencrypt: number;
  replicas: replicaStore.ReplicaRow[];
  dataKeys: keyStore.DataKeyInfoRow[];
  /** This replica's master keys and the provider holding each (operators only). */
  masterKeys: { keyId: string; provider: string }[];
}

export interface KeyLifecycle {
  rotateMasterKey(p: Principal, keyId: string): Promise<{ activeKeyId: string; previousKeyId: string; dataKeysToRewrap: number }>;
  rotateDeveloperKey(
    p: Principal,
    developerId: string,
  ): Promise<{ developerId: string; newVersion: number; previousVersion: number; versionsToReencrypt: number }>;
  shredDeveloper(p: Principal, developerId: string, confirmDeveloperId: string): Promise<ShredResult>;
  getKeyStatus(p: Principal, developerId: string): Promise<KeyStatus>;
  /** The active master key as this replica last read it (for logs; decisions read the database). */
  activeKekId(): string;
  /** Starts a rotation of a developer's data key without a caller (encryption limit reached). */
  rotateInBackground(developerId: string): void;
  /** Background work not done yet, for the metrics: data keys to rewrap, versions to re-encrypt. */
  pendingJobs(): Promise<{ rewrap: number; reencrypt: number }>;
  /** Registers this replica (heartbeat) and starts the background loops. */
  start(): Promise<void>;
  /** Stops the loops and deregisters this replica. */
  stop(): Promise<void>;
  /** One pass of the background work (rewrap, re-encrypt, retire); returns how much it did. */
  runBackgroundPass(): Promise<{ rewrapped: number; reencrypted: number; retired: number }>;
}

export interface KeyLifecycleDeps {
  db: Db;
  keyProvider: KeyProvider;
  dataKeys: DataKeys;
  cache: SecretCache;
  replicaId: string;
  initialActiveKekId: string;
  /** Rows per background batch, and a pause between batches to bound the load (SECRETS_KEY_JOB_*). */
  batchSize: number;
  pauseMs: number;
  heartbeatMs?: number;
  evictionPollMs?: number;
  backgroundMs?: number;
  /** How long ShredDeveloper waits for every live replica to confirm the eviction. */
  evictionWaitMs?: number;
  onError?: (what: string, e: unknown) => void;
  onEvent?: (what: string, fields: Record<string, unknown>) => void;
}

export function createKeyLifecycle(deps: KeyLifecycleDeps): KeyLifecycle {
  const { db, keyProvider, dataKeys, cache, replicaId } = deps;
  let activeKekId = deps.initialActiveKekId;
  let running = false;
  const timers = new Set<NodeJS.Timeout>();
  let backgroundBusy: Promise<unknown> | undefined;
  let backgroundAgain = false;
  const rotating = new Set<string>();

  const report = (what: string, e: unknown) => deps.onError?.(what, e);
  const pause = () => (deps.pauseMs > 0 ? new Promise((r) => setTimeout(r, deps.pauseMs)) : Promise.resolve());
  const sawActiveMasterKey = (kekId: string) => {
    activeKekId = kekId;
  };

  const replicas = createReplicaCoordination({
    db,
    keyProvider,
    dataKeys,
    replicaId,
    sawActiveMasterKey,
    evictionWaitMs: deps.evictionWaitMs,
  });
  const masterKeys = createMasterKeyRotation({
    db,
    keyProvider,
    replicaId,
    batchSize: deps.batchSize,
    heartbeat: replicas.heartbeat,
    sawActiveMasterKey,
  });
  const developerKeys = createDeveloperKeyRotation({
    db,
    dataKeys,
    cache,
    batchSize: deps.batchSize,
    publishEviction: replicas.publishEviction,
    startBackgroundPass: kick,
    report,
    onEvent: deps.onEvent,
  });
  const shred = createDeveloperShred({
    db,
    cache,
    publishEviction: replicas.publishEviction,
    awaitAcknowledgements: replicas.awaitAcknowledgements,
    report,
    onEvent: deps.onEvent,
  });

  function every(ms: number, fn: () => Promise<unknown>, what: string): void {
    const tick = () => {
      if (!running) return;
      fn()
        .catch((e: unknown) => report(what, e))
        .finally(() => {
          if (!running) return;
          const t = setTimeout(() => {
            timers.delete(t);
            tick();
          }, ms);
          t.unref();
          timers.add(t);
        });
    };
    tick();
  }

  async function backgroundPass(): Promise<{ rewrapped: number; reencrypted: number; retired: number }> {
    let rewrapped = 0;
    let reencrypted = 0;
    for (let n = await masterKeys.rewrapBatch(); n > 0; n = await masterKeys.rewrapBatch()) {
      rewrapped += n;
      await pause();
    }
    for (let n = await developerKeys.reencryptBatch(); n > 0; n = await developerKeys.reencryptBatch()) {
      reencrypted += n;
      await pause();
    }
    const retired = await developerKeys.retireUnreferenced();
    if (rewrapped + reencrypted + retired > 0) deps.onEvent?.("key job pass", { rewrapped, reencrypted, retired });
    return { rewrapped, reencrypted, retired };
  }

  /** Runs a background pass now (or right after the running one). */
  function kick(): void {
    if (backgroundBusy) {
      backgroundAgain = true;
      return;
    }
    backgroundBusy = backgroundPass()
      .catch((e: unknown) => report("key job", e))
      .finally(() => {
        backgroundBusy = undefined;
        if (backgroundAgain && running) {
          backgroundAgain = false;
          kick();
        }
      });
  }

  /**
   * The developer a key call is about: empty means the caller. The scope is checked
   * before the id is validated (the order of docs/api.md, Tokens): one's own needs `ownScope`,
   * anyone else's needs operator.
   */
  function authorizeDeveloper(p: Principal, developerId: string, ownScope: "secrets:keys" | "secrets:operator"): string {
    const target = developerId === "" ? p.developerId : developerId;
    if (target === p.developerId && !p.scopes.has("secrets:operator")) requireScope(p, ownScope);
    else requireScope(p, "secrets:operator");
    if (!SUBJECT_PATTERN.test(target)) throw invalid("INVALID_ARGUMENT", "developer_id", "developer_id is malformed");
    return target;
  }

  const lifecycle: KeyLifecycle = {
    activeKekId: () => activeKekId,

    async rotateMasterKey(p, keyId) {
      requireScope(p, "secrets:operator");
      const previousKeyId = await masterKeys.activate(keyId);
      activeKekId = keyId;
      deps.onEvent?.("master key activated", { keyId, previousKeyId });
      kick();
      return { activeKeyId: keyId, previousKeyId, dataKeysToRewrap: await masterKeyStore.countDataKeysToRewrap(db, keyId) };
    },

    async rotateDeveloperKey(p, rawDeveloperId) {
      const developerId = authorizeDeveloper(p, rawDeveloperId, "secrets:keys");
      const r = await developerKeys.rotate(developerId);
      return { developerId, ...r, versionsToReencrypt: await keyStore.countCiphertextsToReencrypt(db, developerId) };
    },

    async shredDeveloper(p, rawDeveloperId, confirm) {
      requireScope(p, "secrets:operator");
      if (rawDeveloperId === "") throw invalid("INVALID_ARGUMENT", "developer_id", "developer_id is required");
      const developerId = authorizeDeveloper(p, rawDeveloperId, "secrets:operator");
      if (confirm !== developerId) {
        throw invalid("INVALID_ARGUMENT", "confirm_developer_id", "confirm_developer_id must repeat developer_id");
      }
      return shred(developerId);
    },

    async getKeyStatus(p, rawDeveloperId) {
      const operator = p.scopes.has("secrets:operator");
      const developerId = authorizeDeveloper(p, rawDeveloperId, "secrets:keys");
      const own = !operator || rawDeveloperId !== "";
      const perKek = operator ? await masterKeyStore.dataKeysPerMasterKey(db) : new Map<string, number>();
      // From the database, so every replica answers alike from the moment a rotation is recorded.
      const active = operator ? await masterKeyStore.activeMasterKey(db) : "";
      return {
        activeMasterKeyId: active,
        dataKeysPerMasterKey: perKek,
        dataKeysToRewrap: operator ? await masterKeyStore.countDataKeysToRewrap(db, active) : 0,
        versionsToReencrypt: await keyStore.countCiphertextsToReencrypt(db, operator && rawDeveloperId === "" ? undefined : developerId),
        replicas: operator ? await replicaStore.liveReplicas(db) : [],
        dataKeys: own ? await keyStore.dataKeyInfos(db, developerId) : [],
        masterKeys: operator ? keyProvider.keyIds().map((keyId) => ({ keyId, provider: keyProvider.describe(keyId)?.provider ?? "" })) : [],
      };
    },

    async pendingJobs() {
      return {
        rewrap: await masterKeyStore.countDataKeysToRewrap(db, await masterKeyStore.activeMasterKey(db)),
        reencrypt: await keyStore.countCiphertextsToReencrypt(db),
      };
    },

    rotateInBackground(developerId) {
      if (rotating.has(developerId)) return;
      rotating.add(developerId);
      developerKeys
        .rotate(developerId)
        .catch((e: unknown) => report("automatic data key rotation", e))
        .finally(() => rotating.delete(developerId));
    },

    async start() {
      await replicas.heartbeat();
      // This replica holds no unwrapped key yet: the evictions published so far are moot for it.
      await replicas.acknowledgeAll();
      running = true;
      every(deps.heartbeatMs ?? 5_000, replicas.heartbeat, "heartbeat");
      every(deps.evictionPollMs ?? 500, replicas.applyEvictions, "key evictions");
      every(deps.backgroundMs ?? 5_000, async () => kick(), "key jobs");
    },

    async stop() {
      running = false;
      for (const t of timers) clearTimeout(t);
      timers.clear();
      await backgroundBusy;
      await replicas.remove().catch((e: unknown) => report("deregister replica", e));
    },

    runBackgroundPass: backgroundPass,
  };
  // A developer's key past its encryption limit is rotated without a caller.
  dataKeys.onRotationDue((developerId) => lifecycle.rotateInBackground(developerId));
  return lifecycle;
}
