import type * as grpc from "@grpc/grpc-js";
import { AppError } from "../api/errors.js";
import {
  create,
  fromBinary,
  toBinary,
  type DescMessage,
  type DescMethod,
  type DescService,
  type MessageInitShape,
  type MessageShape,
} from "@bufbuild/protobuf";

/**
 * The one bridge between protobuf-es descriptors and grpc-js. protoc-gen-es emits
 * descriptors, not grpc-js service definitions; this builds the definition from the
 * descriptor (path `/${typeName}/${method}`, binary (de)serializers of the method's
 * schemas) and turns typed handler functions into grpc-js handlers. A unary handler
 * returns or throws; a streaming one drives a ServerStream, whose first `end` or
 * `fail` is its only one. Neither touches grpc-js's callbacks, so a call is answered
 * exactly once.
 */

/** Per-call context handed to every handler. */
export interface CallContext {
  readonly metadata: grpc.Metadata;
}

/**
 * The response side of a server-streaming call, which its handler drives: it sends
 * when it has something to say and ends the call when it is done. Nothing of the
 * handler needs to stay suspended while a stream waits (an idle watch holds no
 * promise or frame, only what it needs to send its next response).
 */
export interface ServerStream<O extends DescMessage> {
  /** Sends one response; false when the transport's buffer is full (wait for `drained`). Ignored once the call is over. */
  send(message: MessageInitShape<O>): boolean;
  /** Resolves when the transport's buffer has room again, or the call is over. */
  drained(): Promise<void>;
  /** Ends the call OK. */
  end(): void;
  /** Ends the call with the status `error` maps to. */
  fail(error: unknown): void;
  /** True once the call is over: ended, failed, or cancelled by the client. */
  readonly closed: boolean;
  /**
   * `listener` runs once if the client cancels the call (it closed the stream, its
   * deadline passed, its connection was lost), at once if it already has.
   */
  onCancel(listener: () => void): void;
}

/**
 * A response already in wire form, made by a hand-written encoder (wire-encoders.ts)
 * for the hottest calls; branded with its schema so a handler can only return the
 * encoding of its own output type. Everything else goes through protobuf-es.
 */
export class EncodedResponse<O extends DescMessage> {
  declare private readonly schema: O;
  constructor(readonly bytes: Buffer) {}
}

export type UnaryHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  ctx: CallContext,
) => Promise<MessageInitShape<O> | EncodedResponse<O>>;

/** Starts a stream; what it throws before it returns fails the call. */
export type ServerStreamingHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  ctx: CallContext,
  stream: ServerStream<O>,
) => void;

/** Handler functions for every method of a generated service, keyed by the method's local name. */
export type ServiceImpl<S extends Pick<DescService, "method">> = {
  [K in keyof S["method"]]: S["method"][K]["methodKind"] extends "server_streaming"
    ? ServerStreamingHandler<S["method"][K]["input"], S["method"][K]["output"]>
    : UnaryHandler<S["method"][K]["input"], S["method"][K]["output"]>;
};

/** How a thrown error becomes a status: supplied by status.ts, the one place that maps errors. */
export type ErrorToStatus = (error: unknown, ctx: CallContext, method: DescMethod) => Partial<grpc.StatusObject> & { code: grpc.status };

/** The grpc-js ServiceDefinition of a protobuf-es service descriptor. */
export function serviceDefinition(service: DescService): grpc.ServiceDefinition {
  const definition: Record<
    string,
    grpc.MethodDefinition<MessageShape<DescMessage>, MessageShape<DescMessage> | EncodedResponse<DescMessage>>
  > = {};
  for (const method of service.methods) {
    definition[method.localName] = {
      path: `/${service.typeName}/${method.name}`,
      originalName: method.name,
      requestStream: method.methodKind === "client_streaming" || method.methodKind === "bidi_streaming",
      responseStream: method.methodKind === "server_streaming" || method.methodKind === "bidi_streaming",
      requestSerialize: (m: MessageShape<DescMessage>) => toBuffer(toBinary(method.input, m)),
      // May yield the Malformed marker instead of a message: the handler wrappers check for it.
      requestDeserialize: (b: Buffer) => parseRequest(method, b) as MessageShape<DescMessage>,
      responseSerialize: (m: MessageShape<DescMessage> | EncodedResponse<DescMessage>) =>
        m instanceof EncodedResponse ? m.bytes : toBuffer(toBinary(method.output, m)),
      responseDeserialize: (b: Buffer) => fromBinary(method.output, b),
    };
  }
  return definition;
}

/** A Buffer over the same bytes (no copy). */
function toBuffer(bytes: Uint8Array): Buffer {
  return Buffer.from(bytes.buffer, bytes.byteOffset, bytes.byteLength);
}

