import { readdirSync, readFileSync } from "node:fs";
import { join } from "node:path";
import { inspect } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { LIST_METADATA_KEYS, SecretsClient, SecretsError, SecretsTokenError, type SecretsClientOptions } from "@secrets-service/client";
import { PROJECT_ROOT } from "../support/server-process.js";
import { startTestService, type TestService } from "../support/test-service.js";
import { blackhole, expectSecretsError } from "./client-fixtures.js";

// The SDK's error boundary: every failure a call reports is a SecretsError, and no part of it (message,
// details, cause chain, stack, String, JSON, inspect) holds the token or a value. Each path is driven with
// marker strings that are then searched for.

const TOKEN_MARKER = "TOKENMARKER7f3a";
const VALUE_MARKER = "VALUEMARKER91c2";

/** Every text an error shows: message, details, the cause chain with stacks, String, JSON and inspect. */
function surfaces(e: unknown): string {
  const parts = [String(e), JSON.stringify(e), inspect(e, { depth: 8 })];
  for (let c: unknown = e; c !== undefined && c !== null; c = (c as { cause?: unknown }).cause) {
    if (c instanceof Error) parts.push(c.message, c.stack ?? "");
    else parts.push(String(c));
    if (c instanceof SecretsError) parts.push(c.details, JSON.stringify(c.metadata));
  }
  return parts.join("\n");
}

/** Fails unless `fn` fails with a SecretsError that shows none of `markers`; returns it. */
async function safeFailure(fn: () => Promise<unknown>, markers: string[]): Promise<SecretsError> {
  const e = await expectSecretsError(fn);
  const text = surfaces(e);
  for (const marker of markers) expect(text, `${e.message} shows a marker`).not.toContain(marker);
  return e;
}

let svc: TestService;
let token: string;
const clients: SecretsClient[] = [];
const clientWith = (options: Partial<SecretsClientOptions>) => {
  const client = new SecretsClient({ address: svc.address, token, retry: { maxAttempts: 1 }, ...options });
  clients.push(client);
  return client;
};

beforeAll(async () => {
  svc = await startTestService();
  token = await svc.token("dev_boundary");
});
afterAll(async () => {
  for (const c of clients) c.close();
  await svc?.stop();
});

