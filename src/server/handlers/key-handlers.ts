import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { DataKeyState, KeyService as KeyServiceDesc } from "../../api/gen/secrets/v1/keys_pb.js";
import type { KeyLifecycle } from "../../keys/key-lifecycle.js";
import { principalOf } from "../interceptors/call-state.js";
import type { ServiceImpl } from "../grpc-adapter.js";

const STATE: Record<"active" | "retiring" | "retired", DataKeyState> = {
  active: DataKeyState.ACTIVE,
  retiring: DataKeyState.RETIRING,
  retired: DataKeyState.RETIRED,
};

/** KeyService handlers: proto ↔ domain only; authorization and the work live in KeyLifecycle. */
export function keyHandlers(keys: KeyLifecycle): ServiceImpl<typeof KeyServiceDesc> {
  return {
    async rotateMasterKey(req, ctx) {
      const r = await keys.rotateMasterKey(principalOf(ctx.metadata), req.keyId);
      return { activeKeyId: r.activeKeyId, previousKeyId: r.previousKeyId, dataKeysToRewrap: BigInt(r.dataKeysToRewrap) };
    },
    async rotateDeveloperKey(req, ctx) {
      const r = await keys.rotateDeveloperKey(principalOf(ctx.metadata), req.developerId);
      return { ...r, versionsToReencrypt: BigInt(r.versionsToReencrypt) };
    },
    async shredDeveloper(req, ctx) {
      const r = await keys.shredDeveloper(principalOf(ctx.metadata), req.developerId, req.confirmDeveloperId);
      return {
        developerId: r.developerId,
        secretsDeleted: BigInt(r.secretsDeleted),
        versionsDeleted: BigInt(r.versionsDeleted),
        dataKeysDeleted: BigInt(r.dataKeysDeleted),
        replicasEvicted: r.replicasEvicted,
        cacheEntriesDeleted: BigInt(r.cacheEntriesDeleted),
        cacheCleanupFailed: r.cacheCleanupFailed,
      };
    },
    async getKeyStatus(req, ctx) {
      const s = await keys.getKeyStatus(principalOf(ctx.metadata), req.developerId);
      return {
        activeMasterKeyId: s.activeMasterKeyId,
        dataKeysPerMasterKey: Object.fromEntries([...s.dataKeysPerMasterKey].map(([k, n]) => [k, BigInt(n)])),
        dataKeysToRewrap: BigInt(s.dataKeysToRewrap),
        versionsToReencrypt: BigInt(s.versionsToReencrypt),
        replicas: s.replicas.map((r) => ({ id: r.id, keyIds: r.keyIds, lastHeartbeat: timestampFromDate(r.heartbeatAt) })),
        dataKeys: s.dataKeys.map((k) => ({
          developerId: k.developerId,
          version: k.version,
          state: STATE[k.state],
          masterKeyId: k.kekId,
          encryptionCount: BigInt(k.encryptionCount),
          secretVersions: BigInt(k.secretVersions),
          createdAt: timestampFromDate(k.createdAt),
        })),
        masterKeys: s.masterKeys,
      };
    },
  };
}
