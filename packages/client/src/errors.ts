import { fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { REASONS, type Reason } from "./contract.js";
import { ErrorInfoSchema, RequestInfoSchema, type ErrorInfo } from "./gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "./gen/google/rpc/status_pb.js";

/**
 * Failed calls as the SDK reports them. Every failure is a SecretsError carrying
 * the gRPC status and, when the service sent one, the `google.rpc.ErrorInfo`
 * reason and metadata, so callers branch on `reason`, never on message text.
 * Two subclasses name the failures that are about the connection rather than the
 * request: SecretsUnavailableError and SecretsDeadlineError.
 *
 * Invariant: a message holds the status, the reason and the service's own message,
 * which never echoes a value; the SDK adds nothing that could hold one.
 */

/** A reason string: one of the documented catalogue, or a newer one this SDK does not know yet. */
export type SecretsReason = Reason | (string & {});

/** Status names by number, e.g. 5 → "NOT_FOUND". */
export type StatusCodeName = keyof typeof status;

/** What a SecretsError is built from. */
export interface SecretsErrorInit {
  code: status;
  /** The service's message (or grpc-js's, for transport failures). */
  details: string;
  reason?: SecretsReason | undefined;
  metadata?: Readonly<Record<string, string>>;
  requestId?: string | undefined;
}

/** A call that failed: the status, the ErrorInfo reason and metadata, the request id. */
export class SecretsError extends Error {
  override name = "SecretsError";
  /** The gRPC status code (numeric, as in `@grpc/grpc-js`'s `status`). */
  readonly code: status;
  /** The status name, e.g. "NOT_FOUND". */
  readonly codeName: StatusCodeName;
  /** ErrorInfo.reason, e.g. "SECRET_NOT_FOUND"; undefined when the status carried no ErrorInfo. */
  readonly reason: SecretsReason | undefined;
  /** ErrorInfo.metadata, e.g. `{ field: "name" }` or `{ names: "a,b" }`. */
  readonly metadata: Readonly<Record<string, string>>;
  /** The service's message, without the status prefix. */
  readonly details: string;
  /** The id of the server's log line for this call, when the call reached the service. */
  readonly requestId: string | undefined;

  constructor(init: SecretsErrorInit) {
    const codeName = (status[init.code] ?? "UNKNOWN") as StatusCodeName;
    super(`${codeName}${init.reason ? ` (${init.reason})` : ""}: ${init.details}`);
    this.code = init.code;
    this.codeName = codeName;
    this.reason = init.reason;
    this.metadata = Object.freeze({ ...init.metadata });
    this.details = init.details;
    this.requestId = init.requestId;
  }

  /** True when `reason` is one of the documented catalogue (a type guard for exhaustive switches). */
  hasKnownReason(): this is SecretsError & { reason: Reason } {
    return this.reason !== undefined && Object.hasOwn(REASONS, this.reason);
  }
}

/**
 * UNAVAILABLE without a service ErrorInfo: the service could not be reached (refused,
 * reset, TLS or DNS failure) or dropped the connection. The request may or may not
 * have been carried out, as with any lost connection.
 */
export class SecretsUnavailableError extends SecretsError {
  override name = "SecretsUnavailableError";
}

/** DEADLINE_EXCEEDED: no answer within the call's deadline (retries included). */
export class SecretsDeadlineError extends SecretsError {
  override name = "SecretsDeadlineError";
}

/** True for the failures that a cached value may paper over and that are worth retrying later. */
export function isTransient(e: unknown): e is SecretsError {
  return e instanceof SecretsError && (e.code === status.UNAVAILABLE || e.code === status.DEADLINE_EXCEEDED);
}

/** The SecretsError of a failed grpc-js call, decoding `grpc-status-details-bin`. */
export function fromServiceError(error: Pick<ServiceError, "code" | "details" | "metadata">): SecretsError {
  const trailers = error.metadata instanceof Metadata ? error.metadata : undefined;
  const { info, requestId } = decodeDetails(trailers);
  const headerId = trailers?.get("x-request-id")[0];
  const init: SecretsErrorInit = {
    code: error.code,
    details: error.details,
    reason: info?.reason || undefined,
    metadata: info?.metadata ?? {},
    requestId: requestId || (typeof headerId === "string" ? headerId : undefined),
  };
  if (error.code === status.DEADLINE_EXCEEDED) return new SecretsDeadlineError(init);
  if (error.code === status.UNAVAILABLE && info === undefined) return new SecretsUnavailableError(init);
  return new SecretsError(init);
}

function decodeDetails(trailers: Metadata | undefined): { info: ErrorInfo | undefined; requestId: string | undefined } {
  const bin = trailers?.get("grpc-status-details-bin")[0];
  if (!(bin instanceof Buffer)) return { info: undefined, requestId: undefined };
  let info: ErrorInfo | undefined;
  let requestId: string | undefined;
  try {
    for (const detail of fromBinary(StatusSchema, bin).details) {
      info ??= anyUnpack(detail, ErrorInfoSchema);
      requestId ??= anyUnpack(detail, RequestInfoSchema)?.requestId;
    }
  } catch {
    // A malformed details trailer (a proxy's, say) leaves the plain status, which is still correct.
  }
  return { info, requestId };
}
