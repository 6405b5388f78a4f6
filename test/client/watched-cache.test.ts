import { status } from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { retryPolicy } from "../../packages/client/src/retry.js";
import { createWatchedCache } from "../../packages/client/src/watched-cache.js";
import { events, failure, fakeStreams, settle, snapshot } from "./watch-fakes.js";

// The watched cache on its own, over scripted streams: what it serves from memory and
// when it must read through (client-watched-cache.test.ts runs it against the service).

function harness() {
  const fake = fakeStreams();
  const cache = createWatchedCache({
    open: (token, signal) => fake.open(0, token, signal),
    policy: retryPolicy({ initialBackoffMs: 0, maxBackoffMs: 0 }),
  });
  const loads: string[] = [];
  let version = 0;
  const access = (name: string, token = "token-a") =>
    cache.access({ token, scope: `scope-of-${token}` }, name, async () => {
      loads.push(name);
      version += 1;
      return { name, version, value: `value-${version}` };
    });
  return { cache, access, loads, streams: fake.streams };
}

describe("the watched cache", () => {
  it("reads through until its stream's snapshot, then answers from memory until an event drops the name", async () => {
    const h = harness();
    await h.access("a");
    await h.access("a");
    expect(h.loads).toEqual(["a", "a"]);
    expect(h.streams.map((s) => s.token)).toEqual(["token-a"]);

    h.streams[0]!.push(snapshot(10));
    await settle();
    expect((await h.access("a")).value).toBe("value-3");
    expect((await h.access("a")).value).toBe("value-3");
    expect(h.loads).toHaveLength(3);

    h.streams[0]!.push(events(["versionDestroyed", "a", 1, 11], ["rotationDue", "a", 3, 12], ["updated", "other", 2, 13]));
    await settle();
    await h.access("a");
    expect(h.loads, "events that leave a's value alone").toHaveLength(3);

    h.streams[0]!.push(events(["updated", "a", 4, 14]));
    await settle();
    expect((await h.access("a")).value).toBe("value-4");
    expect(h.loads).toHaveLength(4);
  });

  it("does not store a load that was in flight when its name's event arrived", async () => {
    const fake = fakeStreams();
    const cache = createWatchedCache({ open: (token, signal) => fake.open(0, token, signal), policy: retryPolicy({ initialBackoffMs: 0, maxBackoffMs: 0 }) });
    const caller = { token: "t", scope: "s" };
    await cache.access(caller, "k", async () => ({ name: "k", version: 1, value: "old" }));
    fake.streams[0]!.push(snapshot(1));
    await settle();

    let release: (() => void) | undefined;
    const slow = cache.access(caller, "k", () => new Promise((resolve) => (release = () => resolve({ name: "k", version: 1, value: "old" }))));
    fake.streams[0]!.push(events(["updated", "k", 2, 2]));
    await settle();
    release?.();
    expect((await slow).value).toBe("old");
    expect((await cache.access(caller, "k", async () => ({ name: "k", version: 2, value: "new" }))).value).toBe("new");
  });

  it("reads through from the moment its stream fails until a new stream's snapshot", async () => {
    const h = harness();
    await h.access("a");
    h.streams[0]!.push(snapshot(1));
    await settle();
    await h.access("a");
    expect(h.loads).toHaveLength(2);

    h.streams[0]!.fail(failure(status.UNAVAILABLE));
    await settle();
    await h.access("a");
    await h.access("a");
    expect(h.loads, "no answer from memory while no stream is in sync").toHaveLength(4);
    expect(h.streams).toHaveLength(2);

    h.streams[1]!.push(snapshot(5));
    await settle();
    await h.access("a");
    await h.access("a");
    expect(h.loads, "the old values are gone: one load, then memory").toHaveLength(5);

    // REVISION_UNAVAILABLE (a shred) and TOO_MANY_WATCHES are retried too.
    h.streams[1]!.fail(failure(status.FAILED_PRECONDITION, "REVISION_UNAVAILABLE"));
    await settle();
    h.streams[2]!.fail(failure(status.RESOURCE_EXHAUSTED, "TOO_MANY_WATCHES"));
    await settle();
    expect(h.streams).toHaveLength(4);
  });

  it("gives up on a token the service refuses a watch to, and reads through for it", async () => {
    const h = harness();
    await h.access("a");
    h.streams[0]!.fail(failure(status.PERMISSION_DENIED, "SCOPE_MISSING"));
    await settle();
    for (let i = 0; i < 3; i++) await h.access("a");
    expect(h.loads).toHaveLength(4);
    expect(h.streams).toHaveLength(1);
  });

  it("keeps streams for the 4 most recently used tokens, and clear() ends them all", async () => {
    const h = harness();
    for (const token of ["t1", "t2", "t3", "t4", "t5"]) await h.access("a", token);
    expect(h.streams.map((s) => s.token)).toEqual(["t1", "t2", "t3", "t4", "t5"]);
    expect(h.streams.map((s) => s.signal.aborted)).toEqual([true, false, false, false, false]);
    // t2 used again (twice in a row), then a new token: the least recently used is t3's.
    await h.access("a", "t2");
    await h.access("a", "t2");
    await h.access("a", "t6");
    expect(h.streams.map((s) => `${s.token}:${s.signal.aborted ? "closed" : "open"}`)).toEqual([
      "t1:closed", "t2:open", "t3:closed", "t4:open", "t5:open", "t6:open",
    ]);
    h.cache.clear();
    expect(h.streams.every((s) => s.signal.aborted)).toBe(true);
    // The token used last opens a new stream after clear(), like any other.
    await h.access("a", "t6");
    expect(h.streams.map((s) => s.token)).toEqual(["t1", "t2", "t3", "t4", "t5", "t6", "t6"]);
    expect(h.streams.at(-1)?.signal.aborted).toBe(false);
    h.cache.clear();
  });
});
