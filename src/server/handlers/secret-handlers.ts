import { durationFromMs, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import {
  SecretService as SecretServiceDesc,
  VersionState,
  WatchEventType,
  type CreateSecretRequest,
  type Rotation,
  type SecretSchema,
  type SecretVersionSchema,
  type UpdateSecretRequest,
  type WatchSecretsResponseSchema,
} from "../../api/gen/secrets/v1/secrets_pb.js";
import type { Secret, SecretService, SecretVersion, WatchBatch, WatchEvent, WatchOutput } from "../../secrets/secret-service.js";
import type { ExpiryInput, JsonObject, RotationInput } from "../../secrets/validation.js";
import { principalOf } from "../interceptors/call-state.js";
import type { ServerStream, ServiceImpl } from "../grpc-adapter.js";
import { encodeAccessSecretResponse, encodeResolveSecretsResponse } from "../wire-encoders.js";

/**
 * SecretService handlers: translate proto ↔ domain and nothing more. Authorization,
 * validation and storage live in the use cases; errors are mapped by status.ts.
 */
export function secretHandlers(service: SecretService): ServiceImpl<typeof SecretServiceDesc> {
  return {
    async createSecret(req, ctx) {
      const secret = await service.createSecret(principalOf(ctx.metadata), {
        name: req.name,
        value: req.value,
        description: req.description,
        metadata: req.metadata as JsonObject | undefined,
        ...(req.expiration.case === undefined ? {} : { expiry: expiryOf(req.expiration) }),
        ...(req.rotation ? { rotation: rotationOf(req.rotation) } : {}),
      });
      return { secret: secretMessage(secret) };
    },

    async getSecret(req, ctx) {
      return { secret: secretMessage(await service.getSecret(principalOf(ctx.metadata), req.name)) };
    },

    async listSecrets(req, ctx) {
      const page = await service.listSecrets(principalOf(ctx.metadata), {
        pageSize: req.pageSize,
        pageToken: req.pageToken,
        namePrefix: req.namePrefix,
        metadataFilter: req.metadataFilter as JsonObject | undefined,
        showDeleted: req.showDeleted,
        ...(req.expiresBefore ? { expiresBefore: req.expiresBefore } : {}),
        rotationDue: req.rotationDue,
      });
      return { secrets: page.items.map(secretMessage), nextPageToken: page.nextPageToken };
    },

    async updateSecret(req, ctx) {
      const secret = await service.updateSecret(principalOf(ctx.metadata), {
        name: req.name,
        value: req.value,
        description: req.description,
        metadata: req.metadata as JsonObject | undefined,
        expectedVersion: req.expectedVersion,
        ...(req.expiration.case === undefined ? {} : { expiry: updatedExpiryOf(req.expiration) }),
        ...(req.rotationChange.case === undefined ? {} : { rotation: updatedRotationOf(req.rotationChange) }),
      });
      return { secret: secretMessage(secret) };
    },

    async deleteSecret(req, ctx) {
      await service.deleteSecret(principalOf(ctx.metadata), req.name, req.expectedVersion, {
        recoveryWindowDays: req.recoveryWindowDays,
        force: req.force,
      });
      return {};
    },

    async restoreSecret(req, ctx) {
      return { secret: secretMessage(await service.restoreSecret(principalOf(ctx.metadata), { name: req.name, id: req.id })) };
    },

    async accessSecret(req, ctx) {
      const { name, version, value } = await service.accessSecret(principalOf(ctx.metadata), req.name, req.version);
      return encodeAccessSecretResponse(name, version, value);
    },

    async listSecretVersions(req, ctx) {
      const page = await service.listSecretVersions(principalOf(ctx.metadata), req.name, req.pageSize, req.pageToken);
      return { versions: page.items.map(versionMessage), nextPageToken: page.nextPageToken };
    },

    async destroySecretVersion(req, ctx) {
      return { version: versionMessage(await service.destroySecretVersion(principalOf(ctx.metadata), req.name, req.version)) };
    },

    async resolveSecrets(req, ctx) {
      return encodeResolveSecretsResponse(await service.resolveSecrets(principalOf(ctx.metadata), req.names));
    },

    watchSecrets(req, ctx, stream) {
      const input = { names: req.names, namePrefix: req.namePrefix, startRevision: req.startRevision };
      const watch = service.watchSecrets(principalOf(ctx.metadata), input, new WatchResponses(stream));
      stream.onCancel(() => watch.close());
    },
  };
}

/** A watch's responses, as WatchSecrets messages on its call's stream (one object per watch, no closures). */
class WatchResponses implements WatchOutput {
  constructor(private readonly stream: ServerStream<typeof WatchSecretsResponseSchema>) {}

  send(batch: WatchBatch): boolean {
    return this.stream.send(watchResponse(batch));
  }

  drained(): Promise<void> {
    return this.stream.drained();
  }

  fail(error: unknown): void {
    this.stream.fail(error);
  }
}

function watchResponse(batch: WatchBatch): MessageInitShape<typeof WatchSecretsResponseSchema> {
  return {
    ...(batch.snapshot ? { snapshot: { secrets: batch.snapshot } } : {}),
    events: batch.events.map((e) => ({
      type: EVENT_TYPE[e.type],
      name: e.name,
      version: e.version,
      revision: BigInt(e.revision),
      time: timestampFromDate(e.time),
    })),
    revision: BigInt(batch.revision),
    ...(batch.progressIntervalMs === undefined ? {} : { progressInterval: durationFromMs(batch.progressIntervalMs) }),
  };
}

const EVENT_TYPE: Record<WatchEvent["type"], WatchEventType> = {
  created: WatchEventType.CREATED,
  updated: WatchEventType.UPDATED,
  deleted: WatchEventType.DELETED,
  versionDestroyed: WatchEventType.VERSION_DESTROYED,
  rotationDue: WatchEventType.ROTATION_DUE,
};

function secretMessage(s: Secret): MessageInitShape<typeof SecretSchema> {
  return {
    id: s.id,
    name: s.name,
    description: s.description,
    metadata: s.metadata,
    version: s.version,
    createdAt: timestampFromDate(s.createdAt),
    updatedAt: timestampFromDate(s.updatedAt),
    createdBy: s.createdBy,
    updatedBy: s.updatedBy,
    ...(s.deleteTime && s.purgeTime
      ? { deleteTime: timestampFromDate(s.deleteTime), purgeTime: timestampFromDate(s.purgeTime) }
      : {}),
    ...(s.expireTime ? { expireTime: timestampFromDate(s.expireTime) } : {}),
    ...(s.rotation
      ? {
          rotation: {
            nextRotationTime: timestampFromDate(s.rotation.nextRotationTime),
            rotationPeriod: durationFromMs(s.rotation.periodSeconds * 1000),
            ...(s.rotation.dueTime ? { dueTime: timestampFromDate(s.rotation.dueTime) } : {}),
          },
        }
      : {}),
  };
}

function expiryOf(e: Exclude<CreateSecretRequest["expiration"], { case: undefined }>): Exclude<ExpiryInput, { clear: boolean }> {
  return e.case === "expireTime" ? { expireTime: e.value } : { ttl: e.value };
}

function updatedExpiryOf(e: Exclude<UpdateSecretRequest["expiration"], { case: undefined }>): ExpiryInput {
  return e.case === "clearExpiration" ? { clear: e.value } : expiryOf(e);
}

function rotationOf(r: Rotation): RotationInput {
  return { nextRotationTime: r.nextRotationTime, rotationPeriod: r.rotationPeriod };
}

function updatedRotationOf(c: Exclude<UpdateSecretRequest["rotationChange"], { case: undefined }>): RotationInput | { clear: boolean } {
  return c.case === "rotation" ? rotationOf(c.value) : { clear: c.value };
}

const STATE: Record<SecretVersion["state"], VersionState> = {
  enabled: VersionState.ENABLED,
  destroyed: VersionState.DESTROYED,
};

function versionMessage(v: SecretVersion): MessageInitShape<typeof SecretVersionSchema> {
  return { version: v.version, state: STATE[v.state], createdAt: timestampFromDate(v.createdAt), createdBy: v.createdBy };
}