describe("tokens", () => {
  it("are trimmed: a token file's trailing newline works", async () => {
    const client = clientWith({ token: `  ${token}\n` });
    await client.secrets.create({ name: "trimmed", value: `v-${VALUE_MARKER}` });
    expect((await clientWith({ token: async () => `${token}\r\n` }).secrets.access("trimmed")).value).toBe(`v-${VALUE_MARKER}`);
  });

  it.each([
    ["a line break inside", () => `${token}\nX-${TOKEN_MARKER}`, /characters a header cannot carry/],
    ["a non-ASCII character", () => `${token}é${TOKEN_MARKER}`, /characters a header cannot carry/],
    ["a space inside", () => `${token} ${TOKEN_MARKER}`, /characters a bearer token cannot \(a space/],
    ["the Bearer prefix", () => `Bearer ${token}${TOKEN_MARKER}`, /starts with 'Bearer ': give the token alone/],
    ["only whitespace", () => " \n\t", /the token is empty/],
    ["a function that throws", () => { throw Object.assign(new Error(`cannot read ${TOKEN_MARKER}`), { code: "ENOENT" }); }, /the token function failed \(ENOENT\)$/],
    ["a rejected promise", () => Promise.reject(new Error(`refresh of ${TOKEN_MARKER} failed`)), /the token function failed$/],
    ["a function returning a number", () => 42 as unknown as string, /the token is not a string/],
  ])("with %s become a SecretsTokenError that does not show them", async (_label, source, message) => {
    const e = await safeFailure(() => clientWith({ token: source }).secrets.get("anything"), [TOKEN_MARKER, token]);
    expect(e).toBeInstanceOf(SecretsTokenError);
    expect(e).toMatchObject({ codeName: "UNAUTHENTICATED", reason: "TOKEN_UNUSABLE" });
    expect(e.message).toMatch(message);
  });

  it("a token the service rejects is reported without the token", async () => {
    const forged = `eyJhbGciOiJIUzI1NiJ9.${Buffer.from(JSON.stringify({ sub: TOKEN_MARKER })).toString("base64url")}.c2ln`;
    const e = await safeFailure(() => clientWith({ token: forged }).secrets.get("anything"), [TOKEN_MARKER, forged]);
    expect(e).toMatchObject({ codeName: "UNAUTHENTICATED", reason: "TOKEN_INVALID" });
  });
});

describe("requests and answers", () => {
  it("a request protobuf-es cannot encode fails with a fixed message", async () => {
    const client = clientWith({});
    const huge = 2 ** 40 + 7;
    const e = await safeFailure(() => client.secrets.access("anything", { version: huge }), [String(huge)]);
    expect(e).toMatchObject({ codeName: "INVALID_ARGUMENT", reason: "REQUEST_UNENCODABLE" });
    const cyclic: Record<string, unknown> = { note: VALUE_MARKER };
    cyclic["self"] = cyclic;
    const meta = await safeFailure(
      () => client.secrets.create({ name: "cyclic", value: VALUE_MARKER, metadata: cyclic as never }),
      [VALUE_MARKER, token],
    );
    expect(meta.reason).toBe("REQUEST_UNENCODABLE");
  });

  it("values the service refuses are not repeated, nor is the token", async () => {
    const client = clientWith({});
    const big = await safeFailure(() => client.secrets.create({ name: "too_big", value: VALUE_MARKER.repeat(5_000) }), [VALUE_MARKER, token]);
    expect(big).toMatchObject({ codeName: "INVALID_ARGUMENT", reason: "VALUE_TOO_LARGE" });
    const stale = await safeFailure(() => client.secrets.update("too_big", { value: VALUE_MARKER, expectedVersion: 3 }), [VALUE_MARKER, token]);
    expect(stale.codeName).toBe("NOT_FOUND");
  });

  it("a call after close() is a SecretsError", async () => {
    const client = clientWith({});
    client.close();
    const e = await safeFailure(() => client.secrets.resolve(["a"]), [token]);
    expect(e).toMatchObject({ codeName: "FAILED_PRECONDITION", reason: "CLIENT_CLOSED" });
  });
});

describe("transport failures", () => {
  it("name the address and the deadline, without grpc-js's internals or the token", async () => {
    const hole = await blackhole();
    const hung = new SecretsClient({ address: hole.address, token: `${TOKEN_MARKER}.x.y`, deadlineMs: 300 });
    const down = new SecretsClient({ address: "127.0.0.1:1", token: `${TOKEN_MARKER}.x.y`, retry: { maxAttempts: 1 } });
    try {
      const late = await safeFailure(() => hung.secrets.access("anything"), [TOKEN_MARKER]);
      expect(late.message).toBe(`DEADLINE_EXCEEDED: no answer from ${hole.address} within 300 ms`);
      const slow = await safeFailure(() => hung.secrets.get("anything", { deadlineMs: 1_500 }), [TOKEN_MARKER]);
      expect(slow.details).toBe(`no answer from ${hole.address} within 1.5 s`);
      const refused = await safeFailure(() => down.secrets.create({ name: "x", value: VALUE_MARKER }), [TOKEN_MARKER, VALUE_MARKER]);
      expect(refused.message).toBe("UNAVAILABLE: cannot reach 127.0.0.1:1: connection refused");
      for (const e of [late, slow, refused]) expect(surfaces(e)).not.toMatch(/LB pick|name resolution|Resolution note|Last error/);
    } finally {
      hung.close();
      down.close();
      await hole.close();
    }
  });
});

describe("ErrorInfo list fields", () => {
  it("are arrays: names of SECRET_NOT_FOUND and NOT_ALLOWLISTED", async () => {
    const client = clientWith({});
    await client.secrets.create({ name: "present", value: "present-value" }).catch(() => undefined);
    const missing = await expectSecretsError(() => client.secrets.resolve(["present", "nope_b", "nope_a"]));
    expect(missing.reason).toBe("SECRET_NOT_FOUND");
    expect(missing.names.sort()).toEqual(["nope_a", "nope_b"]);
    expect(missing.list("names").sort()).toEqual(["nope_a", "nope_b"]);
    expect(missing.list("replicas")).toEqual([]);
    expect(missing.metadata["names"]).toMatch(/^nope_[ab],nope_[ab]$/);

    const narrow = clientWith({ token: await svc.token("dev_boundary", { allowlist: ["present"] }) });
    const denied = await expectSecretsError(() => narrow.secrets.resolve(["present", "other_one", "other_two"]));
    expect(denied.reason).toBe("NOT_ALLOWLISTED");
    expect(denied.names.sort()).toEqual(["other_one", "other_two"]);
  });

  it("are every field the server sends joined with a comma", () => {
    const sources = readdirSync(join(PROJECT_ROOT, "src"), { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts"));
    const joined = new Set<string>();
    for (const file of sources) {
      const text = readFileSync(join(PROJECT_ROOT, "src", file), "utf8");
      for (const m of text.matchAll(/\b(\w+): [\w.]+\.join\(","\)/g)) joined.add(m[1] as string);
    }
    expect(joined.size).toBeGreaterThan(0);
    expect([...joined].sort()).toEqual([...LIST_METADATA_KEYS].sort());
  });
});
