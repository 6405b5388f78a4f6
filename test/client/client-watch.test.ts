import { randomUUID } from "node:crypto";
import { connect, createServer, type Socket } from "node:net";
import { pipeline } from "node:stream";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SecretsClient, SecretsError, type WatchEvent, type WatchUpdate } from "@secrets-service/client";
import type { Db } from "../../src/store/db.js";
import { openPostgres } from "../../src/store/pg-db.js";
import { seededRandom } from "../support/seeded-random.js";
import { startTcpProxy } from "../support/tcp-proxy.js";
import { startTestService, type TestService } from "../support/test-service.js";
import { expectSecretsError, randomValue } from "./client-fixtures.js";

// client.secrets.watch against a real service over loopback: plain updates, resume
// after connections cut on a seeded random schedule, a new snapshot when the service
// cannot resume, one developer's changes only, the failures that end a watch, and (on
// Postgres, two services on one database) a move to another replica when one shuts down.

let svc: TestService;

beforeAll(async () => {
  svc = await startTestService({ SECRETS_WRITE_RATE: "0", SECRETS_READ_RATE: "0", SECRETS_WATCH_MAX_PER_DEVELOPER: "3" });
});

afterAll(async () => {
  await svc?.stop();
});

const developer = () => `watch-sdk-${randomUUID()}`;

/** Pulls updates until `done` says so, failing after `timeoutMs`. */
async function collect(updates: AsyncGenerator<WatchUpdate>, done: (seen: WatchUpdate[]) => boolean, timeoutMs = 20_000): Promise<WatchUpdate[]> {
  const seen: WatchUpdate[] = [];
  const deadline = Date.now() + timeoutMs;
  while (!done(seen)) {
    const next = await Promise.race([
      updates.next(),
      new Promise<never>((_, reject) => setTimeout(() => reject(new Error(`watch: no update within ${timeoutMs} ms`)), Math.max(deadline - Date.now(), 1))),
    ]);
    if (next.done) throw new Error("the watch ended");
    seen.push(next.value);
  }
  return seen;
}

const eventsOf = (updates: readonly WatchUpdate[]): WatchEvent[] => updates.flatMap((u) => (u.kind === "events" ? u.events : []));
const brief = (events: readonly WatchEvent[]) => events.map((e) => [e.type, e.name, e.version]);

