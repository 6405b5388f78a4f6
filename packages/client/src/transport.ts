import { readFileSync } from "node:fs";
import { create, fromBinary, toBinary, type DescMessage, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import type { DescMethodUnary } from "@bufbuild/protobuf";
import * as grpc from "@grpc/grpc-js";
import { fromServiceError } from "./errors.js";
import { cancelled } from "./retry.js";

/**
 * The SDK's one bridge to grpc-js: a unary call by protobuf-es method descriptor.
 * The path is `/${service.typeName}/${method.name}` and the (de)serializers are the
 * method's binary schemas, as on the server, so no generated grpc-js stubs exist.
 * Every call carries `authorization: Bearer <token>`, fetched per attempt so a
 * refreshing token source is honoured, and an absolute deadline.
 */

/** Where the bearer token comes from: a fixed string, or a function called before every attempt. */
export type TokenSource = string | (() => string | Promise<string>);

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
  signal?: AbortSignal | undefined;
}

/** A channel to the service that makes unary calls. */
export interface Transport {
  unary<I extends DescMessage, O extends DescMessage>(
    method: DescMethodUnary<I, O>,
    request: MessageInitShape<I>,
    options: UnaryCallOptions,
  ): Promise<MessageShape<O>>;
  close(): void;
}

/** What `createTransport` needs. */
export interface TransportOptions {
  address: string;
  token: TokenSource;
  tls?: TlsOptions | undefined;
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
  const tls = options.tls ?? false;
  const channelOptions: grpc.ChannelOptions = { ...DEFAULT_CHANNEL_OPTIONS };
  if (typeof tls === "object" && tls.serverName) channelOptions["grpc.ssl_target_name_override"] = tls.serverName;
  Object.assign(channelOptions, options.channelOptions);
  const client = new grpc.Client(options.address, credentialsOf(tls), channelOptions);
  const tokenOf = typeof options.token === "function" ? options.token : () => options.token as string;
  let closed = false;

  return {
    async unary(method, request, callOptions) {
      // A call after close() is the caller's bug, not the service's answer: a plain Error, not a SecretsError.
      if (closed) throw new Error("SecretsClient is closed");
      const token = await tokenOf();
      if (callOptions.signal?.aborted) throw cancelled();
      const metadata = new grpc.Metadata();
      metadata.set("authorization", `Bearer ${token}`);
      const path = `/${method.parent.typeName}/${method.name}`;
      return new Promise((resolve, reject) => {
        const call = client.makeUnaryRequest(
          path,
          (message: MessageShape<typeof method.input>) => Buffer.from(toBinary(method.input, message)),
          (bytes: Buffer) => fromBinary(method.output, bytes),
          create(method.input, request),
          metadata,
          { deadline: callOptions.deadline },
          (error, response) => {
            callOptions.signal?.removeEventListener("abort", onAbort);
            if (error) reject(fromServiceError(error));
            else if (response === undefined) reject(new Error(`${path} answered without a message`));
            else resolve(response);
          },
        );
        const onAbort = () => call.cancel();
        callOptions.signal?.addEventListener("abort", onAbort, { once: true });
      });
    },
    close() {
      closed = true;
      client.close();
    },
  };
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
