import { durationMs, timestampDate, type Timestamp } from "@bufbuild/protobuf/wkt";
import {
  VersionState as ProtoVersionState,
  type Rotation as ProtoRotation,
  type Secret as ProtoSecret,
  type SecretVersion as ProtoSecretVersion,
} from "./gen/secrets/v1/secrets_pb.js";
import { status } from "@grpc/grpc-js";
import { clientFailure } from "./errors.js";
import type { JsonObject, Rotation, Secret, SecretVersion, VersionState } from "./types.js";

/**
 * Generated messages → the SDK's plain objects. Kept apart so that the client
 * reads as a list of calls and no protobuf type leaks into the public API.
 */

/** A generated Secret as a plain object. */
export function secretOf(message: ProtoSecret | undefined): Secret {
  if (!message) throw clientFailure(status.INTERNAL, "CLIENT_INTERNAL", "the service answered without a secret");
  return {
    id: message.id,
    name: message.name,
    description: message.description,
    // protobuf-es gives google.protobuf.Struct as a JSON object already.
    metadata: (message.metadata ?? {}) as JsonObject,
    version: message.version,
    createdAt: dateOf(message.createdAt),
    updatedAt: dateOf(message.updatedAt),
    createdBy: message.createdBy,
    updatedBy: message.updatedBy,
    // Present only when set, so a secret without them prints and compares as before.
    ...optionalDate("expireTime", message.expireTime),
    ...(message.rotation ? { rotation: rotationOf(message.rotation) } : {}),
    ...optionalDate("deleteTime", message.deleteTime),
    ...optionalDate("purgeTime", message.purgeTime),
  };
}

function rotationOf(message: ProtoRotation): Rotation {
  return {
    nextRotationTime: dateOf(message.nextRotationTime),
    periodSeconds: message.rotationPeriod ? durationMs(message.rotationPeriod) / 1_000 : 0,
    ...optionalDate("dueTime", message.dueTime),
  };
}

/** `{ [key]: Date }` when the timestamp is set, else `{}`. */
function optionalDate<K extends string>(key: K, timestamp: Timestamp | undefined): { [P in K]?: Date } {
  return (timestamp ? { [key]: timestampDate(timestamp) } : {}) as { [P in K]?: Date };
}

/** A generated SecretVersion as a plain object. */
export function versionOf(message: ProtoSecretVersion | undefined): SecretVersion {
  if (!message) throw clientFailure(status.INTERNAL, "CLIENT_INTERNAL", "the service answered without a version");
  return {
    version: message.version,
    state: stateOf(message.state),
    createdAt: dateOf(message.createdAt),
    createdBy: message.createdBy,
  };
}

function stateOf(state: ProtoVersionState): VersionState {
  switch (state) {
    case ProtoVersionState.ENABLED:
      return "enabled";
    case ProtoVersionState.DESTROYED:
      return "destroyed";
    default:
      throw clientFailure(status.INTERNAL, "CLIENT_INTERNAL", `the service sent an unknown version state (${state})`);
  }
}

/**
 * A 64-bit count or id as a number. Counts of keys, versions and events stay far
 * below 2^53, where a number is exact; a plain number is what callers print and compare.
 */
export function countOf(value: bigint): number {
  return Number(value);
}

/** A timestamp as a Date (the epoch when the service left it out). */
export function dateOf(timestamp: Timestamp | undefined): Date {
  return timestamp ? timestampDate(timestamp) : new Date(0);
}
