import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SecretsDeadlineError, SecretsUnavailableError, type SecretsClient, type SecretsClientOptions } from "@secrets-service/client";
import { startDevServer, type DevServer } from "../support/fixtures.js";
import { expectSecretsError, randomValue } from "./client-fixtures.js";

// The SDK against a real server process that hangs (SIGSTOP), stops and restarts on
// the same data directory and port: deadlines, retries of reads (and none of
// writes), and the cache's stale-if-error window.

let server: DevServer;
const client = (options: Partial<SecretsClientOptions> = {}): SecretsClient => server.connectClient(options);

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

beforeAll(async () => {
  server = await startDevServer();
});

afterAll(async () => {
  await server?.dispose();
});

describe("a hung server", () => {
  it("fails DEADLINE_EXCEEDED within the deadline, and a cached value answers within its stale window", { timeout: 60_000 }, async () => {
    const value = randomValue("hung");
    const writer = client();
    await writer.secrets.create({ name: "hung_key", value });
    await writer.secrets.create({ name: "uncached_key", value: "other-value" });

    const plain = client({ deadlineMs: 800 });
    const cached = client({ deadlineMs: 800, cache: { ttlMs: 100, staleIfErrorMs: 30_000 } });
    expect((await plain.secrets.get("hung_key")).version).toBe(1); // connected before the hang
    expect((await cached.secrets.access("hung_key")).value).toBe(value);

    server.process.kill("SIGSTOP");
    try {
      await sleep(150); // past the TTL
      const started = Date.now();
      const err = await expectSecretsError(() => plain.secrets.access("hung_key"));
      expect(err).toBeInstanceOf(SecretsDeadlineError);
      expect(Date.now() - started).toBeGreaterThanOrEqual(700);
      expect(Date.now() - started).toBeLessThan(5_000);

      expect(await cached.secrets.access("hung_key")).toEqual({ name: "hung_key", version: 1, value });
      expect(await cached.secrets.resolve(["hung_key"])).toEqual({ hung_key: value });
      // A name never fetched has nothing stale to fall back on.
      await expect(cached.secrets.access("uncached_key")).rejects.toBeInstanceOf(SecretsDeadlineError);
    } finally {
      server.process.kill("SIGCONT");
    }
    expect((await plain.secrets.access("hung_key")).value).toBe(value);
  });
});

describe("a server stopped and restarted on the same port", () => {
  it("a read retried with backoff succeeds once the server is back; a write is not retried; stale values answer within their window only", { timeout: 120_000 }, async () => {
    const value = randomValue("survivor");
    const writer = client();
    await writer.secrets.create({ name: "survivor", value });

    let readAttempts = 0;
    const retrying = client({
      token: () => {
        readAttempts += 1;
        return server.token;
      },
      deadlineMs: 60_000,
      retry: { maxAttempts: 200, initialBackoffMs: 50, maxBackoffMs: 300 },
    });
    const cached = client({ retry: { maxAttempts: 2, initialBackoffMs: 10, maxBackoffMs: 10 }, cache: { ttlMs: 50, staleIfErrorMs: 4_000 } });
    expect((await retrying.secrets.get("survivor")).version).toBe(1);
    expect((await cached.secrets.access("survivor")).value).toBe(value);
    const expiresAt = Date.now() + 50;
    readAttempts = 0;

    await server.stop();

    const read = retrying.secrets.access("survivor");
    const write = writer.secrets.create({ name: "during_outage", value: "never-written" });
    await expect(write).rejects.toBeInstanceOf(SecretsUnavailableError);

    // The cache serves the expired value while the service is unreachable, within the window...
    expect((await cached.secrets.access("survivor")).value).toBe(value);
    // ...and not after it.
    await sleep(Math.max(0, expiresAt + 4_000 + 200 - Date.now()));
    await expect(cached.secrets.access("survivor")).rejects.toBeInstanceOf(SecretsUnavailableError);
    expect(readAttempts, "the read was retried while the server was down").toBeGreaterThan(2);

    await server.start();
    expect(await read).toEqual({ name: "survivor", version: 1, value });

    // The failed create was not retried behind the caller's back.
    await expect(writer.secrets.get("during_outage")).rejects.toMatchObject({ reason: "SECRET_NOT_FOUND" });
    // And the cached client recovers by itself.
    expect((await cached.secrets.access("survivor")).value).toBe(value);
  });
});
