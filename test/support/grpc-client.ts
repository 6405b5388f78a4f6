import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, type DescService, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { ErrorInfoSchema, type ErrorInfo } from "../../src/api/gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../src/api/gen/google/rpc/status_pb.js";
import { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { serviceDefinition } from "../../src/server/grpc-adapter.js";
import { expectFailure } from "./expect-failure.js";

/** A failed call as a test sees it: the status code, message and decoded ErrorInfo. */
export class CallError extends Error {
  constructor(
    readonly code: grpc.status,
    readonly details: string,
    readonly errorInfo: ErrorInfo | undefined,
    readonly trailers: grpc.Metadata,
  ) {
    super(`${grpc.status[code]}: ${details}`);
  }
  get reason(): string | undefined {
    return this.errorInfo?.reason;
  }
}

type Methods<S extends DescService> = S["method"];

/** A promise-returning client over real gRPC for one generated service. */
export type TestClient<S extends DescService> = {
  [K in keyof Methods<S>]: (
    request: MessageInitShape<Methods<S>[K]["input"]>,
    token?: string,
  ) => Promise<MessageShape<Methods<S>[K]["output"]>>;
} & { close(): void; raw: grpc.Client };

export function createTestClient<S extends DescService>(
  service: S,
  address: string,
  credentials: grpc.ChannelCredentials = grpc.credentials.createInsecure(),
  options: grpc.ChannelOptions = {},
): TestClient<S> {
  const Ctor = grpc.makeGenericClientConstructor(serviceDefinition(service), service.typeName);
  const raw = new Ctor(address, credentials, options);
  const client: Record<string, unknown> = { close: () => raw.close(), raw };
  for (const method of service.methods) {
    client[method.localName] = (request: MessageInitShape<typeof method.input>, token?: string) =>
      new Promise((resolve, reject) => {
        const metadata = new grpc.Metadata();
        if (token !== undefined) metadata.set("authorization", `Bearer ${token}`);
        const fn = (raw as unknown as Record<string, Function>)[method.localName] as Function;
        fn.call(raw, create(method.input, request), metadata, { deadline: Date.now() + 20_000 }, (err: grpc.ServiceError | null, res: unknown) =>
          err ? reject(toCallError(err)) : resolve(res),
        );
      });
  }
  return client as TestClient<S>;
}

export function secretsClient(address: string): TestClient<typeof SecretService> {
  return createTestClient(SecretService, address);
}

/** A failed call's status code, details and the ErrorInfo of its status details. */
export function toCallError(err: grpc.ServiceError): CallError {
  let info: ErrorInfo | undefined;
  const bin = err.metadata?.get("grpc-status-details-bin")[0];
  if (bin instanceof Buffer) {
    const status = fromBinary(StatusSchema, bin);
    for (const any of status.details) info ??= anyUnpack(any, ErrorInfoSchema);
  }
  return new CallError(err.code, err.details, info, err.metadata);
}

/** Runs `fn` expecting a CallError; returns it for assertions. */
export function expectCallError(fn: () => Promise<unknown>): Promise<CallError> {
  return expectFailure(CallError, fn);
}
