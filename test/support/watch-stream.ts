import * as grpc from "@grpc/grpc-js";
import { create, type MessageInitShape } from "@bufbuild/protobuf";
import {
  WatchSecretsRequestSchema,
  type WatchSecretsResponse,
} from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { toCallError, type CallError, type TestClient } from "./grpc-client.js";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";

/** An open WatchSecrets stream, read one response at a time. */
export interface WatchStream {
  /** The next response, waiting at most `timeoutMs`; rejects when the stream ended instead. */
  next(timeoutMs?: number): Promise<WatchSecretsResponse>;
  /** Responses received and not yet taken by `next`. */
  readonly buffered: readonly WatchSecretsResponse[];
  /** How the stream ended: its status as a CallError (OK is undefined). */
  readonly ended: Promise<CallError | undefined>;
  cancel(): void;
}

export function openWatch(
  client: TestClient<typeof SecretService>,
  request: MessageInitShape<typeof WatchSecretsRequestSchema>,
  token: string,
): WatchStream {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  const call = (client.raw as unknown as Record<string, (r: unknown, m: grpc.Metadata) => grpc.ClientReadableStream<WatchSecretsResponse>>)[
    "watchSecrets"
  ]!.call(client.raw, create(WatchSecretsRequestSchema, request), metadata);
  const buffered: WatchSecretsResponse[] = [];
  let waiter: (() => void) | undefined;
  let end: CallError | undefined | null = null;
  const ended = new Promise<CallError | undefined>((resolve) => {
    call.on("error", (e: grpc.ServiceError) => {
      end = e.code === grpc.status.CANCELLED ? undefined : toCallError(e);
      resolve(end);
      waiter?.();
    });
    call.on("end", () => {
      if (end === null) end = undefined;
      resolve(end);
      waiter?.();
    });
  });
  call.on("data", (r: WatchSecretsResponse) => {
    buffered.push(r);
    waiter?.();
  });
  return {
    buffered,
    ended,
    cancel: () => call.cancel(),
    async next(timeoutMs = 10_000) {
      const deadline = Date.now() + timeoutMs;
      while (buffered.length === 0) {
        if (end !== null) throw end ?? new Error("the watch ended");
        const left = deadline - Date.now();
        if (left <= 0) throw new Error(`no watch response within ${timeoutMs} ms`);
        await new Promise<void>((resolve) => {
          const t = setTimeout(resolve, left);
          waiter = () => {
            clearTimeout(t);
            resolve();
          };
        });
        waiter = undefined;
      }
      return buffered.shift()!;
    },
  };
}
