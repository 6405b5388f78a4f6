import { afterEach, describe, expect, it } from "vitest";
import type { AppError } from "../../src/api/errors.js";
import type { Db, NotificationHandlers } from "../../src/store/db.js";
import { createWatchHub, type WatchHub, type WatchSubscriber } from "../../src/secrets/watch-hub.js";

// The hub alone, over a Db whose only part in use is `listen`: the test plays the
// database's notifications and reconnections, and records what the hub tells each watch.

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

/** A watch that writes down what the hub told it. */
function recorder(): WatchSubscriber & { heard: string[]; error?: AppError } {
  const w: WatchSubscriber & { heard: string[]; error?: AppError } = {
    heard: [],
    changed: () => void w.heard.push("changed"),
    tick: () => void w.heard.push("tick"),
    shutDown: (error) => {
      w.heard.push("shutDown");
      w.error = error;
    },
  };
  return w;
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

  it("wakes the watches of the developer notified, and only those; a resync wakes everyone; each wake counts", async () => {
    const { hub, notify, resync } = await start();
    const a = recorder();
    const b = recorder();
    hub.open("alice", a);
    hub.open("bob", b);
    expect(hub.wakes).toBe(0);
    notify("alice");
    expect([a.heard, b.heard]).toEqual([["changed"], []]);
    notify("carol"); // nobody watches carol
    resync();
    expect([a.heard, b.heard]).toEqual([["changed", "changed"], ["changed"]]);
    expect(hub.wakes).toBe(3);
  });

  it("ticks every watch once per progress interval", async () => {
    const { hub } = await start(undefined, 100);
    const watches = [1, 2, 3].map(() => recorder());
    watches.forEach((w, i) => hub.open(`d${i}`, w));
    await expect.poll(() => watches.map((w) => w.heard.includes("tick")), { timeout: 1_000 }).toEqual([true, true, true]);
    expect(watches.every((w) => w.heard.every((h) => h === "tick"))).toBe(true);
  });

  it("refuses past the per-developer and per-replica limits until a watch is removed; a removed watch hears nothing", async () => {
    const { hub, notify } = await start();
    const [a1, a2, b1] = [recorder(), recorder(), recorder()];
    hub.open("alice", a1);
    hub.open("alice", a2);
    expect(() => hub.open("alice", recorder())).toThrow(expect.objectContaining({ reason: "TOO_MANY_WATCHES", metadata: { limit: "2" } }));
    hub.open("bob", b1);
    expect(() => hub.open("carol", recorder())).toThrow(expect.objectContaining({ reason: "TOO_MANY_WATCHES", metadata: { limit: "3" } }));
    expect(hub.size).toBe(3);

    hub.remove("alice", a1);
    hub.remove("alice", a1); // twice is once
    hub.remove("bob", a2); // not bob's: nothing
    expect(hub.size).toBe(2);
    notify("alice");
    expect([a1.heard, a2.heard]).toEqual([[], ["changed"]]);
    hub.open("carol", recorder());
    expect(hub.size).toBe(3);
  });

  it("on close tells every watch SHUTTING_DOWN once, refuses new ones, and stops listening", async () => {
    const { hub, notify, isClosed } = await start();
    const a = recorder();
    hub.open("alice", a);
    await hub.close();
    expect(a.heard).toEqual(["shutDown"]);
    expect(a.error).toMatchObject({ reason: "SHUTTING_DOWN" });
    expect(hub.size).toBe(0);
    notify("alice");
    expect(a.heard).toEqual(["shutDown"]);
    expect(() => hub.open("bob", recorder())).toThrow(expect.objectContaining({ reason: "SHUTTING_DOWN" }));
    expect(isClosed()).toBe(true);
  });
});
