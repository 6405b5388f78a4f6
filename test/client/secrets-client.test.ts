import { readFileSync } from "node:fs";
import { join } from "node:path";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import {
  SecretsClient,
  SecretsDeadlineError,
  SecretsError,
  SecretsUnavailableError,
  resolveTaskSecrets,
  type SecretsClientOptions,
} from "@secrets-service/client";
import { startTestService, taskFixturesDirectory, type TestService } from "../support/fixtures.js";
import { all, blackhole, callsOf, expectSecretsError, randomValue } from "./client-fixtures.js";

// The SDK over real gRPC against the real service on 127.0.0.1:0: every method,
// pagination, typed errors, deadlines and retry bounds. Each test acts as its own
// developer, so the server's log lines can be counted per test.

let svc: TestService;
const clients: SecretsClient[] = [];

async function clientFor(developer: string, options: Partial<SecretsClientOptions> = {}): Promise<SecretsClient> {
  const client = new SecretsClient({ address: svc.address, token: await svc.token(developer), ...options });
  clients.push(client);
  return client;
}

beforeAll(async () => {
  svc = await startTestService();
});

afterAll(async () => {
  for (const c of clients) c.close();
  await svc?.stop();
});

describe("every method", () => {
  it("create, get, update, access, versions, destroyVersion, resolve and delete round-trip plain objects", async () => {
    const client = await clientFor("sdk-all");
    const v1 = randomValue("v1");
    const before = Date.now();
    const created = await client.secrets.create({ name: "db_password", value: v1, description: "prod DB", metadata: { env: "prod", tier: 1 } });
    expect(created).toMatchObject({ name: "db_password", description: "prod DB", metadata: { env: "prod", tier: 1 }, version: 1, createdBy: "sdk-all", updatedBy: "sdk-all" });
    expect(created.id).toMatch(/^[0-9a-f-]{36}$/);
    expect(created.createdAt).toBeInstanceOf(Date);
    expect(created.createdAt.getTime()).toBeGreaterThanOrEqual(before - 5_000);
    expect(JSON.stringify(created)).not.toContain(v1);

    expect(await client.secrets.get("db_password")).toEqual(created);

    const v2 = randomValue("v2");
    const updated = await client.secrets.update("db_password", { value: v2, metadata: {}, expectedVersion: 1 });
    expect(updated).toMatchObject({ version: 2, metadata: {}, description: "prod DB" });
    expect(updated.updatedAt.getTime()).toBeGreaterThanOrEqual(created.updatedAt.getTime());
    const described = await client.secrets.update("db_password", { description: "rotated" });
    expect(described).toMatchObject({ version: 2, description: "rotated" });

    expect(await client.secrets.access("db_password")).toEqual({ name: "db_password", version: 2, value: v2 });
    expect(await client.secrets.access("db_password", { version: 1 })).toEqual({ name: "db_password", version: 1, value: v1 });

    const versions = await all(client.secrets.versions("db_password"));
    expect(versions.map((v) => [v.version, v.state, v.createdBy])).toEqual([
      [2, "enabled", "sdk-all"],
      [1, "enabled", "sdk-all"],
    ]);
    expect(versions[0]?.createdAt).toBeInstanceOf(Date);

    const destroyed = await client.secrets.destroyVersion("db_password", 1);
    expect(destroyed).toMatchObject({ version: 1, state: "destroyed" });
    const gone = await expectSecretsError(() => client.secrets.access("db_password", { version: 1 }));
    expect(gone).toMatchObject({ code: status.FAILED_PRECONDITION, codeName: "FAILED_PRECONDITION", reason: "VERSION_DESTROYED" });

    await client.secrets.create({ name: "api_key", value: "k-123456" });
    expect(await client.secrets.resolve(["db_password", "api_key", "api_key"])).toEqual({ db_password: v2, api_key: "k-123456" });

    await client.secrets.delete("db_password", { expectedVersion: 2 });
    const missing = await expectSecretsError(() => client.secrets.get("db_password"));
    expect(missing).toMatchObject({ code: status.NOT_FOUND, reason: "SECRET_NOT_FOUND" });
    await client.secrets.delete("api_key");
    expect(await all(client.secrets.list())).toEqual([]);

    client.close();
    await expect(client.secrets.get("api_key")).rejects.toMatchObject({ name: "SecretsError", codeName: "FAILED_PRECONDITION", reason: "CLIENT_CLOSED" });
  });

  it("lists every secret over several pages, in name order, filtered by prefix and metadata", async () => {
    const client = await clientFor("sdk-pages");
    const names = Array.from({ length: 23 }, (_, i) => `svc_${String(i).padStart(2, "0")}`);
    for (const [i, name] of names.entries()) {
      await client.secrets.create({ name, value: `value-${i}`, metadata: { team: i % 2 === 0 ? "even" : "odd" } });
    }
    await client.secrets.create({ name: "svcx_other", value: "other" });
    await client.secrets.create({ name: "svc0", value: "literal-prefix" });

    const pagesBefore = callsOf(svc.logs, "ListSecrets", "sdk-pages").length;
    const listed = await all(client.secrets.list({ namePrefix: "svc_", pageSize: 5 }));
    expect(listed.map((s) => s.name)).toEqual(names);
    expect(callsOf(svc.logs, "ListSecrets", "sdk-pages").length - pagesBefore, "ListSecrets calls").toBe(5);

    const even = await all(client.secrets.list({ namePrefix: "svc_", metadataFilter: { team: "even" }, pageSize: 4 }));
    expect(even.map((s) => s.name)).toEqual(names.filter((_, i) => i % 2 === 0));

    // Stopping early fetches no further page.
    const early = callsOf(svc.logs, "ListSecrets", "sdk-pages").length;
    for await (const s of client.secrets.list({ pageSize: 3 })) if (s.name) break;
    expect(callsOf(svc.logs, "ListSecrets", "sdk-pages").length - early).toBe(1);
  });

  it("lists every version over several pages, newest first", async () => {
    const client = await clientFor("sdk-versions");
    await client.secrets.create({ name: "rotating", value: "v-1" });
    for (let i = 2; i <= 12; i++) await client.secrets.update("rotating", { value: `v-${i}` });
    const before = callsOf(svc.logs, "ListSecretVersions", "sdk-versions").length;
    const versions = await all(client.secrets.versions("rotating", { pageSize: 5 }));
    expect(versions.map((v) => v.version)).toEqual([12, 11, 10, 9, 8, 7, 6, 5, 4, 3, 2, 1]);
    expect(callsOf(svc.logs, "ListSecretVersions", "sdk-versions").length - before).toBe(3);
  });

  it("resolves 100 values of 64 KiB in one call (6.4 MiB, above grpc-js's 4 MiB default)", async () => {
    const client = await clientFor("sdk-big");
    const names = Array.from({ length: 100 }, (_, i) => `big_${i}`);
    for (const [i, name] of names.entries()) {
      await client.secrets.create({ name, value: String(i % 10).repeat(64 * 1024) });
    }
    const values = await client.secrets.resolve(names);
    expect(Object.keys(values).sort()).toEqual([...names].sort());
    expect(values["big_7"]).toBe("7".repeat(64 * 1024));
  });
});

