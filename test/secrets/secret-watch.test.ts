import { randomUUID } from "node:crypto";
import { afterAll, afterEach, beforeAll, describe, expect, it } from "vitest";
import type { Principal } from "../../src/auth/principal.js";
import { createSecretWatch, type WatchBatch, type WatchOutput } from "../../src/secrets/secret-watch.js";
import { createWatchHub, type WatchHub } from "../../src/secrets/watch-hub.js";
import type { Db, NotificationHandlers, QueryResult } from "../../src/store/db.js";
import { startTestService, type TestService } from "../support/fixtures.js";

// The watch use case on its own, on the service's database (Postgres with DATABASE_URL,
// else the embedded one): writes go through a running service, while the test plays the
// hub's notifications and decides when each read of the change log returns. A held read
// has already run when it is held, as a query that began before a later commit.

/** What a watch sent, and a stream buffer the test fills and drains. */
function output() {
  const batches: WatchBatch[] = [];
  const failures: unknown[] = [];
  let room = true;
  let drain: (() => void) | undefined;
  const out: WatchOutput = {
    send(batch) {
      batches.push(batch);
      return room;
    },
    drained: () => new Promise<void>((resolve) => (drain = resolve)),
    fail: (error) => void failures.push(error),
  };
  return {
    out,
    batches,
    failures,
    /** Revisions of the events sent so far. */
    revisions: () => batches.flatMap((b) => b.events.map((e) => e.revision)),
    fill: () => void (room = false),
    drain() {
      room = true;
      drain?.();
    },
  };
}

describe("a watch", () => {
  let svc: TestService;
  let hub: WatchHub;
  let notify: (developerId: string) => void = () => undefined;
  /** Reads of the change log that ran and whose results wait for `release`. */
  const held: { after: number; release: () => void }[] = [];
  let holding = false;

  beforeAll(async () => {
    svc = await startTestService({ SECRETS_WRITE_RATE: "0" }, { lifecycleJobs: "manual" });
    const db: Db = {
      ...svc.db,
      async query<R>(text: string, params?: readonly unknown[]): Promise<QueryResult<R>> {
        const result = await svc.db.query<R>(text, params);
        if (holding && text.includes("FROM secret_changes")) {
          await new Promise<void>((release) => held.push({ after: Number(params?.[1]), release }));
        }
        return result;
      },
      async listen(_channel: string, handlers: NotificationHandlers) {
        notify = handlers.notify;
        return { close: async () => undefined };
      },
    };
    hub = createWatchHub({ db, maxPerDeveloper: 10, maxPerReplica: 10, progressIntervalMs: 3_600_000 });
    await hub.start();
    watches = createSecretWatch({ db, hub, reads: { take: () => undefined } });
  });
  let watches: ReturnType<typeof createSecretWatch>;

  afterEach(() => {
    holding = false;
    for (const h of held.splice(0)) h.release();
  });

  afterAll(async () => {
    holding = false;
    for (const h of held) h.release();
    await hub?.close();
    await svc?.stop();
  });

  const principal = (developerId: string): Principal => ({
    developerId,
    scopes: new Set(["secrets:read"]),
    allowlist: null,
    tokenId: undefined,
    expiresAt: Math.floor(Date.now() / 1000) + 600,
  });
  /** Once `count` reads after `after` are held, lets the newest return. */
  const releaseWhere = async (after: number, count = 1) => {
    await expect.poll(() => held.filter((h) => h.after === after).length).toBe(count);
    const i = held.findLastIndex((h) => h.after === after);
    held.splice(i, 1)[0]!.release();
  };

  it("joins only a read of the log begun since the latest wake, so a commit after an older read is not missed", async () => {
    const developer = `watch-${randomUUID()}`;
    const token = await svc.token(developer);
    await svc.secrets.createSecret({ name: "s1", value: "v" }, token);
    await svc.secrets.createSecret({ name: "s2", value: "v" }, token);
    const w1 = output();
    watches.watchSecrets(principal(developer), { names: [], namePrefix: "", startRevision: 0n }, w1.out);
    await expect.poll(() => w1.batches.length).toBe(1);
    expect(w1.batches[0]?.revision).toBe(2);

    holding = true;
    notify(developer); // w1 reads after revision 2; the read runs, and is held
    await expect.poll(() => held.length).toBe(1);
    const w4 = output();
    watches.watchSecrets(principal(developer), { names: [], namePrefix: "", startRevision: 1n }, w4.out);
    await releaseWhere(1); // w4 replays revision 2, and stands where w1's held read does
    await expect.poll(() => w4.revisions()).toEqual([2]);

    await svc.secrets.createSecret({ name: "s3", value: "v" }, token); // revision 3, after w1's read ran
    notify(developer);
    // w4 must not take w1's older read, which cannot hold revision 3: it reads anew.
    await releaseWhere(2, 2);
    await expect.poll(() => w4.revisions()).toEqual([2, 3]);
    // w1 was reading when the wake came: once its held read returns, it reads again.
    await releaseWhere(2);
    await releaseWhere(2);
    await expect.poll(() => w1.revisions()).toEqual([3]);
    holding = false;
    expect([...w1.failures, ...w4.failures]).toEqual([]);
  });

  it("waits while the stream's buffer is full, then sends every change that came meanwhile, in order", async () => {
    const developer = `watch-${randomUUID()}`;
    const token = await svc.token(developer);
    await svc.secrets.createSecret({ name: "first", value: "v" }, token);
    const w = output();
    w.fill();
    watches.watchSecrets(principal(developer), { names: [], namePrefix: "", startRevision: 0n }, w.out);
    await expect.poll(() => w.batches.length).toBe(1); // the snapshot, into a full buffer
    for (const name of ["a", "b", "c"]) {
      await svc.secrets.createSecret({ name, value: "v" }, token);
      notify(developer);
    }
    // Still waiting for room: nothing more is sent.
    await new Promise((r) => setTimeout(r, 200));
    expect(w.batches).toHaveLength(1);
    w.drain();
    await expect.poll(() => w.revisions()).toEqual([2, 3, 4]);
    expect(w.batches.at(-1)?.revision).toBe(4);
    expect(w.failures).toEqual([]);
  });
});
