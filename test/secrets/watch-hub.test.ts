import { afterEach, describe, expect, it } from "vitest";
import type { Db, NotificationHandlers } from "../../src/store/db.js";
import { createWatchHub, type WatchHub } from "../../src/secrets/watch-hub.js";

// The hub alone, over a Db whose only part in use is `listen`: the test plays the
// database's notifications and reconnections.

function fakeDb() {
  let handlers: NotificationHandlers | undefined;
  let closed = false;
  const db = {
    listen: async (_channel: string, h: NotificationHandlers) => {
      handlers = h;
      return { close: async () => void (closed = true) };
    },
  } as unknown as Db;
  return { db, notify: (developer: string) => handlers?.notify(developer), resync: () => handlers?.resync(), isClosed: () => closed };
}

describe("the watch hub", () => {
  let hub: WatchHub | undefined;
  afterEach(async () => {
    await hub?.close();
  });

  const start = async (limits = { maxPerDeveloper: 2, maxPerReplica: 3 }, progressIntervalMs = 60_000) => {
    const fake = fakeDb();
    hub = createWatchHub({ db: fake.db, ...limits, progressIntervalMs });
    await hub.start();
    return { hub, ...fake };
  };
  /** Whether `p` has settled, after pending callbacks ran. */
  const settled = async (p: Promise<unknown>) => {
    let done = false;
    void p.then(() => (done = true), () => (done = true));
    await new Promise((r) => setImmediate(r));
    return done;
  };

  it("wakes the watches of the developer notified, and only those", async () => {
    const { hub, notify } = await start();
    const a = hub.open("alice", new AbortController().signal);
    const b = hub.open("bob", new AbortController().signal);
    const aNext = a.next();
    const bNext = b.next();
    notify("alice");
    expect(await aNext).toBe("changed");
    expect(await settled(bNext)).toBe(false);
    notify("bob");
    expect(await bNext).toBe("changed");
  });

  it("keeps a wake that came while the watch was busy, and wakes everyone on a resync", async () => {
    const { hub, notify, resync } = await start();
    const a = hub.open("alice", new AbortController().signal);
    notify("alice"); // nobody waiting: remembered
    expect(await a.next()).toBe("changed");
    const again = a.next();
    expect(await settled(again)).toBe(false);
    resync();
    expect(await again).toBe("changed");
  });

  it("ticks every waiting watch once per progress interval", async () => {
    const { hub } = await start(undefined, 100);
    const watches = [1, 2, 3].map((i) => hub.open(`d${i}`, new AbortController().signal));
    const t0 = Date.now();
    expect(await Promise.all(watches.map((w) => w.next()))).toEqual(["tick", "tick", "tick"]);
    expect(Date.now() - t0).toBeLessThan(1_000);
  });

  it("ends a wait when the caller goes, and refuses past the per-developer and per-replica limits until a watch closes", async () => {
    const { hub } = await start();
    const gone = new AbortController();
    const a1 = hub.open("alice", gone.signal);
    const a2 = hub.open("alice", new AbortController().signal);
    expect(() => hub.open("alice", new AbortController().signal)).toThrow(expect.objectContaining({ reason: "TOO_MANY_WATCHES", metadata: { limit: "2" } }));
    hub.open("bob", new AbortController().signal);
    expect(() => hub.open("carol", new AbortController().signal)).toThrow(expect.objectContaining({ reason: "TOO_MANY_WATCHES", metadata: { limit: "3" } }));
    expect(hub.size).toBe(3);

    const waiting = a1.next();
    gone.abort();
    expect(await waiting).toBe("aborted");
    a1.close();
    a1.close(); // twice is once
    expect(hub.size).toBe(2);
    hub.open("carol", new AbortController().signal);
    a2.close();
  });

  it("on close fails every wait and every later call with SHUTTING_DOWN, and stops listening", async () => {
    const { hub, isClosed } = await start();
    const a = hub.open("alice", new AbortController().signal);
    const waiting = a.next();
    await hub.close();
    await expect(waiting).rejects.toMatchObject({ reason: "SHUTTING_DOWN" });
    await expect(a.next()).rejects.toMatchObject({ reason: "SHUTTING_DOWN" });
    expect(() => hub.open("bob", new AbortController().signal)).toThrow(expect.objectContaining({ reason: "SHUTTING_DOWN" }));
    expect(isClosed()).toBe(true);
  });
});
