import { DataKeyState as ProtoDataKeyState, KeyService, type DataKeyInfo as ProtoDataKeyInfo } from "./gen/secrets/v1/keys_pb.js";
import type { CallOptions } from "./types.js";
import { countOf, dateOf } from "./convert.js";
import type { UnaryCall } from "./unary-call.js";

/**
 * `secrets.v1.KeyService` as plain async functions: `client.keys`. Scopes are the
 * service's (docs/api.md, KeyService): `secrets:keys` for one's own data key and
 * status, `secrets:operator` for everything else. Only `status` reads, so only it is
 * retried on UNAVAILABLE; a rotation or a shred whose answer was lost may have
 * happened, and the caller decides (GetKeyStatus tells).
 */

/** A data key version's state. */
export type DataKeyState = "active" | "retiring" | "retired";

/** One version of a developer's data key (never the key itself). */
export interface DataKeyInfo {
  readonly developerId: string;
  readonly version: number;
  readonly state: DataKeyState;
  /** The master key it is wrapped under. */
  readonly masterKeyId: string;
  readonly encryptionCount: number;
  /** Secret versions whose ciphertext is under this data key. */
  readonly secretVersions: number;
  readonly createdAt: Date;
}

/** A live replica: one with a heartbeat younger than 30 s. */
export interface ReplicaInfo {
  readonly id: string;
  /** Master key ids in its keyring. */
  readonly keyIds: readonly string[];
  readonly lastHeartbeat: Date;
}

/** The key hierarchy as GetKeyStatus reports it; every count is present, zeros included. */
export interface KeyStatus {
  /** Empty for a `secrets:keys` caller. */
  readonly activeMasterKeyId: string;
  /** Live data keys per master key id; empty for a `secrets:keys` caller. */
  readonly dataKeysPerMasterKey: Readonly<Record<string, number>>;
  /** Data keys not yet rewrapped under the active master key (0: a master rotation is done). */
  readonly dataKeysToRewrap: number;
  /** Secret versions not yet re-encrypted under their developer's active data key. */
  readonly versionsToReencrypt: number;
  readonly replicas: readonly ReplicaInfo[];
  /** The data keys of the developer asked about (or the caller's); empty when an operator asks about everything. */
  readonly dataKeys: readonly DataKeyInfo[];
  /** The master keys of the replica that answered, with where each is held; empty for a `secrets:keys` caller. */
  readonly masterKeys: readonly MasterKeyInfo[];
}

/** A master key a replica holds, and its provider: "env" (the replica's memory) or "pkcs11" (an HSM token). */
export interface MasterKeyInfo {
  readonly keyId: string;
  readonly provider: string;
}

/** What RotateMasterKey answers. */
export interface MasterKeyRotation {
  readonly activeKeyId: string;
  readonly previousKeyId: string;
  /** Data keys still wrapped under other master keys when the call returned (rewrapped in the background). */
  readonly dataKeysToRewrap: number;
}

/** What RotateDeveloperKey answers. */
export interface DeveloperKeyRotation {
  readonly developerId: string;
  readonly newVersion: number;
  readonly previousVersion: number;
  /** Secret versions still under older data keys when the call returned (re-encrypted in the background). */
  readonly versionsToReencrypt: number;
}

/** What ShredDeveloper destroyed. */
export interface ShredResult {
  readonly developerId: string;
  readonly secretsDeleted: number;
  readonly versionsDeleted: number;
  readonly dataKeysDeleted: number;
  readonly cacheEntriesDeleted: number;
  /** Live replicas that confirmed the eviction of the developer's unwrapped keys. */
  readonly replicasEvicted: number;
  /** The cache clean-up failed; the shred is done and the entries left hold ciphertexts nobody can open. */
  readonly cacheCleanupFailed: boolean;
}