describe("client.secrets.watch", () => {
  it("yields a snapshot, then each change as plain objects, never a value; breaking out ends the stream", async () => {
    const client = await svc.connectClient(developer());
    const value = randomValue("watched");
    await client.secrets.create({ name: "w_db", value });
    // The service allows 3 watches per developer: four watches in a row work only if each break ended its stream.
    for (let round = 0; round < 4; round++) {
      const watch = client.secrets.watch({ names: ["w_db", "w_api"] });
      const [snapshot] = await collect(watch, (s) => s.length === 1);
      expect(snapshot).toEqual({ kind: "snapshot", secrets: [{ name: "w_db", version: 1 }], revision: expect.any(Number) });
      await watch.return();
    }

    const watch = client.secrets.watch({ prefix: "w_" });
    const start = (await collect(watch, (s) => s.length === 1))[0]!.revision;
    await client.secrets.update("w_db", { value: randomValue("second") });
    await client.secrets.create({ name: "other", value: "unwatched" });
    await client.secrets.create({ name: "w_api", value: randomValue("api") });
    await client.secrets.delete("w_api", { force: true });
    const updates = await collect(watch, (s) => eventsOf(s).length === 3);
    const events = eventsOf(updates);
    expect(brief(events)).toEqual([
      ["updated", "w_db", 2],
      ["created", "w_api", 1],
      ["deleted", "w_api", 1],
    ]);
    expect(events.map((e) => e.revision)).toEqual([start + 1, start + 3, start + 4]);
    expect(events[0]).toEqual({ type: "updated", name: "w_db", version: 2, revision: start + 1, time: expect.any(Date) });
    expect(Object.getPrototypeOf(updates[0])).toBe(Object.prototype);
    expect(JSON.stringify(updates)).not.toContain(value);
    await watch.return();
  });

  it(
    "resumes after connections cut on a seeded random schedule, losing, repeating and reordering nothing",
    { timeout: 90_000 },
    async () => {
      const seed = Number(process.env["WATCH_SEED"] ?? Date.now() % 1_000_000);
      const random = seededRandom(seed);
      const dev = developer();
      const writer = await svc.connectClient(dev);
      const proxy = await startTcpProxy("127.0.0.1", Number(svc.address.split(":")[1]));
      const token = await svc.token(dev);
      let opens = 0;
      const countedToken = () => {
        opens += 1;
        return token;
      };
      const watcher = new SecretsClient({ address: `127.0.0.1:${proxy.port}`, token: countedToken, retry: { initialBackoffMs: 20, maxBackoffMs: 200 } });
      const watch = watcher.secrets.watch({ prefix: "" });
      try {
        const start = (await collect(watch, (s) => s.length === 1))[0]!.revision;
        const names = ["r_a", "r_b", "r_c"];
        const writes = 60;
        // Writes and cuts interleave: a write every few ms, a cut of 20-250 ms every 50-400 ms, all within a few seconds.
        const writing = (async () => {
          for (let i = 0; i < writes; i++) {
            const name = names[i % names.length]!;
            if (i < names.length) await writer.secrets.create({ name, value: `v${i}` });
            else await writer.secrets.update(name, { value: `v${i}` });
            await new Promise((r) => setTimeout(r, random.int(0, 40)));
          }
        })();
        let cuts = 0;
        const cutting = (async () => {
          const until = Date.now() + 4_000;
          while (Date.now() < until) {
            await new Promise((r) => setTimeout(r, random.int(50, 400)));
            await proxy.down();
            cuts += 1;
            await new Promise((r) => setTimeout(r, random.int(20, 250)));
            await proxy.up();
          }
        })();
        const [updates] = await Promise.all([collect(watch, (s) => eventsOf(s).length >= writes, 60_000), writing, cutting]);
        const events = eventsOf(updates);
        expect(cuts, `seed ${seed}`).toBeGreaterThan(3);
        // The cuts ended streams: the watch read its token for each stream it opened.
        expect(opens, `seed ${seed}`).toBeGreaterThan(3);
        expect(events.map((e) => e.revision), `seed ${seed}`).toEqual(Array.from({ length: writes }, (_, i) => start + i + 1));
        expect(updates.filter((u) => u.kind === "snapshot"), `seed ${seed}`).toEqual([]);
        for (const name of names) {
          const versions = events.filter((e) => e.name === name).map((e) => e.version);
          expect(versions, `seed ${seed}`).toEqual(versions.map((_, i) => i + 1));
        }
      } finally {
        await watch.return();
        watcher.close();
        await proxy.close();
      }
    },
  );

  it("takes a new snapshot when the service cannot resume (REVISION_UNAVAILABLE)", async () => {
    const client = await svc.connectClient(developer());
    await client.secrets.create({ name: "s_one", value: "v" });
    const first = client.secrets.watch({ prefix: "s_" });
    const at = (await collect(first, (s) => s.length === 1))[0]!.revision;
    await first.return();

    // A revision the developer never reached: the service refuses to resume from it.
    const watch = client.secrets.watch({ prefix: "s_" }, { fromRevision: at + 100 });
    const [reset] = await collect(watch, (s) => s.length === 1);
    expect(reset).toEqual({ kind: "snapshot", secrets: [{ name: "s_one", version: 1 }], revision: at });
    await client.secrets.update("s_one", { value: "v2" });
    expect(brief(eventsOf(await collect(watch, (s) => eventsOf(s).length === 1)))).toEqual([["updated", "s_one", 2]]);
    await watch.return();

    // From a revision it holds: the changes after it, no snapshot.
    const resumed = client.secrets.watch({ prefix: "s_" }, { fromRevision: at });
    const [replay] = await collect(resumed, (s) => s.length === 1);
    expect(replay).toMatchObject({ kind: "events", revision: at + 1 });
    await resumed.return();
  });

  it("takes a new snapshot when it resumes after the service trimmed the changes it missed (retention)", async () => {
    const clock = { now: Date.now() };
    const trimming = await startTestService(
      { SECRETS_WRITE_RATE: "0", SECRETS_READ_RATE: "0", SECRETS_WATCH_RETENTION_HOURS: "1" },
      { clock: () => new Date(clock.now), lifecycleJobs: "manual" },
    );
    const proxy = await startTcpProxy("127.0.0.1", Number(trimming.address.split(":")[1]));
    const dev = developer();
    const writer = await trimming.connectClient(dev);
    const watcher = new SecretsClient({ address: `127.0.0.1:${proxy.port}`, token: await trimming.token(dev), retry: { initialBackoffMs: 20, maxBackoffMs: 100 } });
    const watch = watcher.secrets.watch({ prefix: "" });
    try {
      const start = (await collect(watch, (s) => s.length === 1))[0]!.revision;
      await writer.secrets.create({ name: "kept", value: "v1" });
      await collect(watch, (s) => eventsOf(s).length === 1);

      await proxy.down();
      await writer.secrets.update("kept", { value: "v2" });
      await writer.secrets.create({ name: "added", value: "v" });
      clock.now += 2 * 3_600_000;
      expect((await trimming.service.runLifecycleJobs()).changesTrimmed).toBeGreaterThanOrEqual(3);
      await proxy.up();

      const [reset] = await collect(watch, (s) => s.length === 1);
      expect(reset).toEqual({
        kind: "snapshot",
        secrets: [
          { name: "added", version: 1 },
          { name: "kept", version: 2 },
        ],
        revision: start + 3,
      });
      await writer.secrets.update("added", { value: "v2" });
      expect(brief(eventsOf(await collect(watch, (s) => eventsOf(s).length === 1)))).toEqual([["updated", "added", 2]]);
    } finally {
      await watch.return();
      watcher.close();
      await proxy.close();
      await trimming.stop();
    }
  });

  it("never shows another developer's changes, nor an allowlisted token the names outside its list", async () => {
    const me = developer();
    const mine = await svc.connectClient(me);
    const theirs = await svc.connectClient(developer());
    const narrow = new SecretsClient({ address: svc.address, token: await svc.token(me, { allowlist: ["shared_name"] }) });
    const watch = mine.secrets.watch({ prefix: "" });
    const narrowWatch = narrow.secrets.watch({ prefix: "" });
    try {
      await collect(watch, (s) => s.length === 1);
      await collect(narrowWatch, (s) => s.length === 1);
      await theirs.secrets.create({ name: "shared_name", value: "theirs" });
      await theirs.secrets.update("shared_name", { value: "theirs2" });
      await mine.secrets.create({ name: "mine_only", value: "mine" });
      await mine.secrets.create({ name: "shared_name", value: "mine" });
      expect(brief(eventsOf(await collect(watch, (s) => eventsOf(s).length >= 2)))).toEqual([
        ["created", "mine_only", 1],
        ["created", "shared_name", 1],
      ]);
      expect(brief(eventsOf(await collect(narrowWatch, (s) => eventsOf(s).length >= 1)))).toEqual([["created", "shared_name", 1]]);
    } finally {
      await watch.return();
      await narrowWatch.return();
      narrow.close();
    }
  });

  it("ends with a SecretsError on a refusal, and CANCELLED when its signal aborts or its client closes", async () => {
    const dev = developer();
    const noRead = new SecretsClient({ address: svc.address, token: await svc.token(dev, { scopes: ["secrets:access"] }) });
    const narrow = new SecretsClient({ address: svc.address, token: await svc.token(dev, { allowlist: ["allowed"] }) });
    try {
      const refused = await expectSecretsError(() => collect(noRead.secrets.watch({ prefix: "" }), () => false));
      expect(refused).toMatchObject({ codeName: "PERMISSION_DENIED", reason: "SCOPE_MISSING" });
      const outside = await expectSecretsError(() => collect(narrow.secrets.watch({ names: ["elsewhere"] }), () => false));
      expect(outside).toMatchObject({ codeName: "PERMISSION_DENIED", reason: "NOT_ALLOWLISTED" });
      const invalid = await expectSecretsError(() => collect(narrow.secrets.watch({ names: ["bad name"] }), () => false));
      expect(invalid).toMatchObject({ codeName: "INVALID_ARGUMENT", reason: "INVALID_NAME" });
      expect(() => narrow.secrets.watch({ names: [] })).toThrow(TypeError);

      const abort = new AbortController();
      const watch = narrow.secrets.watch({ prefix: "" }, { signal: abort.signal });
      await collect(watch, (s) => s.length === 1);
      setTimeout(() => abort.abort(), 50);
      const cancelled = await expectSecretsError(() => collect(watch, () => false));
      expect(cancelled).toBeInstanceOf(SecretsError);
      expect(cancelled.codeName).toBe("CANCELLED");

      const open = narrow.secrets.watch({ prefix: "" });
      await collect(open, (s) => s.length === 1);
      setTimeout(() => narrow.close(), 50);
      expect((await expectSecretsError(() => collect(open, () => false))).codeName, "closing the client ends its watches").toBe("CANCELLED");
    } finally {
      noRead.close();
      narrow.close();
    }
  });
});

