import type { SecretsClient, SecretsError, WatchTarget, WatchUpdate } from "@secrets-service/client";
import { describeError } from "./cli-error.js";
import { note } from "./output.js";

/**
 * The SDK's watch as the CLI's commands use it. A service that cannot be reached at
 * the start fails the command (exit 3), as for any other command; once the watch has
 * had a response, the SDK reconnects by itself and a lost connection is only noted on
 * stderr, once per outage.
 */
export async function* watchUpdates(
  client: SecretsClient,
  target: WatchTarget,
  options: { fromRevision?: number; signal: AbortSignal },
): AsyncGenerator<WatchUpdate, void, undefined> {
  const giveUp = new AbortController();
  let unreachable: SecretsError | undefined;
  let live = false;
  const onRetry = (error: SecretsError, attempt: number) => {
    if (!live && error.codeName === "UNAVAILABLE") {
      unreachable = error;
      giveUp.abort();
    } else if (attempt === 1) {
      note(`secrets: the watch was interrupted (${describeError(error).message}); resuming`);
    }
  };
  const signal = AbortSignal.any([options.signal, giveUp.signal]);
  try {
    for await (const update of client.secrets.watch(target, { fromRevision: options.fromRevision ?? 0, signal, onRetry })) {
      live = true;
      yield update;
    }
  } catch (e) {
    throw unreachable ?? e;
  }
}
