import { fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { Metadata, status, type ServiceError } from "@grpc/grpc-js";
import { LIST_SEPARATOR, REASONS, type ListMetadataKey, type Reason } from "./contract.js";
import { ErrorInfoSchema, RequestInfoSchema, type ErrorInfo } from "./gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "./gen/google/rpc/status_pb.js";

/**
 * Failed calls as the SDK reports them. Every failure is a SecretsError carrying
 * the gRPC status and, when the service sent one, the `google.rpc.ErrorInfo`
 * reason and metadata, so callers branch on `reason`, never on message text.
 * Two subclasses name the failures that are about the connection rather than the
 * request: SecretsUnavailableError and SecretsDeadlineError; a third, SecretsTokenError,
 * a token the SDK could not send. Failures found on the client side carry a reason of
 * CLIENT_REASONS, which the service never sends.
 *
 * Invariant: a message holds the status, the reason and the service's own message
 * (or a fixed text of the SDK's), which never echoes a value or a token; `cause` is a
 * short text of the same kind, never another library's error.
 */

/**
 * Reasons the SDK gives to failures found on the client side, before or after the
 * service answered. The service's own catalogue is REASONS (contract.ts).
 */
export const CLIENT_REASONS = {
  /** UNAUTHENTICATED: the token source failed, returned no string, or a token a header cannot carry. */
  TOKEN_UNUSABLE: "TOKEN_UNUSABLE",
  /** INVALID_ARGUMENT: the request could not be encoded (a field of the wrong type or out of range). */
  REQUEST_UNENCODABLE: "REQUEST_UNENCODABLE",
  /** FAILED_PRECONDITION: the call was made after `close()`. */
  CLIENT_CLOSED: "CLIENT_CLOSED",
  /** INTERNAL: the answer could not be read, or an unexpected failure inside the SDK. */
  CLIENT_INTERNAL: "CLIENT_INTERNAL",
} as const;

/** A client-side reason. */
export type ClientReason = keyof typeof CLIENT_REASONS;

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
  /** A short text that helps (e.g. "connect ECONNREFUSED 127.0.0.1:50051"); never a value or a token. */
  cause?: string | undefined;
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
  /** ErrorInfo.metadata as sent, e.g. `{ field: "name" }` or `{ names: "a,b" }` (see `list` for list fields). */
  readonly metadata: Readonly<Record<string, string>>;
  /** The service's message, without the status prefix. */
  readonly details: string;
  /** The id of the server's log line for this call, when the call reached the service. */
  readonly requestId: string | undefined;

  constructor(init: SecretsErrorInit) {
    const codeName = (status[init.code] ?? "UNKNOWN") as StatusCodeName;
    super(`${codeName}${init.reason ? ` (${init.reason})` : ""}: ${init.details}`, init.cause === undefined ? undefined : { cause: init.cause });
    this.code = init.code;
    this.codeName = codeName;
    this.reason = init.reason;
    this.metadata = Object.freeze({ ...init.metadata });
    this.details = init.details;
    this.requestId = init.requestId;
  }

  /**
   * A list-valued ErrorInfo field (LIST_METADATA_KEYS: `names`, `replicas`) as an array;
   * empty when the error has none.
   */
  list(key: ListMetadataKey): string[] {
    const joined = this.metadata[key];
    return joined ? joined.split(LIST_SEPARATOR) : [];
  }

  /** The secret names the error is about (SECRET_NOT_FOUND, NOT_ALLOWLISTED), as an array. */
  get names(): string[] {
    return this.list("names");
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

/**
 * A token the SDK could not send (UNAUTHENTICATED, reason TOKEN_UNUSABLE): the token
 * source failed or returned no string, or the token (trimmed) is empty or holds
 * characters an HTTP/2 header cannot carry. The message says which, never the token.
 */
export class SecretsTokenError extends SecretsError {
  override name = "SecretsTokenError";
  constructor(problem: string) {
    super({ code: status.UNAUTHENTICATED, reason: CLIENT_REASONS.TOKEN_UNUSABLE, details: problem });
  }
}

/** A failure found on the client side, with a fixed message of the SDK's. */
export function clientFailure(code: status, reason: ClientReason, details: string): SecretsError {
  return new SecretsError({ code, reason, details });
}

/**
 * The SDK's error boundary for one error: a SecretsError passes; anything else (a bug, or a
 * library's error whose text may quote a request) becomes a SecretsError with a fixed message
 * naming only the kind of error.
 */
export function asSecretsError(e: unknown): SecretsError {
  if (e instanceof SecretsError) return e;
  const kind = e instanceof Error && /^\w{1,40}$/.test(e.name) ? e.name : "error";
  return clientFailure(status.INTERNAL, "CLIENT_INTERNAL", `unexpected ${kind} inside the SDK`);
}

/** True for the failures that a cached value may paper over and that are worth retrying later. */
export function isTransient(e: unknown): e is SecretsError {
  return e instanceof SecretsError && (e.code === status.UNAVAILABLE || e.code === status.DEADLINE_EXCEEDED);
}

/** What a failed call was, for the messages of transport failures. */
export interface CallContext {
  /** The address dialled, as `host:port`. */
  target: string;
  /** The call's deadline, retries included. */
  deadlineMs: number;
}

/**
 * The SecretsError of a failed grpc-js call, decoding `grpc-status-details-bin`. A
 * DEADLINE_EXCEEDED or UNAVAILABLE that the service did not send (no ErrorInfo) gets a
 * message naming the address and the deadline instead of grpc-js's text.
 */
export function fromServiceError(error: Pick<ServiceError, "code" | "details" | "metadata">, context: CallContext): SecretsError {
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
  if (error.code === status.DEADLINE_EXCEEDED) {
    if (info === undefined) Object.assign(init, deadlineText(error.details, context));
    return new SecretsDeadlineError(init);
  }
  if (error.code === status.UNAVAILABLE && info === undefined) return new SecretsUnavailableError({ ...init, ...unreachableText(error.details, context) });
  return new SecretsError(init);
}

/** "10 s", "1.5 s", "250 ms". */
function duration(ms: number): string {
  return ms < 1_000 ? `${Math.round(ms)} ms` : `${Number((ms / 1_000).toFixed(1))} s`;
}

function deadlineText(grpcDetails: string, context: CallContext): Pick<SecretsErrorInit, "details" | "cause"> {
  // grpc-js waits for a connection ("LB pick") until the deadline when it has none.
  const connected = !/LB pick|Waiting for/i.test(grpcDetails);
  return {
    details: `no answer from ${context.target} within ${duration(context.deadlineMs)}`,
    cause: connected ? "the service did not answer in time" : "no connection to the service was made in time",
  };
}

/** grpc-js's connection errors as a short phrase, most specific first. */
const UNREACHABLE: readonly [RegExp, string][] = [
  [/ECONNREFUSED/, "connection refused"],
  [/ENOTFOUND|EAI_AGAIN|EAI_NONAME|resolution failed|DNS/i, "the host name does not resolve"],
  [/EHOSTUNREACH|ENETUNREACH/, "no route to the host"],
  [/ETIMEDOUT/, "the connection timed out"],
  [/ECONNRESET|EPIPE|dropped|closed|GOAWAY|RST_STREAM/i, "the connection was lost"],
  [/SSL|TLS|certificate|handshake|wrong version number|protocol/i, "TLS negotiation failed (plaintext service, or an untrusted certificate?)"],
];

function unreachableText(grpcDetails: string, context: CallContext): Pick<SecretsErrorInit, "details" | "cause"> {
  const phrase = UNREACHABLE.find(([re]) => re.test(grpcDetails))?.[1] ?? "the connection failed";
  // The system call that failed, e.g. "connect ECONNREFUSED 127.0.0.1:50051", without grpc-js's wrapping.
  const syscall = /\b(?:connect|getaddrinfo|read|write) E[A-Z_]+(?: [^\s,()]*[^\s,().])?/.exec(grpcDetails)?.[0];
  return { details: `cannot reach ${context.target}: ${phrase}`, cause: syscall };
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
