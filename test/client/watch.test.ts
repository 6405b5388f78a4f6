import { create } from "@bufbuild/protobuf";
import { durationFromMs } from "@bufbuild/protobuf/wkt";
import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import type { WatchUpdate } from "@secrets-service/client";
import { cancelled, retryPolicy } from "../../packages/client/src/retry.js";
import { WatchSecretsResponseSchema } from "../../packages/client/src/gen/secrets/v1/secrets_pb.js";
import type { Transport } from "../../packages/client/src/transport.js";
import { openWatch, resumableWatch, watchRequest } from "../../packages/client/src/watch.js";
import { events, failure, fakeStreams, settle, snapshot } from "./watch-fakes.js";

// The SDK's watch on its own, over scripted streams: where each new stream starts,
// what is yielded, which failures end it, and when a stream counts as lost
// (client-watch.test.ts runs it against the service).

const noWait = retryPolicy({ initialBackoffMs: 0, maxBackoffMs: 0 });

/** Takes `n` updates from `watch`. */
async function take(watch: AsyncGenerator<WatchUpdate>, n: number): Promise<WatchUpdate[]> {
  const out: WatchUpdate[] = [];
  while (out.length < n) {
    const next = await watch.next();
    if (next.done) break;
    out.push(next.value);
  }
  return out;
}

describe("resumableWatch", () => {
  it("resumes after the last revision yielded, progress included, and starts over from a snapshot after REVISION_UNAVAILABLE", async () => {
    const fake = fakeStreams();
    const retries: [string, number][] = [];
    const watch = resumableWatch((start, signal) => fake.open(start, "", signal), 0, { onRetry: (e, n) => retries.push([e.codeName, n]) }, noWait);
    const first = take(watch, 3);
    await settle();
    fake.streams[0]!.push(snapshot(5, [{ name: "a", version: 1 }]));
    fake.streams[0]!.push(events(["updated", "a", 2, 7]));
    fake.streams[0]!.push({ kind: "progress", revision: 9 });
    expect((await first).map((u) => [u.kind, u.revision])).toEqual([
      ["snapshot", 5],
      ["events", 7],
      ["progress", 9],
    ]);

    const second = take(watch, 1);
    fake.streams[0]!.fail(failure(status.UNAVAILABLE));
    await settle();
    fake.streams[1]!.push(events(["deleted", "a", 2, 12]));
    expect((await second)[0]).toMatchObject({ kind: "events", revision: 12 });

    const third = take(watch, 1);
    fake.streams[1]!.fail(failure(status.FAILED_PRECONDITION, "REVISION_UNAVAILABLE"));
    await settle();
    fake.streams[2]!.push(snapshot(40));
    expect(await third).toEqual([snapshot(40)]);
    expect(fake.streams.map((s) => s.startRevision)).toEqual([0, 9, 0]);
    expect(retries).toEqual([
      ["UNAVAILABLE", 1],
      ["FAILED_PRECONDITION", 1],
    ]);

    const ended = take(watch, 1);
    fake.streams[2]!.fail(failure(status.PERMISSION_DENIED, "SCOPE_MISSING"));
    await expect(ended).rejects.toMatchObject({ code: status.PERMISSION_DENIED, reason: "SCOPE_MISSING" });
    expect(fake.streams).toHaveLength(3);
  });

  it("starts from fromRevision, and a return() cancels the stream it holds", async () => {
    const fake = fakeStreams();
    const watch = resumableWatch((start, signal) => fake.open(start, "", signal), 17, { signal: new AbortController().signal }, noWait);
    const first = take(watch, 1);
    await settle();
    fake.streams[0]!.push(events(["created", "b", 1, 18]));
    await first;
    expect(fake.streams[0]!.startRevision).toBe(17);
    expect(fake.streams[0]!.closed).toBe(false);
    await watch.return();
    expect(fake.streams[0]!.closed).toBe(true);
    expect(fake.streams).toHaveLength(1);
  });

  it("fails CANCELLED when its signal aborts, also while it waits to reconnect", async () => {
    const fake = fakeStreams();
    const abort = new AbortController();
    const slow = retryPolicy({ initialBackoffMs: 60_000, maxBackoffMs: 60_000 });
    const watch = resumableWatch((start, signal) => fake.open(start, "", signal), 0, { signal: abort.signal }, slow, () => 0.99);
    const pending = take(watch, 1);
    await settle();
    fake.streams[0]!.fail(failure(status.UNAVAILABLE));
    await settle();
    abort.abort();
    await expect(pending).rejects.toMatchObject({ code: status.CANCELLED });
  });

  it("checks the target and the revision before anything is sent", () => {
    expect(() => watchRequest({ names: [] }, 0)).toThrow(TypeError);
    expect(() => watchRequest({ prefix: "" }, -1)).toThrow(RangeError);
    expect(() => watchRequest({ prefix: "" }, 1.5)).toThrow(RangeError);
    expect(watchRequest({ names: ["a", "b"] }, 3)).toEqual({ names: ["a", "b"], namePrefix: "", startRevision: 3 });
    expect(watchRequest({ prefix: "app_" }, 0)).toEqual({ names: [], namePrefix: "app_", startRevision: 0 });
  });

  it("treats a stream that stays silent, or that the service ends with OK, as lost (UNAVAILABLE)", async () => {
    const silent = {
      serverStream: async function* (_method: unknown, _request: unknown, options: { signal?: AbortSignal }) {
        await new Promise((_, reject) => options.signal?.addEventListener("abort", () => reject(cancelled())));
      },
    } as unknown as Transport;
    const request = watchRequest({ prefix: "" }, 0);
    await expect(openWatch(silent, request, { silenceMs: 50 }).next()).rejects.toMatchObject({
      codeName: "UNAVAILABLE",
      details: "no response from the watch within 0.05 s",
    });
    const ended = { serverStream: async function* () {} } as unknown as Transport;
    await expect(openWatch(ended, request, {}).next()).rejects.toMatchObject({ codeName: "UNAVAILABLE", details: "the service ended the watch" });
  });

  it("takes the silence it allows from the progress interval the service states in its first response", async () => {
    // A first response saying "progress every 40 ms", then nothing: lost after 60 ms, not SILENCE_MS.
    const stating = {
      serverStream: async function* (_method: unknown, _request: unknown, options: { signal?: AbortSignal }) {
        yield create(WatchSecretsResponseSchema, { snapshot: {}, revision: 3n, progressInterval: durationFromMs(40) });
        await new Promise((_, reject) => options.signal?.addEventListener("abort", () => reject(cancelled())));
      },
    } as unknown as Transport;
    const stream = openWatch(stating, watchRequest({ prefix: "" }, 0), {});
    expect((await stream.next()).value).toMatchObject({ kind: "snapshot", revision: 3 });
    await expect(stream.next()).rejects.toMatchObject({ codeName: "UNAVAILABLE", details: "no response from the watch within 0.06 s" });
  });
});
