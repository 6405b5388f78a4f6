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
 * schemas) and turns typed handler functions into grpc-js handlers. Handlers return
 * or throw; they never touch callbacks, so a call is answered exactly once.
 */

/** Per-call context handed to every handler. */
export interface CallContext {
  readonly metadata: grpc.Metadata;
  readonly peer: string;
  /** Aborted when the client cancels or the deadline passes. */
  readonly signal: AbortSignal;
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

export type ServerStreamingHandler<I extends DescMessage, O extends DescMessage> = (
  request: MessageShape<I>,
  ctx: CallContext,
) => AsyncIterable<MessageInitShape<O>>;

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

function contextOf(call: grpc.ServerUnaryCall<unknown, unknown> | grpc.ServerWritableStream<unknown, unknown>): CallContext {
  // The abort signal is made only when a handler asks for it: an AbortController per
  // unary call cost several percent of a cache hit's CPU (profiled), and unary
  // handlers here never wait on anything a cancellation should interrupt.
  let controller: AbortController | undefined;
  return {
    metadata: call.metadata,
    get peer() {
      return call.getPeer();
    },
    get signal() {
      if (!controller) {
        const c = (controller = new AbortController());
        if (call.cancelled) c.abort();
        else call.once("cancelled", () => c.abort());
      }
      return controller.signal;
    },
  };
}

function unary(
  method: DescMethod,
  fn: UnaryHandler<DescMessage, DescMessage>,
  toStatus: ErrorToStatus,
): grpc.handleUnaryCall<MessageShape<DescMessage>, MessageShape<DescMessage> | EncodedResponse<DescMessage>> {
  return (call, callback) => {
    const ctx = contextOf(call);
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
    const ctx = contextOf(call);
    (async () => {
      if (isMalformed(call.request)) throw malformedError();
      for await (const message of fn(call.request, ctx)) {
        if (ctx.signal.aborted) return;
        if (!call.write(create(method.output, message))) {
          await new Promise<void>((resolve) => {
            call.once("drain", resolve);
            ctx.signal.addEventListener("abort", () => resolve(), { once: true });
          });
        }
      }
      if (!ctx.signal.aborted) call.end();
    })().catch((error: unknown) => {
      // An 'error' event is how a grpc-js stream ends with a status: destroy() would drop it.
      if (!ctx.signal.aborted) call.emit("error", Object.assign(new Error("stream failed"), toStatus(error, ctx, method)));
    });
  };
}
