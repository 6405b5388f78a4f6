import * as grpc from "@grpc/grpc-js";
import { create, toBinary } from "@bufbuild/protobuf";
import { anyPack } from "@bufbuild/protobuf/wkt";
import { ErrorInfoSchema, RequestInfoSchema } from "../api/gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../api/gen/google/rpc/status_pb.js";
import { AppError, ERROR_DOMAIN, type ErrorKind } from "../api/errors.js";

/**
 * The one place an error becomes a gRPC status. Every status carries a
 * google.rpc.Status in `grpc-status-details-bin` with an ErrorInfo (domain
 * "secrets.v1", the reason, its metadata) and a RequestInfo with the request id.
 * Anything that is not an AppError is a bug: the caller sees INTERNAL
 * "internal error" and the request id; the cause goes to the log only.
 */

const STATUS_OF_KIND: Record<ErrorKind, grpc.status> = {
  invalid_argument: grpc.status.INVALID_ARGUMENT,
  not_found: grpc.status.NOT_FOUND,
  already_exists: grpc.status.ALREADY_EXISTS,
  aborted: grpc.status.ABORTED,
  failed_precondition: grpc.status.FAILED_PRECONDITION,
  resource_exhausted: grpc.status.RESOURCE_EXHAUSTED,
  unauthenticated: grpc.status.UNAUTHENTICATED,
  permission_denied: grpc.status.PERMISSION_DENIED,
  unavailable: grpc.status.UNAVAILABLE,
  unimplemented: grpc.status.UNIMPLEMENTED,
  internal: grpc.status.INTERNAL,
};

/** The gRPC status code of an error kind. */
export function statusCodeOf(kind: ErrorKind): grpc.status {
  return STATUS_OF_KIND[kind];
}

/** The reason and message the caller may see; internal errors say nothing of their cause. */
export function publicError(error: unknown): AppError {
  if (error instanceof AppError && error.kind !== "internal") return error;
  if (error instanceof AppError) return new AppError(error.reason, "internal error");
  return new AppError("INTERNAL", "internal error");
}

/** The full status object for grpc-js: code, message and the rich details trailer. */
export function toStatus(error: unknown, requestId: string): grpc.StatusObject {
  const shown = publicError(error);
  const code = statusCodeOf(shown.kind);
  const details = shown.kind === "internal" ? `internal error (request id ${requestId})` : shown.message;
  const rich = create(StatusSchema, {
    code,
    message: details,
    details: [
      anyPack(ErrorInfoSchema, create(ErrorInfoSchema, { reason: shown.reason, domain: ERROR_DOMAIN, metadata: { ...shown.metadata } })),
      anyPack(RequestInfoSchema, create(RequestInfoSchema, { requestId })),
    ],
  });
  const metadata = new grpc.Metadata();
  metadata.set("grpc-status-details-bin", Buffer.from(toBinary(StatusSchema, rich)));
  return { code, details, metadata };
}
