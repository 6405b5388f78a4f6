import type { MessageInitShape } from "@bufbuild/protobuf";
import { timestampFromDate, type DurationSchema, type Timestamp } from "@bufbuild/protobuf/wkt";
import { status } from "@grpc/grpc-js";
import { clientFailure } from "./errors.js";
import type {
  CreateSecretRequestSchema,
  DeleteSecretRequestSchema,
  ListSecretsRequestSchema,
  RestoreSecretRequestSchema,
  RotationSchema,
  UpdateSecretRequestSchema,
} from "./gen/secrets/v1/secrets_pb.js";
import type {
  CreateSecretInput,
  DeleteSecretInput,
  ListSecretsOptions,
  RestoreTarget,
  RotationInput,
  UpdateSecretInput,
} from "./types.js";

/**
 * The SDK's plain inputs → generated request shapes: the mirror of convert.ts.
 * Ranges (an expiry in the past, a period under an hour) are the service's to
 * check, so its INVALID_ARGUMENT with the field is what a caller sees. What no
 * request can carry fails here as a request that could not be encoded
 * (INVALID_ARGUMENT, REQUEST_UNENCODABLE), as the transport reports other such
 * fields: two members of one oneof, an invalid Date, a non-finite number of seconds.
 */

/** CreateSecret's request. */
export function createRequest(input: CreateSecretInput): MessageInitShape<typeof CreateSecretRequestSchema> {
  return {
    name: input.name,
    value: input.value,
    description: input.description ?? "",
    metadata: input.metadata,
    expiration: expirationOf(input.expireTime, input.ttlSeconds),
    rotation: input.rotation === undefined ? undefined : rotationOf(input.rotation),
  };
}

/** UpdateSecret's request: a field left out (undefined) is left as it is; `null` clears. */
export function updateRequest(name: string, input: UpdateSecretInput): MessageInitShape<typeof UpdateSecretRequestSchema> {
  const expiration =
    input.expireTime === null
      ? input.ttlSeconds === undefined
        ? ({ case: "clearExpiration", value: true } as const)
        : exclusive()
      : expirationOf(input.expireTime, input.ttlSeconds);
  return {
    name,
    value: input.value,
    description: input.description,
    metadata: input.metadata,
    expectedVersion: input.expectedVersion ?? 0,
    expiration,
    rotationChange:
      input.rotation === undefined
        ? { case: undefined }
        : input.rotation === null
          ? { case: "clearRotation", value: true }
          : { case: "rotation", value: rotationOf(input.rotation) },
  };
}

/** DeleteSecret's request; `force` with a window is the service's to refuse. */
export function deleteRequest(name: string, input: DeleteSecretInput): MessageInitShape<typeof DeleteSecretRequestSchema> {
  return { name, expectedVersion: input.expectedVersion ?? 0, force: input.force ?? false, recoveryWindowDays: input.recoveryWindowDays ?? 0 };
}

/** RestoreSecret's request; exactly one of name and id is the service's rule to enforce. */
export function restoreRequest(target: RestoreTarget): MessageInitShape<typeof RestoreSecretRequestSchema> {
  return { name: target.name ?? "", id: target.id ?? "" };
}

/** ListSecrets' request for the page at `pageToken`. */
export function listRequest(filter: ListSecretsOptions, pageToken: string): MessageInitShape<typeof ListSecretsRequestSchema> {
  return {
    pageToken,
    pageSize: filter.pageSize ?? 0,
    namePrefix: filter.namePrefix ?? "",
    metadataFilter: filter.metadataFilter,
    showDeleted: filter.deleted ?? false,
    expiresBefore: filter.expiresBefore === undefined ? undefined : timestampOf(filter.expiresBefore, "expiresBefore"),
    rotationDue: filter.rotationDue ?? false,
  };
}

function expirationOf(expireTime: Date | undefined, ttlSeconds: number | undefined) {
  if (expireTime !== undefined && ttlSeconds !== undefined) return exclusive();
  if (expireTime !== undefined) return { case: "expireTime", value: timestampOf(expireTime, "expireTime") } as const;
  if (ttlSeconds !== undefined) return { case: "ttl", value: durationOf(ttlSeconds, "ttlSeconds") } as const;
  return { case: undefined };
}

function rotationOf(rotation: RotationInput): MessageInitShape<typeof RotationSchema> {
  return {
    rotationPeriod: durationOf(rotation.periodSeconds, "rotation.periodSeconds"),
    nextRotationTime: rotation.nextRotationTime === undefined ? undefined : timestampOf(rotation.nextRotationTime, "rotation.nextRotationTime"),
  };
}

function exclusive(): never {
  throw unencodable("expireTime and ttlSeconds", "are two ways to set one expiry: give at most one");
}

function timestampOf(date: Date, field: string): Timestamp {
  if (!(date instanceof Date) || Number.isNaN(date.getTime())) throw unencodable(field, "is not a valid Date");
  return timestampFromDate(date);
}

/** Seconds as a Duration: whole seconds, and nanoseconds for a fraction (which the service may refuse). */
function durationOf(seconds: number, field: string): MessageInitShape<typeof DurationSchema> {
  if (typeof seconds !== "number" || !Number.isFinite(seconds)) throw unencodable(field, "is not a finite number of seconds");
  const whole = Math.trunc(seconds);
  return { seconds: BigInt(whole), nanos: Math.round((seconds - whole) * 1e9) };
}

function unencodable(field: string, problem: string) {
  return clientFailure(status.INVALID_ARGUMENT, "REQUEST_UNENCODABLE", `${field} ${problem}`);
}
