import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { WatchEventType } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { masterKey, startReplicaCluster, type Replica, type ReplicaCluster } from "../support/fixtures.js";
import { openWatch, type WatchStream } from "../support/watch-stream.js";

// WatchSecrets across server processes on one Postgres: an event reaches a watcher
// on replica B only through the database (NOTIFY at commit, then B reads the log),
// each developer sees only its own changes, and SIGTERM ends B's watches with
// UNAVAILABLE so that their clients resume elsewhere.

describe.runIf(process.env["DATABASE_URL"])("WatchSecrets across replica processes", () => {
  let cluster: ReplicaCluster;
  let a: Replica;
  let b: Replica;

  beforeAll(async () => {
    cluster = await startReplicaCluster({ redis: true });
    const keyring = [masterKey("k1")];
    const env = { SECRETS_WATCH_PROGRESS_SECONDS: "1" };
    a = await cluster.start(keyring, env);
    b = await cluster.start(keyring, env);
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  const nextEvents = async (w: WatchStream) => {
    for (;;) {
      const r = await w.next();
      if (r.events.length > 0) return r.events;
    }
  };

  it("delivers a write on A to a watcher on B, and never another developer's", async () => {
    const alice = await cluster.token(`alice-${randomUUID()}`);
    const bob = await cluster.token(`bob-${randomUUID()}`);
    const aliceWatch = openWatch(b.secrets, {}, alice);
    const bobWatch = openWatch(b.secrets, {}, bob);
    await aliceWatch.next();
    const bobStart = (await bobWatch.next()).revision;

    // Same names for both developers: only the token decides whose change it is.
    await a.secrets.createSecret({ name: "shared_name", value: "alice's" }, alice);
    await a.secrets.updateSecret({ name: "shared_name", value: "alice's 2" }, alice);
    const events = [...(await nextEvents(aliceWatch))];
    while (events.length < 2) events.push(...(await nextEvents(aliceWatch)));
    expect(events.map((e) => [WatchEventType[e.type], e.name, e.version])).toEqual([
      ["CREATED", "shared_name", 1],
      ["UPDATED", "shared_name", 2],
    ]);

    await a.secrets.createSecret({ name: "shared_name", value: "bob's" }, bob);
    const bobEvents = await nextEvents(bobWatch);
    expect(bobEvents.map((e) => [WatchEventType[e.type], e.revision])).toEqual([["CREATED", bobStart + 1n]]);
    // Alice's stream saw nothing of Bob's create: its next response is a progress one at her own revision.
    const after = await aliceWatch.next(5_000);
    expect(after.events).toEqual([]);
    expect(after.revision).toBe(events.at(-1)!.revision);
    aliceWatch.cancel();
    bobWatch.cancel();
  }, 60_000);

  it("SIGTERM ends a replica's watches with UNAVAILABLE (SHUTTING_DOWN); they resume on another without a gap", async () => {
    const t = await cluster.token(`term-${randomUUID()}`);
    const onB = openWatch(b.secrets, {}, t);
    const start = (await onB.next()).revision;
    await a.secrets.createSecret({ name: "before_term", value: "v" }, t);
    const seen = await nextEvents(onB);
    const stopped = b.stop("SIGTERM");
    expect(await onB.ended).toMatchObject({ code: status.UNAVAILABLE, reason: "SHUTTING_DOWN" });
    expect(await stopped).toBe(0);

    await a.secrets.createSecret({ name: "after_term", value: "v" }, t);
    const resumed = openWatch(a.secrets, { startRevision: seen.at(-1)!.revision }, t);
    const replay = await nextEvents(resumed);
    expect(replay.map((e) => [e.name, e.revision])).toEqual([["after_term", start + 2n]]);
    resumed.cancel();
  }, 60_000);
});
