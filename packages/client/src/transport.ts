import { readFileSync } from "node:fs";
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { DescMethod, DescMethodServerStreaming, DescMethodUnary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import type { ServiceAddress } from "./address.js";
import { clientFailure, fromServiceError, SecretsError } from "./errors.js";
import { cancelled } from "./retry.js";
import { readToken, type TokenSource } from "./token.js";

/**
 * The SDK's one bridge to grpc-js: a unary or server-streaming call by protobuf-es method descriptor.
 * The path is `/${service.typeName}/${method.name}` and the (de)serializers are the
 * method's binary schemas, as on the server, so no generated grpc-js stubs exist.
 * Every call carries `authorization: Bearer <token>`, fetched per attempt so a
 * refreshing token source is honoured (unless the call pins one), and an absolute
 * deadline.
 *
 * Error boundary: every failure is a SecretsError. The request is encoded here, not
 * inside grpc-js, so that an encoding failure (whose text may quote a field) becomes a
 * fixed message; anything else thrown on the way out is replaced the same way.
 */

/** TLS settings; `true` means TLS with the system's root certificates. */
export type TlsOptions =
  | boolean
  | {
      /** PEM root certificate(s) to trust instead of the system's (contents or a file path). */
      ca?: string | Buffer;
      /** Client certificate and key (PEM contents or file paths), for mTLS. */
      cert?: string | Buffer;
      key?: string | Buffer;
      /** The name to check the server certificate against, when it differs from the address's host. */
      serverName?: string;
    };

/** What a unary call needs besides its request. */
export interface UnaryCallOptions {
  /** Epoch milliseconds after which the call fails DEADLINE_EXCEEDED. */
  deadline: number;
  /** The whole deadline as given, for the message of a DEADLINE_EXCEEDED. */
  deadlineMs: number;
  signal?: AbortSignal | undefined;
  /** A token already read for this call (so that every attempt acts as the same caller). */
  token?: string | undefined;
}

/** What a server-streaming call needs besides its request: it has no deadline, it lasts until it ends or is cancelled. */
export interface StreamCallOptions {
  signal?: AbortSignal | undefined;
  /** A token already read for this call. */
  token?: string | undefined;
}

/** A channel to the service that makes unary and server-streaming calls. */
export interface Transport {
  unary<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    request: MessageInitShape<I>,
    options: UnaryCallOptions,
  ): Promise<MessageShape<O>>;
  /**
   * The responses of one server-streaming call, as they arrive; it ends when the service ends the
   * stream with OK and throws a SecretsError otherwise (CANCELLED when `signal` aborts). Ending the
   * iteration early cancels the call.
   */
  serverStream<I extends DescMessage, O extends DescMessage>(
    method: DescMethodServerStreaming<I, O>,
    request: MessageInitShape<I>,
    options: StreamCallOptions,
  ): AsyncGenerator<MessageShape<O>, void, undefined>;
  close(): void;
}

/** What `createTransport` needs. */
export interface TransportOptions {
  address: ServiceAddress;
  token: TokenSource;
  /** Resolved by the caller from the options and the address's scheme. */
  tls: TlsOptions;
  /** Extra grpc-js channel options; they override the defaults below. */
  channelOptions?: grpc.ChannelOptions | undefined;
}

/** The service accepts and sends messages up to 8 MiB (a ResolveSecrets of 100 large values is above grpc-js's 4 MiB default). */
const MAX_MESSAGE_BYTES = 8 * 1024 * 1024;

const DEFAULT_CHANNEL_OPTIONS: grpc.ChannelOptions = {
  "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
  "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
  // grpc-js backs off reconnecting up to 120 s; a restarted service should be found again within seconds.
  "grpc.initial_reconnect_backoff_ms": 250,
  "grpc.max_reconnect_backoff_ms": 2_000,
};