/**
 * A request body that does not parse (random bytes, or nesting past protobuf-es's
 * recursion limit). grpc-js would answer a throwing deserializer INTERNAL with no
 * details; the marker lets the handler wrapper answer INVALID_ARGUMENT through the
 * usual path (ErrorInfo, request id, log line, audit event).
 */
const MALFORMED = Symbol("malformed request");
type Malformed = { readonly [MALFORMED]: true };

function parseRequest(method: DescMethod, bytes: Buffer): MessageShape<DescMessage> | Malformed {
  try {
    return fromBinary(method.input, bytes);
  } catch {
    return { [MALFORMED]: true };
  }
}

/** Whether a request is the marker of a body that did not parse (the audit step records such a call with no subject). */
export function isMalformed(request: unknown): request is Malformed {
  return typeof request === "object" && request !== null && MALFORMED in request;
}

const malformedError = () =>
  new AppError("INVALID_ARGUMENT", "the request is not a valid protobuf message for this method", { field: "request" });

/** grpc-js handlers for `impl`; errors thrown by a handler are mapped by `toStatus`. */
export function serviceHandlers<S extends DescService>(
  service: S,
  impl: ServiceImpl<S>,
  toStatus: ErrorToStatus,
): grpc.UntypedServiceImplementation {
  const handlers: grpc.UntypedServiceImplementation = {};
  const fns = impl as unknown as Record<string, (req: unknown, ctx: CallContext) => unknown>;
  for (const method of service.methods) {
    const fn = fns[method.localName];
    if (!fn) throw new Error(`no handler for ${service.typeName}/${method.name}`);
    if (method.methodKind === "unary") {
      handlers[method.localName] = unary(method, fn as UnaryHandler<DescMessage, DescMessage>, toStatus);
    } else if (method.methodKind === "server_streaming") {
      handlers[method.localName] = serverStreaming(method, fn as ServerStreamingHandler<DescMessage, DescMessage>, toStatus);
    } else {
      throw new Error(`${method.methodKind} methods are not supported (${service.typeName}/${method.name})`);
    }
  }
  return handlers;
}

function unary(
  method: DescMethod,
  fn: UnaryHandler<DescMessage, DescMessage>,
  toStatus: ErrorToStatus,
): grpc.handleUnaryCall<MessageShape<DescMessage>, MessageShape<DescMessage> | EncodedResponse<DescMessage>> {
  return (call, callback) => {
    const ctx: CallContext = { metadata: call.metadata };
    if (isMalformed(call.request)) return callback(toStatus(malformedError(), ctx, method));
    fn(call.request, ctx).then(
      (response) => callback(null, response instanceof EncodedResponse ? response : create(method.output, response)),
      (error: unknown) => callback(toStatus(error, ctx, method)),
    );
  };
}

function serverStreaming(
  method: DescMethod,
  fn: ServerStreamingHandler<DescMessage, DescMessage>,
  toStatus: ErrorToStatus,
): grpc.handleServerStreamingCall<MessageShape<DescMessage>, MessageShape<DescMessage>> {
  return (call) => {
    const stream = new CallStream(call, method, toStatus);
    try {
      if (isMalformed(call.request)) throw malformedError();
      fn(call.request, stream.ctx, stream);
    } catch (error) {
      stream.fail(error);
    }
  };
}

/** A grpc-js server stream as a ServerStream; one object per call, its methods on the prototype. */
class CallStream implements ServerStream<DescMessage> {
  readonly ctx: CallContext;
  private over = false;

  constructor(
    private readonly call: grpc.ServerWritableStream<MessageShape<DescMessage>, MessageShape<DescMessage>>,
    private readonly method: DescMethod,
    private readonly toStatus: ErrorToStatus,
  ) {
    this.ctx = { metadata: call.metadata };
  }

  get closed(): boolean {
    return this.over || this.call.cancelled;
  }

  send(message: MessageInitShape<DescMessage>): boolean {
    if (this.closed) return true;
    return this.call.write(create(this.method.output, message));
  }

  drained(): Promise<void> {
    if (this.closed) return Promise.resolve();
    return new Promise((resolve) => {
      const done = () => {
        this.call.off("drain", done);
        this.call.off("cancelled", done);
        resolve();
      };
      this.call.on("drain", done);
      this.call.on("cancelled", done);
    });
  }

  end(): void {
    if (this.closed) return;
    this.over = true;
    this.call.end();
  }

  fail(error: unknown): void {
    if (this.closed) return;
    this.over = true;
    // An 'error' event is how a grpc-js stream ends with a status: destroy() would drop it.
    this.call.emit("error", Object.assign(new Error("stream failed"), this.toStatus(error, this.ctx, this.method)));
  }

  onCancel(listener: () => void): void {
    if (this.call.cancelled) return listener();
    // 'cancelled' fires at most once, so `on` serves and costs less than `once`.
    this.call.on("cancelled", listener);
  }
}