/** The calls of KeyService. */
export interface KeyApi {
  /** The key hierarchy: everything (operator), or one developer's data keys (`developerId`, or the caller's). */
  status(input?: { developerId?: string }, options?: CallOptions): Promise<KeyStatus>;
  /** Activates `keyId` once every live replica holds it (else FAILED_PRECONDITION, KEY_STATE). Operator. Never retried. */
  rotateMasterKey(keyId: string, options?: CallOptions): Promise<MasterKeyRotation>;
  /** A new data key version for `developerId` (default: the caller). Never retried. */
  rotateDeveloperKey(input?: { developerId?: string }, options?: CallOptions): Promise<DeveloperKeyRotation>;
  /**
   * Deletes a developer's secrets and data keys for good. `confirmDeveloperId` must
   * repeat `developerId`. A developer with nothing stored fails NOT_FOUND
   * (DEVELOPER_NOT_FOUND). Operator. Never retried.
   */
  shredDeveloper(input: { developerId: string; confirmDeveloperId: string }, options?: CallOptions): Promise<ShredResult>;
}

/** KeyService over `call`. */
export function createKeyApi(call: UnaryCall): KeyApi {
  const m = KeyService.method;
  return {
    async status(input = {}, options) {
      const r = await call(m.getKeyStatus, { developerId: input.developerId ?? "" }, true, options);
      return {
        activeMasterKeyId: r.activeMasterKeyId,
        dataKeysPerMasterKey: Object.fromEntries(Object.entries(r.dataKeysPerMasterKey).map(([id, n]) => [id, countOf(n)])),
        dataKeysToRewrap: countOf(r.dataKeysToRewrap),
        versionsToReencrypt: countOf(r.versionsToReencrypt),
        replicas: r.replicas.map((p) => ({ id: p.id, keyIds: [...p.keyIds], lastHeartbeat: dateOf(p.lastHeartbeat) })),
        dataKeys: r.dataKeys.map(dataKeyOf),
        masterKeys: r.masterKeys.map((k) => ({ keyId: k.keyId, provider: k.provider })),
      };
    },
    async rotateMasterKey(keyId, options) {
      const r = await call(m.rotateMasterKey, { keyId }, false, options);
      return { activeKeyId: r.activeKeyId, previousKeyId: r.previousKeyId, dataKeysToRewrap: countOf(r.dataKeysToRewrap) };
    },
    async rotateDeveloperKey(input = {}, options) {
      const r = await call(m.rotateDeveloperKey, { developerId: input.developerId ?? "" }, false, options);
      return {
        developerId: r.developerId,
        newVersion: r.newVersion,
        previousVersion: r.previousVersion,
        versionsToReencrypt: countOf(r.versionsToReencrypt),
      };
    },
    async shredDeveloper(input, options) {
      const r = await call(m.shredDeveloper, { developerId: input.developerId, confirmDeveloperId: input.confirmDeveloperId }, false, options);
      return {
        developerId: r.developerId,
        secretsDeleted: countOf(r.secretsDeleted),
        versionsDeleted: countOf(r.versionsDeleted),
        dataKeysDeleted: countOf(r.dataKeysDeleted),
        cacheEntriesDeleted: countOf(r.cacheEntriesDeleted),
        replicasEvicted: r.replicasEvicted,
        cacheCleanupFailed: r.cacheCleanupFailed,
      };
    },
  };
}

function dataKeyOf(k: ProtoDataKeyInfo): DataKeyInfo {
  return {
    developerId: k.developerId,
    version: k.version,
    state: stateOf(k.state),
    masterKeyId: k.masterKeyId,
    encryptionCount: countOf(k.encryptionCount),
    secretVersions: countOf(k.secretVersions),
    createdAt: dateOf(k.createdAt),
  };
}

function stateOf(state: ProtoDataKeyState): DataKeyState {
  switch (state) {
    case ProtoDataKeyState.ACTIVE:
      return "active";
    case ProtoDataKeyState.RETIRING:
      return "retiring";
    case ProtoDataKeyState.RETIRED:
      return "retired";
    default:
      throw new Error(`the service sent an unknown data key state (${state})`);
  }
}