/** A channel to `address`; one per client, shared by its calls. */
export function createTransport(options: TransportOptions): Transport {
  const tls = options.tls;
  const channelOptions: grpc.ChannelOptions = { ...DEFAULT_CHANNEL_OPTIONS };
  if (typeof tls === "object" && tls.serverName) channelOptions["grpc.ssl_target_name_override"] = tls.serverName;
  Object.assign(channelOptions, options.channelOptions);
  const target = options.address.target;
  const client = new grpc.Client(target, credentialsOf(tls), channelOptions);
  let closed = false;

  /** The encoded request and its metadata, or a SecretsError with a fixed message. */
  async function prepare(method: DescMethod & { input: DescMessage }, request: MessageInitShape<DescMessage>, pinned: string | undefined) {
    if (closed) throw clientFailure(grpc.status.FAILED_PRECONDITION, "CLIENT_CLOSED", "the client is closed");
    const token = pinned ?? (await readToken(options.token));
    let bytes: Buffer;
    try {
      bytes = Buffer.from(toBinary(method.input, create(method.input, request)));
    } catch {
      throw clientFailure(grpc.status.INVALID_ARGUMENT, "REQUEST_UNENCODABLE", `the ${method.name} request could not be encoded: a field has the wrong type or is out of range`);
    }
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${token}`);
    return { path: `/${method.parent.typeName}/${method.name}`, bytes, metadata };
  }

  /** What grpc-js throws itself (not as a call's status) may quote the request or the header. */
  const unsent = (method: DescMethod) => (e: unknown) => {
    throw e instanceof SecretsError ? e : clientFailure(grpc.status.INTERNAL, "CLIENT_INTERNAL", `${method.name} could not be sent`);
  };

  return {
    async unary(method, request, callOptions) {
      const { path, bytes, metadata } = await prepare(method, request, callOptions.token);
      if (callOptions.signal?.aborted) throw cancelled();
      const context = { target, deadlineMs: callOptions.deadlineMs };
      return new Promise((resolve, reject) => {
        const call = client.makeUnaryRequest(
          path,
          (encoded: Buffer) => encoded,
          (received: Buffer) => decode(method.output, received),
          bytes,
          metadata,
          { deadline: callOptions.deadline },
          (error, response) => {
            callOptions.signal?.removeEventListener("abort", onAbort);
            if (error) reject(fromServiceError(error, context));
            else if (response === undefined) reject(clientFailure(grpc.status.INTERNAL, "CLIENT_INTERNAL", `${method.name} answered without a message`));
            else resolve(response);
          },
        );
        const onAbort = () => call.cancel();
        callOptions.signal?.addEventListener("abort", onAbort, { once: true });
      }).catch(unsent(method)) as Promise<MessageShape<typeof method.output>>;
    },

    async *serverStream(method, request, callOptions) {
      const { path, bytes, metadata } = await prepare(method, request, callOptions.token);
      const signal = callOptions.signal;
      if (signal?.aborted) throw cancelled();
      let call: grpc.ClientReadableStream<MessageShape<typeof method.output>>;
      try {
        call = client.makeServerStreamRequest(path, (encoded: Buffer) => encoded, (received: Buffer) => decode(method.output, received), bytes, metadata, {});
      } catch (e) {
        return unsent(method)(e);
      }
      const onAbort = () => call.cancel();
      signal?.addEventListener("abort", onAbort, { once: true });
      try {
        for await (const response of call) yield response as MessageShape<typeof method.output>;
      } catch (e) {
        if (signal?.aborted) throw cancelled();
        if (isServiceError(e)) throw fromServiceError(e, { target, deadlineMs: 0 });
        return unsent(method)(e);
      } finally {
        signal?.removeEventListener("abort", onAbort);
        call.cancel();
      }
    },

    close() {
      closed = true;
      client.close();
    },
  };
}

/** A call's failure as grpc-js reports it: an Error with a numeric status code. */
function isServiceError(e: unknown): e is grpc.ServiceError {
  return e instanceof Error && typeof (e as Partial<grpc.ServiceError>).code === "number" && "metadata" in e;
}

/** An answer's message; a decoding failure gets a fixed text (grpc-js repeats it in the status it reports). */
function decode<O extends DescMessage>(schema: O, bytes: Buffer): MessageShape<O> {
  try {
    return fromBinary(schema, bytes);
  } catch {
    throw new Error("the answer could not be decoded");
  }
}

function credentialsOf(tls: TlsOptions): grpc.ChannelCredentials {
  if (tls === false) return grpc.credentials.createInsecure();
  if (tls === true) return grpc.credentials.createSsl();
  return grpc.credentials.createSsl(pem(tls.ca), pem(tls.key), pem(tls.cert));
}

/** PEM contents as given, or read from a path (a string that does not look like PEM). */
function pem(source: string | Buffer | undefined): Buffer | null {
  if (source === undefined) return null;
  if (Buffer.isBuffer(source)) return source;
  return source.includes("-----BEGIN") ? Buffer.from(source) : readFileSync(source);
}
