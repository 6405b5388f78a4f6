import type { DescMessage, DescMethodUnary, MessageInitShape, MessageShape } from "@bufbuild/protobuf";
import type { CallOptions } from "./types.js";

/**
 * How the SDK's service APIs reach the channel: one unary call with the client's
 * deadline, retried on UNAVAILABLE only when `idempotent` (a read). SecretsClient
 * provides it, so every service shares one channel, one deadline and one retry policy.
 */
export type UnaryCall = <I extends DescMessage, O extends DescMessage>(
  method: DescMethodUnary<I, O>,
  request: MessageInitShape<I>,
  idempotent: boolean,
  options: CallOptions | undefined,
) => Promise<MessageShape<O>>;

/** Every item of a paged listing, fetching the next page only as the iteration reaches it. */
export async function* pages<T>(fetch: (pageToken: string) => Promise<{ items: T[]; next: string }>): AsyncGenerator<T> {
  let pageToken = "";
  do {
    const page = await fetch(pageToken);
    yield* page.items;
    pageToken = page.next;
  } while (pageToken !== "");
}
