import { durationMs } from "@bufbuild/protobuf/wkt";
import { status } from "@grpc/grpc-js";
import { countOf, dateOf } from "./convert.js";
import { asSecretsError, SecretsUnavailableError } from "./errors.js";
import { SecretService, WatchEventType as ProtoEventType, type WatchSecretsResponse } from "./gen/secrets/v1/secrets_pb.js";
import { backoffMs, cancelled, sleep, type RetryPolicy } from "./retry.js";
import type { Transport } from "./transport.js";
import type { WatchEvent, WatchEventType, WatchOptions, WatchTarget, WatchUpdate } from "./types.js";

/**
 * WatchSecrets for the SDK: one stream as plain WatchUpdates (`openWatch`), and the
 * watch callers iterate (`resumableWatch`), which reconnects by itself.
 *
 * Resuming: every response carries the revision up to which the developer's changes
 * have been delivered, and a reconnect asks for the changes after the last revision
 * seen. The service sends a developer's changes in revision order and never skips
 * one, so a resumed watch loses, repeats and reorders nothing. When the service no
 * longer holds that revision (FAILED_PRECONDITION, REVISION_UNAVAILABLE) the watch
 * starts again from a snapshot, which it yields like the first.
 *
 * Silence: an idle stream gets a response with no events every progress interval,
 * which the service states in its first response (30 s by default). A stream with no
 * response for 1.5 × that interval (SILENCE_MS until the first response) is treated
 * as lost (a half-open connection, a frozen server) and reconnected, as a dropped
 * one is.
 */

/** How long a stream may stay silent before its first response says the service's progress interval. */
export const SILENCE_MS = 45_000;

/** The silence after which a stream is lost, for a service that sends progress every `intervalMs`. */
export function silenceAfter(intervalMs: number): number {
  return intervalMs * 1.5;
}

/** The event types after which a name's current value is another (or none): what a cache or a process holding values reacts to. */
export const VALUE_CHANGES: ReadonlySet<WatchEventType> = new Set(["created", "updated", "deleted"]);

/** The request of one WatchSecrets stream. */
export interface WatchRequest {
  names: readonly string[];
  namePrefix: string;
  /** 0: start with a snapshot. */
  startRevision: number;
}

/** What one stream needs besides its request. */
export interface StreamOptions {
  signal?: AbortSignal | undefined;
  /** A token already read (the watched cache pins its caller's); otherwise read from the client's source. */
  token?: string | undefined;
  silenceMs?: number;
}

const TYPES: ReadonlyMap<ProtoEventType, WatchEventType> = new Map([
  [ProtoEventType.CREATED, "created"],
  [ProtoEventType.UPDATED, "updated"],
  [ProtoEventType.DELETED, "deleted"],
  [ProtoEventType.VERSION_DESTROYED, "versionDestroyed"],
  [ProtoEventType.ROTATION_DUE, "rotationDue"],
]);

/**
 * The request for a target, checked before anything is sent: an empty names list would mean
 * "every secret" to the service.
 */
export function watchRequest(target: WatchTarget, startRevision: number): WatchRequest {
  if (!Number.isSafeInteger(startRevision) || startRevision < 0) throw new RangeError("watch: fromRevision must be a revision a watch reported, or 0");
  if (target.names !== undefined) {
    if (target.names.length === 0) throw new TypeError('watch: names must hold 1 to 100 names (to watch every secret: { prefix: "" })');
    return { names: target.names, namePrefix: "", startRevision };
  }
  if (typeof target.prefix !== "string") throw new TypeError("watch: give names or a prefix");
  return { names: [], namePrefix: target.prefix, startRevision };
}

/**
 * One WatchSecrets stream, no reconnect: its responses as WatchUpdates. It fails
 * SecretsUnavailableError when the service ends it with OK (it never should) or stays
 * silent for `silenceMs` while the consumer waits for it.
 */
export async function* openWatch(transport: Transport, request: WatchRequest, options: StreamOptions): AsyncGenerator<WatchUpdate, void, undefined> {
  let silenceMs = options.silenceMs ?? SILENCE_MS;
  const silence = new AbortController();
  const signal = options.signal ? AbortSignal.any([options.signal, silence.signal]) : silence.signal;
  let timer: NodeJS.Timeout | undefined;
  const arm = () => {
    timer = setTimeout(() => silence.abort(), silenceMs);
    timer.unref();
  };
  const stream = transport.serverStream(
    SecretService.method.watchSecrets,
    { names: [...request.names], namePrefix: request.namePrefix, startRevision: BigInt(request.startRevision) },
    { signal, token: options.token },
  );
  arm();
  try {
    for await (const response of stream) {
      // Only the wait for the service counts, not the time the consumer takes.
      clearTimeout(timer);
      if (options.silenceMs === undefined && response.progressInterval) silenceMs = silenceAfter(durationMs(response.progressInterval));
      yield updateOf(response);
      arm();
    }
  } catch (e) {
    if (silence.signal.aborted && !options.signal?.aborted) throw lost(`no response from the watch within ${silenceMs / 1_000} s`);
    throw e;
  } finally {
    clearTimeout(timer);
  }
  throw lost("the service ended the watch");
}

/** The failure of a stream that was lost rather than refused. */
function lost(details: string): SecretsUnavailableError {
  return new SecretsUnavailableError({ code: status.UNAVAILABLE, details });
}

/**
 * The watch callers iterate: streams opened by `open` one after another, each resuming
 * after the last revision seen (a new snapshot after REVISION_UNAVAILABLE), with
 * backoff and full jitter between attempts while they fail UNAVAILABLE. Any other
 * failure ends it, as a SecretsError; so does `options.signal` (CANCELLED).
 */
export async function* resumableWatch(
  open: (startRevision: number, signal: AbortSignal | undefined) => AsyncGenerator<WatchUpdate, void, undefined>,
  startRevision: number,
  options: Pick<WatchOptions, "signal" | "onRetry">,
  policy: RetryPolicy,
  random: () => number = Math.random,
): AsyncGenerator<WatchUpdate, void, undefined> {
  const signal = options.signal;
  let revision = startRevision;
  let failures = 0;
  for (;;) {
    try {
      for await (const update of open(revision, signal)) {
        failures = 0;
        revision = update.revision;
        yield update;
      }
    } catch (e) {
      if (signal?.aborted) throw cancelled();
      const error = asSecretsError(e);
      if (error.reason === "REVISION_UNAVAILABLE") revision = 0;
      else if (error.code !== status.UNAVAILABLE) throw error;
      failures += 1;
      options.onRetry?.(error, failures);
    }
    if (signal?.aborted) throw cancelled();
    await sleep(backoffMs(policy, failures, random), signal);
  }
}

/** A response as the SDK's plain update; events of a type this SDK does not know are left out. */
function updateOf(response: WatchSecretsResponse): WatchUpdate {
  const revision = countOf(response.revision);
  if (response.snapshot) {
    return { kind: "snapshot", secrets: response.snapshot.secrets.map((s) => ({ name: s.name, version: s.version })), revision };
  }
  const events: WatchEvent[] = [];
  for (const e of response.events) {
    const type = TYPES.get(e.type);
    if (type !== undefined) events.push({ type, name: e.name, version: e.version, revision: countOf(e.revision), time: dateOf(e.time) });
  }
  return events.length === 0 ? { kind: "progress", revision } : { kind: "events", events, revision };
}