/**
 * A loopback TCP proxy whose new connections go to whichever port `target` names at the time, as a load
 * balancer's would after a replica leaves (test/support/tcp-proxy.ts has a fixed target).
 */
async function switchingProxy(target: { port: number }): Promise<{ port: number; close(): Promise<void> }> {
  const open = new Set<Socket>();
  const server = createServer((client) => {
    const upstream = connect(target.port, "127.0.0.1");
    open.add(client).add(upstream);
    pipeline(client, upstream, client, () => {
      open.delete(client);
      open.delete(upstream);
    });
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  return {
    port: (server.address() as { port: number }).port,
    close: () =>
      new Promise((resolve) => {
        for (const s of open) s.destroy();
        server.close(() => resolve());
      }),
  };
}

describe.skipIf(!process.env["DATABASE_URL"])("client.secrets.watch across replicas (Postgres)", () => {
  it("moves to another replica when its replica shuts down (SHUTTING_DOWN), missing no change", { timeout: 60_000 }, async () => {
    const survivor = await startTestService({ SECRETS_WRITE_RATE: "0", SECRETS_READ_RATE: "0" });
    const pool: Db = await openPostgres(survivor.dbUrl as string, { maxConnections: 4 });
    const leaving = await startTestService({}, { database: { db: pool, url: survivor.dbUrl as string }, masterKeys: survivor.masterKeys, jwtSecret: survivor.jwtSecret });
    const target = { port: Number(leaving.address.split(":")[1]) };
    const proxy = await switchingProxy(target);
    const dev = developer();
    const writer = await survivor.connectClient(dev);
    const retries: string[] = [];
    const watcher = new SecretsClient({ address: `127.0.0.1:${proxy.port}`, token: await survivor.token(dev) });
    const watch = watcher.secrets.watch({ prefix: "" }, { onRetry: (e) => retries.push(`${e.codeName} ${e.reason}`) });
    try {
      const start = (await collect(watch, (s) => s.length === 1))[0]!.revision;
      await writer.secrets.create({ name: "before", value: "v" });
      await collect(watch, (s) => eventsOf(s).length === 1);

      target.port = Number(survivor.address.split(":")[1]);
      const stopping = leaving.stop();
      await writer.secrets.create({ name: "during", value: "v" });
      await stopping;
      await writer.secrets.create({ name: "after", value: "v" });
      const events = eventsOf(await collect(watch, (s) => eventsOf(s).length === 2));
      expect(events.map((e) => [e.name, e.revision])).toEqual([
        ["during", start + 2],
        ["after", start + 3],
      ]);
      expect(retries[0]).toBe("UNAVAILABLE SHUTTING_DOWN");
    } finally {
      await watch.return();
      watcher.close();
      await proxy.close();
      await leaving.stop();
      await pool.close();
      await survivor.stop();
    }
  });
});
