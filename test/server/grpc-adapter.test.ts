/**
 * The gRPC adapter (src/server/grpc-adapter.ts) on its own: the grpc-js service
 * definition it builds from a protobuf-es descriptor, and the handlers it wraps
 * around typed handler functions, driven here with stand-in grpc-js call objects.
 */
import { EventEmitter } from "node:events";
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type DescMethod, type DescService } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";

import { AppError } from "../../src/api/errors.js";
import { Health, HealthCheckResponse_ServingStatus } from "../../src/api/gen/grpc/health/v1/health_pb.js";
import { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import {
  EncodedResponse,
  isMalformed,
  serviceDefinition,
  serviceHandlers,
  type CallContext,
  type ErrorToStatus,
  type ServerStream,
  type ServiceImpl,
} from "../../src/server/grpc-adapter.js";

/** A stand-in for the grpc-js call a handler receives: what the adapter reads and writes of it. */
class FakeCall extends EventEmitter {
  cancelled = false;
  readonly metadata = new grpc.Metadata();
  readonly written: unknown[] = [];
  ended = false;
  /** The error a stream was ended with: grpc-js sends a stream's status on its 'error' event. */
  failed: (Error & Partial<grpc.StatusObject>) | undefined;
  constructor(readonly request: unknown) {
    super();
    this.on("error", (e: Error & Partial<grpc.StatusObject>) => {
      this.failed = e;
    });
  }
  /** What write() answers: false plays a full transport buffer. */
  room = true;
  write(message: unknown): boolean {
    this.written.push(message);
    return this.room;
  }
  end(): void {
    this.ended = true;
  }
}

/** A status mapper that records what it was given. */
function recordingStatus() {
  const seen: { error: unknown; method: string }[] = [];
  const toStatus: ErrorToStatus = (error, _ctx, method) => {
    seen.push({ error, method: method.name });
    return { code: error instanceof AppError ? grpc.status.INVALID_ARGUMENT : grpc.status.INTERNAL, details: "mapped" };
  };
  return { seen, toStatus };
}

/** Every method of `service` failing, but the ones given. */
function implOf<S extends DescService>(service: S, some: Partial<ServiceImpl<S>>): ServiceImpl<S> {
  const unused = async () => {
    throw new Error("not used in this test");
  };
  return { ...Object.fromEntries(service.methods.map((m) => [m.localName, unused])), ...some } as ServiceImpl<S>;
}

/** Runs a unary grpc-js handler and resolves with what it passed to its callback. */
function runUnary(handler: unknown, call: FakeCall): Promise<{ error: Partial<grpc.StatusObject> | null; response: unknown }> {
  return new Promise((resolve) => {
    (handler as grpc.handleUnaryCall<unknown, unknown>)(call as unknown as grpc.ServerUnaryCall<unknown, unknown>, (error, response) =>
      resolve({ error: error as Partial<grpc.StatusObject> | null, response }),
    );
  });
}

const accessSecret = SecretService.method.accessSecret;

describe("gRPC adapter: service definition", () => {
  it("names each method by its gRPC path and streaming shape", () => {
    const secrets = serviceDefinition(SecretService);
    expect(Object.keys(secrets).sort()).toEqual(SecretService.methods.map((m) => m.localName).sort());
    expect(secrets["accessSecret"]).toMatchObject({
      path: "/secrets.v1.SecretService/AccessSecret",
      originalName: "AccessSecret",
      requestStream: false,
      responseStream: false,
    });
    expect(serviceDefinition(Health)["watch"]).toMatchObject({ path: "/grpc.health.v1.Health/Watch", requestStream: false, responseStream: true });
  });

  it("(de)serializes with the method's schemas", () => {
    const def = serviceDefinition(SecretService)["accessSecret"] as grpc.MethodDefinition<unknown, unknown>;
    const request = create(accessSecret.input, { name: "api_key", version: 2 });
    const bytes = def.requestSerialize(request);
    expect(Buffer.isBuffer(bytes)).toBe(true);
    expect(def.requestDeserialize(bytes)).toEqual(request);
    const response = create(accessSecret.output, { name: "api_key", version: 2 });
    expect(fromBinary(accessSecret.output, def.responseSerialize(response))).toEqual(response);
    expect(def.responseDeserialize(Buffer.from(toBinary(accessSecret.output, response)))).toEqual(response);
  });

  it("sends an already-encoded response as its bytes, and turns an unparsable request into the malformed marker", () => {
    const def = serviceDefinition(SecretService)["accessSecret"] as grpc.MethodDefinition<unknown, unknown>;
    const bytes = Buffer.from([0x0a, 0x01, 0x61]);
    expect(def.responseSerialize(new EncodedResponse(bytes))).toBe(bytes);
    const parsed = def.requestDeserialize(Buffer.from([0xff, 0xff, 0xff]));
    expect(isMalformed(parsed)).toBe(true);
    expect(isMalformed(def.requestDeserialize(Buffer.alloc(0)))).toBe(false);
  });
});

describe("gRPC adapter: handlers", () => {
  it("refuses an implementation that lacks a method, and methods it cannot serve", () => {
    const { toStatus } = recordingStatus();
    const partial = { accessSecret: async () => ({}) } as unknown as ServiceImpl<typeof SecretService>;
    expect(() => serviceHandlers(SecretService, partial, toStatus)).toThrow(/no handler for secrets\.v1\.SecretService\/CreateSecret/);
    const bidi = { typeName: "t.v1.Chat", methods: [{ localName: "talk", name: "Talk", methodKind: "bidi_streaming" } as DescMethod] } as DescService;
    expect(() => serviceHandlers(bidi, { talk: async () => ({}) } as never, toStatus)).toThrow(/bidi_streaming methods are not supported/);
  });

  it("answers a unary call with the message built from what the handler returns", async () => {
    const { seen, toStatus } = recordingStatus();
    let ctxSeen: CallContext | undefined;
    const handlers = serviceHandlers(
      SecretService,
      implOf(SecretService, {
        accessSecret: async (req, ctx) => {
          ctxSeen = ctx;
          return { name: req.name, version: 7 };
        },
      }),
      toStatus,
    );
    const call = new FakeCall(create(accessSecret.input, { name: "api_key" }));
    const { error, response } = await runUnary(handlers["accessSecret"], call);
    expect(error).toBeNull();
    expect(response).toEqual(create(accessSecret.output, { name: "api_key", version: 7 }));
    expect(seen).toEqual([]);
    expect(ctxSeen?.metadata).toBe(call.metadata);
  });

  it("passes an encoded response through untouched", async () => {
    const encoded = new EncodedResponse<typeof accessSecret.output>(Buffer.from([0x10, 0x01]));
    const handlers = serviceHandlers(SecretService, implOf(SecretService, { accessSecret: async () => encoded }), recordingStatus().toStatus);
    const { response } = await runUnary(handlers["accessSecret"], new FakeCall(create(accessSecret.input, {})));
    expect(response).toBe(encoded);
  });

  it("maps a thrown error through the status mapper, once", async () => {
    const { seen, toStatus } = recordingStatus();
    const thrown = new AppError("INVALID_NAME", "bad name", { field: "name" });
    const handlers = serviceHandlers(
      SecretService,
      implOf(SecretService, {
        accessSecret: async () => {
          throw thrown;
        },
      }),
      toStatus,
    );
    const { error } = await runUnary(handlers["accessSecret"], new FakeCall(create(accessSecret.input, {})));
    expect(error).toEqual({ code: grpc.status.INVALID_ARGUMENT, details: "mapped" });
    expect(seen).toEqual([{ error: thrown, method: "AccessSecret" }]);
  });

  it("answers a request that did not parse INVALID_ARGUMENT without running the handler", async () => {
    const { seen, toStatus } = recordingStatus();
    let ran = false;
    const handlers = serviceHandlers(
      SecretService,
      implOf(SecretService, {
        accessSecret: async () => {
          ran = true;
          return {};
        },
      }),
      toStatus,
    );
    const def = serviceDefinition(SecretService)["accessSecret"] as grpc.MethodDefinition<unknown, unknown>;
    const { error } = await runUnary(handlers["accessSecret"], new FakeCall(def.requestDeserialize(Buffer.from([0xff, 0xff, 0xff]))));
    expect(ran).toBe(false);
    expect(error?.code).toBe(grpc.status.INVALID_ARGUMENT);
    expect(seen).toHaveLength(1);
    expect(seen[0]?.error).toMatchObject({ reason: "INVALID_ARGUMENT", metadata: { field: "request" } });
  });

  const runStream = (impl: Partial<ServiceImpl<typeof Health>>, call: FakeCall, toStatus = recordingStatus().toStatus) =>
    (serviceHandlers(Health, implOf(Health, impl), toStatus)["watch"] as grpc.handleServerStreamingCall<unknown, unknown>)(
      call as unknown as grpc.ServerWritableStream<unknown, unknown>,
    );
  const serving = (status: HealthCheckResponse_ServingStatus) => ({ status });

  it("sends what a server-streaming handler sends and ends when it ends; after that, nothing more goes out", () => {
    const call = new FakeCall(create(Health.method.watch.input, {}));
    let closedAfter: boolean | undefined;
    runStream(
      {
        watch(_req, _ctx, stream) {
          stream.send(serving(HealthCheckResponse_ServingStatus.SERVING));
          stream.send(serving(HealthCheckResponse_ServingStatus.NOT_SERVING));
          stream.end();
          closedAfter = stream.closed;
          stream.send(serving(HealthCheckResponse_ServingStatus.SERVING));
          stream.fail(new Error("too late"));
        },
      },
      call,
    );
    expect(call.written).toEqual([
      create(Health.method.watch.output, serving(HealthCheckResponse_ServingStatus.SERVING)),
      create(Health.method.watch.output, serving(HealthCheckResponse_ServingStatus.NOT_SERVING)),
    ]);
    expect(call.ended).toBe(true);
    expect(closedAfter).toBe(true);
    expect(call.failed).toBeUndefined();
  });

  it("ends a stream whose handler throws, or fails it, with the mapped status, once", () => {
    const { seen, toStatus } = recordingStatus();
    const thrown = new FakeCall(create(Health.method.watch.input, {}));
    runStream(
      {
        watch() {
          throw new Error("watch failed");
        },
      },
      thrown,
      toStatus,
    );
    expect(thrown.failed).toMatchObject({ code: grpc.status.INTERNAL, details: "mapped" });
    expect(thrown.ended).toBe(false);

    const failed = new FakeCall(create(Health.method.watch.input, {}));
    runStream(
      {
        watch(_req, _ctx, stream) {
          stream.send(serving(HealthCheckResponse_ServingStatus.SERVING));
          stream.fail(new AppError("INVALID_NAME", "bad", {}));
          stream.fail(new Error("again"));
          stream.end();
        },
      },
      failed,
      toStatus,
    );
    expect(failed.written).toHaveLength(1);
    expect(failed.failed).toMatchObject({ code: grpc.status.INVALID_ARGUMENT, details: "mapped" });
    expect(failed.ended).toBe(false);
    expect(seen.map((s) => s.method)).toEqual(["Watch", "Watch"]);
  });

  it("says when the transport's buffer is full, and resolves `drained` on drain or on cancel", async () => {
    const call = new FakeCall(create(Health.method.watch.input, {}));
    call.room = false;
    const results: boolean[] = [];
    let drained: Promise<void> | undefined;
    runStream(
      {
        watch(_req, _ctx, stream) {
          results.push(stream.send(serving(HealthCheckResponse_ServingStatus.SERVING)));
          drained = stream.drained();
        },
      },
      call,
    );
    expect(results).toEqual([false]);
    let done = false;
    void drained!.then(() => (done = true));
    await new Promise((r) => setImmediate(r));
    expect(done).toBe(false);
    call.emit("drain");
    await drained;

    const gone = new FakeCall(create(Health.method.watch.input, {}));
    gone.room = false;
    let waiting: Promise<void> | undefined;
    runStream({ watch: (_req, _ctx, stream) => void (stream.send(serving(HealthCheckResponse_ServingStatus.SERVING)), (waiting = stream.drained())) }, gone);
    gone.cancelled = true;
    gone.emit("cancelled");
    await waiting;
  });

  it("tells a stream's handler when the client cancels, or at once when it already has; a cancelled stream sends nothing", () => {
    const cancels: string[] = [];
    const live = new FakeCall(create(Health.method.watch.input, {}));
    let liveStream: ServerStream<typeof Health.method.watch.output> | undefined;
    runStream({ watch: (_req, _ctx, stream) => void ((liveStream = stream), stream.onCancel(() => cancels.push("live"))) }, live);
    const gone = new FakeCall(create(Health.method.watch.input, {}));
    gone.cancelled = true;
    runStream({ watch: (_req, _ctx, stream) => stream.onCancel(() => cancels.push("gone")) }, gone);
    expect(cancels).toEqual(["gone"]);
    live.cancelled = true;
    live.emit("cancelled");
    expect(cancels).toEqual(["gone", "live"]);
    expect(liveStream?.closed).toBe(true);
    liveStream?.send(serving(HealthCheckResponse_ServingStatus.SERVING));
    liveStream?.end();
    expect(live.written).toEqual([]);
    expect(live.ended).toBe(false);
  });
});
