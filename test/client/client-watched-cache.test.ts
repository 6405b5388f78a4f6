import { randomUUID } from "node:crypto";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SecretsClient, SecretsUnavailableError, type WatchUpdate } from "@secrets-service/client";
import { startTcpProxy } from "../support/tcp-proxy.js";
import { startServicePair, type ServicePair } from "../support/service-pair.js";
import type { TestService } from "../support/test-service.js";
import { callsOf, expectSecretsError, randomValue } from "./client-fixtures.js";

// `cache: "watched"` against real services. On Postgres (DATABASE_URL) the cached
// client reads from one service and the writes go through another, each with its own
// pool on one database, so the cache learns of a change only through the stream; on the
// embedded database one service plays both parts. Calls are counted in the reading
// service's log lines.

let writer: TestService;
let reader: TestService;
let pair: ServicePair | undefined;
const env = { SECRETS_WRITE_RATE: "0", SECRETS_READ_RATE: "0", SECRETS_WATCH_MAX_PER_DEVELOPER: "2" };

beforeAll(async () => {
  pair = await startServicePair(env);
  ({ a: writer, b: reader } = pair);
});

afterAll(async () => {
  await pair?.stop();
});

const developer = () => `watched-${randomUUID()}`;
const accessCalls = (dev: string) => callsOf(reader.logs, "AccessSecret", dev).length;

/** Waits until a lookup of `name` is answered from memory (the cache's stream is in sync). */
async function untilCached(client: SecretsClient, dev: string, name: string): Promise<void> {
  await expect
    .poll(async () => {
      const before = accessCalls(dev);
      await client.secrets.access(name);
      return accessCalls(dev) - before;
    }, { timeout: 10_000, interval: 50 })
    .toBe(0);
}

describe('cache: "watched"', () => {
  it("serves a new value soon after an update made through another service, and forgets a deleted secret", async () => {
    const dev = developer();
    const writes = await writer.connectClient(dev);
    const cached = await reader.connectClient(dev, { cache: "watched" });
    const [v1, v2, v3] = [randomValue("one"), randomValue("two"), randomValue("three")];
    await writes.secrets.create({ name: "live_key", value: v1 });
    await writes.secrets.create({ name: "other_key", value: "other" });

    await untilCached(cached, dev, "live_key");
    expect(await cached.secrets.access("live_key")).toEqual({ name: "live_key", version: 1, value: v1 });
    expect(await cached.secrets.resolve(["live_key", "other_key"])).toEqual({ live_key: v1, other_key: "other" });
    const before = accessCalls(dev);
    for (let i = 0; i < 50; i++) await cached.secrets.access("live_key");
    expect(accessCalls(dev) - before, "lookups answered from memory").toBe(0);

    // No TTL: only the stream's event can replace the value held.
    await writes.secrets.update("live_key", { value: v2 });
    await expect.poll(async () => (await cached.secrets.access("live_key")).value, { timeout: 5_000, interval: 20 }).toBe(v2);
    expect((await cached.secrets.access("live_key")).version).toBe(2);
    await expect.poll(async () => (await cached.secrets.resolve(["live_key", "other_key"])).live_key, { timeout: 5_000, interval: 20 }).toBe(v2);

    await writes.secrets.delete("live_key", { force: true });
    await expect.poll(() => cached.secrets.access("live_key").then(() => "found", (e: { reason?: string }) => e.reason), { timeout: 5_000, interval: 20 }).toBe("SECRET_NOT_FOUND");
    await writes.secrets.create({ name: "live_key", value: v3 });
    await expect.poll(async () => (await cached.secrets.access("live_key")).value, { timeout: 5_000, interval: 20 }).toBe(v3);
  });

  it("reads through to the service while its stream is down, and caches again once it has a new snapshot", async () => {
    const dev = developer();
    const writes = await writer.connectClient(dev);
    const proxy = await startTcpProxy("127.0.0.1", Number(reader.address.split(":")[1]));
    const cached = new SecretsClient({ address: `127.0.0.1:${proxy.port}`, token: await reader.token(dev), cache: "watched", retry: { maxAttempts: 1 }, deadlineMs: 2_000 });
    try {
      const [v1, v2] = [randomValue("before"), randomValue("during")];
      await writes.secrets.create({ name: "cut_key", value: v1 });
      await untilCached(cached, dev, "cut_key");

      await proxy.down();
      // Once the cut reaches the stream, a lookup goes to the (unreachable) service instead of memory.
      await expect.poll(() => cached.secrets.access("cut_key").then(() => "memory", (e: unknown) => (e instanceof SecretsUnavailableError ? "unreachable" : "other")), { timeout: 5_000, interval: 20 }).toBe("unreachable");
      await writes.secrets.update("cut_key", { value: v2 });
      await expect(cached.secrets.access("cut_key")).rejects.toBeInstanceOf(SecretsUnavailableError);

      await proxy.up();
      await expect.poll(() => cached.secrets.access("cut_key").then((r) => r.value, () => "unreachable"), { timeout: 10_000, interval: 50 }).toBe(v2);
      await untilCached(cached, dev, "cut_key");
      expect((await cached.secrets.access("cut_key")).value).toBe(v2);
    } finally {
      cached.close();
      await proxy.close();
    }
  });

  it("reads through while the service refuses it a stream (TOO_MANY_WATCHES), and caches once it gets one", { timeout: 60_000 }, async () => {
    const dev = developer();
    const writes = await writer.connectClient(dev);
    await writes.secrets.create({ name: "busy_key", value: "v" });
    // The service allows this developer 2 watches on the reading service; hold both.
    const holder = await reader.connectClient(dev);
    const held = [holder.secrets.watch({ prefix: "" }), holder.secrets.watch({ prefix: "" })];
    for (const w of held) expect(((await w.next()).value as WatchUpdate).kind).toBe("snapshot");

    const cached = await reader.connectClient(dev, { cache: "watched" });
    const before = accessCalls(dev);
    for (let i = 0; i < 10; i++) expect((await cached.secrets.access("busy_key")).value).toBe("v");
    expect(accessCalls(dev) - before, "every lookup read through").toBe(10);

    await held[0]!.return();
    await untilCached(cached, dev, "busy_key");
    await held[1]!.return();
  });

  it("keeps one token's values apart from another's", async () => {
    const [devA, devB] = [developer(), developer()];
    const a = await writer.connectClient(devA);
    const b = await writer.connectClient(devB);
    await a.secrets.create({ name: "same_name", value: "value-of-a" });
    await b.secrets.create({ name: "same_name", value: "value-of-b" });
    const [tokenA, tokenB] = [await reader.token(devA), await reader.token(devB)];
    let current = tokenA;
    const cached = new SecretsClient({ address: reader.address, token: () => current, cache: "watched" });
    try {
      await untilCached(cached, devA, "same_name");
      current = tokenB;
      await untilCached(cached, devB, "same_name");
      expect((await cached.secrets.access("same_name")).value).toBe("value-of-b");
      current = tokenA;
      expect((await cached.secrets.access("same_name")).value).toBe("value-of-a");
      await b.secrets.update("same_name", { value: "b-again" });
      current = tokenB;
      await expect.poll(async () => (await cached.secrets.access("same_name")).value, { timeout: 5_000, interval: 20 }).toBe("b-again");
      current = tokenA;
      expect((await cached.secrets.access("same_name")).value).toBe("value-of-a");
    } finally {
      cached.close();
    }
    await expectSecretsError(() => cached.secrets.access("same_name"));
  });
});
