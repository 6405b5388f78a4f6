import * as grpc from "@grpc/grpc-js";
import { create, type MessageInitShape, type MessageShape } from "@bufbuild/protobuf";
import { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { CallError, toCallError, type TestClient } from "./grpc-client.js";

type Methods = (typeof SecretService)["method"];
type MethodName = keyof Methods;

/** One call as a fault test records it: outcome, timing, and the server's request id (x-request-id trailer). */
export type TracedResult<K extends MethodName> = {
  method: K;
  startedAt: number;
  endedAt: number;
  requestId: string | undefined;
} & ({ ok: true; response: MessageShape<Methods[K]["output"]> } | { ok: false; error: CallError });

/**
 * A unary SecretService call on `client` that never rejects: it resolves with the
 * response or the CallError, plus the request id the server put in the trailers
 * (for OK calls too, which the plain test client does not expose).
 */
export function tracedCall<K extends MethodName>(
  client: TestClient<typeof SecretService>,
  method: K,
  request: MessageInitShape<Methods[K]["input"]>,
  token: string,
  timeoutMs = 20_000,
): Promise<TracedResult<K>> {
  const desc = SecretService.method[method];
  const startedAt = Date.now();
  return new Promise((resolve) => {
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${token}`);
    let outcome: { ok: true; response: MessageShape<Methods[K]["output"]> } | { ok: false; error: CallError } | undefined;
    const fn = (client.raw as unknown as Record<string, Function>)[desc.localName] as Function;
    const call = fn.call(
      client.raw,
      create(desc.input, request as never),
      metadata,
      { deadline: startedAt + timeoutMs },
      (err: grpc.ServiceError | null, res: MessageShape<Methods[K]["output"]>) => {
        outcome = err ? { ok: false, error: toCallError(err) } : { ok: true, response: res };
      },
    ) as grpc.ClientUnaryCall;
    // grpc-js emits 'status' right after the callback, with the trailers.
    call.on("status", (s: grpc.StatusObject) => {
      const id = s.metadata?.get("x-request-id")[0];
      const result = outcome ?? { ok: false as const, error: new CallError(s.code, s.details, undefined, s.metadata) };
      resolve({ method, startedAt, endedAt: Date.now(), requestId: typeof id === "string" ? id : undefined, ...result } as TracedResult<K>);
    });
  });
}

/** "OK", or the status name and reason of a failed call, for tallies and messages. */
export function outcomeOf(r: TracedResult<MethodName>): string {
  return r.ok ? "OK" : `${grpc.status[r.error.code]}${r.error.reason ? `/${r.error.reason}` : ""}`;
}