describe("task secrets", () => {
  it("resolveTaskSecrets with a SecretsClient fetches a shared fixture task's secrets in one ResolveSecrets call", async () => {
    const client = await clientFor("sdk-task");
    await client.secrets.create({ name: "weather_api_key", value: "wk-1234567890" });
    await client.secrets.create({ name: "chat_bot_token", value: "cb-1234567890" });
    await client.secrets.create({ name: "unrelated", value: "not-asked-for" });
    const task = readFileSync(join(taskFixturesDirectory(), "weather-digest.yaml"), "utf8");
    expect(await resolveTaskSecrets(client, task)).toEqual({ weather_api_key: "wk-1234567890", chat_bot_token: "cb-1234567890" });
    expect(callsOf(svc.logs, "ResolveSecrets", "sdk-task")).toHaveLength(1);
  });
});

describe("typed errors", () => {
  it("carry the status, the ErrorInfo reason and metadata, and the request id of the server's log line", async () => {
    const client = await clientFor("sdk-errors");
    const value = randomValue("exists");
    await client.secrets.create({ name: "taken", value });

    const exists = await expectSecretsError(() => client.secrets.create({ name: "taken", value }));
    expect(exists).toBeInstanceOf(SecretsError);
    expect(exists).toMatchObject({ code: status.ALREADY_EXISTS, codeName: "ALREADY_EXISTS", reason: "SECRET_EXISTS" });
    expect(exists.hasKnownReason()).toBe(true);
    expect(exists.message).toMatch(/^ALREADY_EXISTS \(SECRET_EXISTS\): /);
    expect(exists.message).not.toContain(value);
    const line = callsOf(svc.logs, "CreateSecret", "sdk-errors").find((l) => l["code"] === "ALREADY_EXISTS");
    expect(exists.requestId).toBeDefined();
    expect(exists.requestId).toBe(line?.["requestId"]);

    const stale = await expectSecretsError(() => client.secrets.update("taken", { value: "new-value", expectedVersion: 7 }));
    expect(stale).toMatchObject({ code: status.ABORTED, reason: "VERSION_MISMATCH", metadata: { expected_version: "7", current_version: "1" } });

    const missing = await expectSecretsError(() => client.secrets.resolve(["taken", "nope_a", "nope_b"]));
    expect(missing).toMatchObject({ code: status.NOT_FOUND, reason: "SECRET_NOT_FOUND" });
    expect(missing.metadata["names"]?.split(",").sort()).toEqual(["nope_a", "nope_b"]);

    const badName = await expectSecretsError(() => client.secrets.get("1-not-a-name"));
    expect(badName).toMatchObject({ code: status.INVALID_ARGUMENT, reason: "INVALID_NAME", metadata: { field: "name" } });

    const empty = await expectSecretsError(() => client.secrets.update("taken", {}));
    expect(empty).toMatchObject({ code: status.INVALID_ARGUMENT, reason: "EMPTY_UPDATE" });

    const current = await expectSecretsError(() => client.secrets.destroyVersion("taken", 1));
    expect(current).toMatchObject({ code: status.FAILED_PRECONDITION, reason: "CURRENT_VERSION" });
  });

  it("reports scope, allowlist and token failures with their reasons", async () => {
    const reader = new SecretsClient({ address: svc.address, token: await svc.token("sdk-authz", { scopes: ["secrets:read"] }) });
    const allowlisted = new SecretsClient({ address: svc.address, token: await svc.token("sdk-authz", { allowlist: ["only_this"] }) });
    const forged = new SecretsClient({ address: svc.address, token: "eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl" });
    clients.push(reader, allowlisted, forged);

    const scope = await expectSecretsError(() => reader.secrets.access("anything"));
    expect(scope).toMatchObject({ code: status.PERMISSION_DENIED, reason: "SCOPE_MISSING", metadata: { scope: "secrets:access" } });
    const allow = await expectSecretsError(() => allowlisted.secrets.get("other_name"));
    expect(allow).toMatchObject({ code: status.PERMISSION_DENIED, reason: "NOT_ALLOWLISTED" });
    const token = await expectSecretsError(() => forged.secrets.get("anything"));
    expect(token).toMatchObject({ code: status.UNAUTHENTICATED, reason: "TOKEN_INVALID" });
  });

  it("fetches the token from a function before every call, so a refreshing source works", async () => {
    let fetched = 0;
    const token = await svc.token("sdk-refresh");
    const client = new SecretsClient({
      address: svc.address,
      token: async () => {
        fetched += 1;
        return token;
      },
    });
    clients.push(client);
    await client.secrets.create({ name: "refreshed", value: "x-value" });
    await client.secrets.get("refreshed");
    expect(fetched).toBe(2);
  });
});

describe("deadlines and retries", () => {
  it("fails DEADLINE_EXCEEDED after the deadline when the service does not answer; per-call deadlines override", async () => {
    const hole = await blackhole();
    const client = new SecretsClient({ address: hole.address, token: "t", deadlineMs: 1_500 });
    try {
      const started = Date.now();
      const err = await expectSecretsError(() => client.secrets.get("anything"));
      const took = Date.now() - started;
      expect(err).toBeInstanceOf(SecretsDeadlineError);
      expect(err.codeName).toBe("DEADLINE_EXCEEDED");
      expect(took).toBeGreaterThanOrEqual(1_450);
      expect(took).toBeLessThan(5_000);

      const short = Date.now();
      await expect(client.secrets.access("anything", {}, { deadlineMs: 100 })).rejects.toBeInstanceOf(SecretsDeadlineError);
      expect(Date.now() - short).toBeLessThan(1_000);
    } finally {
      client.close();
      await hole.close();
    }
  });

  it("cancels a call through its AbortSignal", async () => {
    const hole = await blackhole();
    const client = new SecretsClient({ address: hole.address, token: "t", deadlineMs: 5_000 });
    try {
      const controller = new AbortController();
      setTimeout(() => controller.abort(), 100);
      const err = await expectSecretsError(() => client.secrets.get("anything", { signal: controller.signal }));
      expect(err.codeName).toBe("CANCELLED");
    } finally {
      client.close();
      await hole.close();
    }
  });

  it("retries an idempotent call a bounded number of times on UNAVAILABLE, and never retries a write", async () => {
    // A port nothing listens on: every attempt is refused.
    const hole = await blackhole();
    const address = hole.address;
    await hole.close();
    let attempts = 0;
    const client = new SecretsClient({
      address,
      token: () => {
        attempts += 1;
        return "t";
      },
      retry: { maxAttempts: 3, initialBackoffMs: 20, maxBackoffMs: 50 },
    });
    try {
      const read = await expectSecretsError(() => client.secrets.get("anything"));
      expect(read).toBeInstanceOf(SecretsUnavailableError);
      expect(read.reason).toBeUndefined();
      expect(attempts).toBe(3);

      for (const write of [
        () => client.secrets.create({ name: "n", value: "v" }),
        () => client.secrets.update("n", { value: "v" }),
        () => client.secrets.delete("n"),
        () => client.secrets.restore({ name: "n" }),
        () => client.secrets.destroyVersion("n", 1),
      ]) {
        attempts = 0;
        await expect(write()).rejects.toBeInstanceOf(SecretsUnavailableError);
        expect(attempts).toBe(1);
      }
      for (const read of [
        () => client.secrets.access("n"),
        () => client.secrets.resolve(["n"]),
        () => all(client.secrets.list()),
        () => all(client.secrets.versions("n")),
      ]) {
        attempts = 0;
        await expect(read()).rejects.toBeInstanceOf(SecretsUnavailableError);
        expect(attempts).toBe(3);
      }
    } finally {
      client.close();
    }
  });

  it("does not retry errors other than UNAVAILABLE", async () => {
    let attempts = 0;
    const token = await svc.token("sdk-noretry");
    const client = new SecretsClient({ address: svc.address, token: () => (attempts++, token), retry: { maxAttempts: 5 } });
    clients.push(client);
    await expect(client.secrets.get("missing")).rejects.toMatchObject({ reason: "SECRET_NOT_FOUND" });
    expect(attempts).toBe(1);
  });
});
