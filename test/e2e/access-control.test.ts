import { status } from "@grpc/grpc-js";
import { SignJWT, UnsecuredJWT } from "jose";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { expectCallError, startTestService, type TestClient, type TestService } from "../support/fixtures.js";

// Authentication and authorization over real gRPC: tokens, scopes, the per-task
// allowlist, and the order of checks in docs/api.md.

let svc: TestService;
let client: TestClient<typeof SecretService>;
let owner: string;

beforeAll(async () => {
  svc = await startTestService();
  client = svc.secrets;
  owner = await svc.token("acl-dev", { scopes: ["secrets:read", "secrets:write", "secrets:access"] });
  await client.createSecret({ name: "openai_api_key", value: "sk-openai-value" }, owner);
  await client.createSecret({ name: "github_token", value: "ghp-github-value" }, owner);
  await client.createSecret({ name: "db_password", value: "db-password-value" }, owner);
});

afterAll(async () => {
  await svc?.stop();
});

describe("authentication", () => {
  it("a call without a token, with a malformed header, or a bad token is UNAUTHENTICATED", async () => {
    const now = Math.floor(Date.now() / 1000);
    const secret = new TextEncoder().encode(svc.jwtSecret);
    const cases: [string | undefined, string][] = [
      [undefined, "TOKEN_MISSING"],
      ["x", "TOKEN_INVALID"],
      ["not.a.jwt", "TOKEN_INVALID"],
      [await new SignJWT({ sub: "acl-dev", iat: now, exp: now + 60 }).setProtectedHeader({ alg: "HS256" }).sign(new TextEncoder().encode("x".repeat(32))), "TOKEN_INVALID"],
      [new UnsecuredJWT({ sub: "acl-dev", scope: "secrets:access" }).setIssuedAt().setExpirationTime("1h").encode(), "TOKEN_INVALID"],
      [await new SignJWT({ sub: "acl-dev", iat: now - 3600, exp: now - 60, scope: "secrets:access" }).setProtectedHeader({ alg: "HS256" }).sign(secret), "TOKEN_EXPIRED"],
      [await new SignJWT({ sub: "acl-dev", iat: now, exp: now + 90_000 }).setProtectedHeader({ alg: "HS256" }).sign(secret), "TOKEN_INVALID"],
    ];
    for (const [token, reason] of cases) {
      const err = await expectCallError(() => client.accessSecret({ name: "openai_api_key" }, token));
      expect(err.code).toBe(status.UNAUTHENTICATED);
      expect(err.reason).toBe(reason);
      expect(err.details).not.toContain("sk-openai-value");
    }
  });

  it("a correctly signed token whose sub is not a string reads nobody's secrets", async () => {
    const now = Math.floor(Date.now() / 1000);
    const secret = new TextEncoder().encode(svc.jwtSecret);
    const numeric = await svc.token("12345", { scopes: ["secrets:write"] });
    await client.createSecret({ name: "numeric_dev_key", value: "numeric-dev-value" }, numeric);
    const cases: [unknown, string, string][] = [
      [["acl-dev"], "openai_api_key", "sk-openai-value"],
      [{ toString: "acl-dev" }, "openai_api_key", "sk-openai-value"],
      [12345, "numeric_dev_key", "numeric-dev-value"],
    ];
    for (const [sub, name, value] of cases) {
      const claims: Record<string, unknown> = { sub, iat: now, exp: now + 60, scope: "secrets:access" };
      const token = await new SignJWT(claims).setProtectedHeader({ alg: "HS256" }).sign(secret);
      const err = await expectCallError(() => client.accessSecret({ name }, token));
      expect(err.code).toBe(status.UNAUTHENTICATED);
      expect(err.reason).toBe("TOKEN_INVALID");
      expect(err.errorInfo?.metadata["claim"]).toBe("sub");
      expect(err.details).not.toContain(value);
      const resolved = await expectCallError(() => client.resolveSecrets({ names: [name] }, token));
      expect(resolved.code).toBe(status.UNAUTHENTICATED);
    }
  });

  it("the developer comes from the token's sub only", async () => {
    const other = await svc.token("someone-else");
    const err = await expectCallError(() => client.accessSecret({ name: "openai_api_key" }, other));
    expect(err.code).toBe(status.NOT_FOUND);
  });

  it("health and reflection need no token", async () => {
    const { createTestClient } = await import("../support/grpc-client.js");
    const { Health } = await import("../../src/api/gen/grpc/health/v1/health_pb.js");
    const health = createTestClient(Health, svc.address);
    try {
      expect((await health.check({ service: "secrets.v1.SecretService" })).status).toBe(1);
      expect((await expectCallError(() => health.check({ service: "nope" }))).code).toBe(status.NOT_FOUND);
    } finally {
      health.close();
    }
  });
});

describe("scopes", () => {
  it("each RPC needs its scope, else PERMISSION_DENIED (SCOPE_MISSING)", async () => {
    const readOnly = await svc.token("acl-dev", { scopes: ["secrets:read"] });
    const accessOnly = await svc.token("acl-dev", { scopes: ["secrets:access"] });
    const denied = [
      () => client.accessSecret({ name: "openai_api_key" }, readOnly),
      () => client.resolveSecrets({ names: ["openai_api_key"] }, readOnly),
      () => client.createSecret({ name: "x_new", value: "v" }, readOnly),
      () => client.updateSecret({ name: "openai_api_key", description: "d" }, readOnly),
      () => client.deleteSecret({ name: "openai_api_key" }, readOnly),
      () => client.destroySecretVersion({ name: "openai_api_key", version: 1 }, readOnly),
      () => client.getSecret({ name: "openai_api_key" }, accessOnly),
      () => client.listSecrets({}, accessOnly),
      () => client.listSecretVersions({ name: "openai_api_key" }, accessOnly),
    ];
    for (const call of denied) {
      const err = await expectCallError(call);
      expect(err.code).toBe(status.PERMISSION_DENIED);
      expect(err.reason).toBe("SCOPE_MISSING");
    }
    expect((await client.getSecret({ name: "openai_api_key" }, readOnly)).secret?.name).toBe("openai_api_key");
    expect((await client.accessSecret({ name: "openai_api_key" }, accessOnly)).value).toBe("sk-openai-value");
  });

  it("scope is checked before validation: a read-only token sending a bad name to AccessSecret is PERMISSION_DENIED", async () => {
    const readOnly = await svc.token("acl-dev", { scopes: ["secrets:read"] });
    const err = await expectCallError(() => client.accessSecret({ name: "bad name!" }, readOnly));
    expect(err.code).toBe(status.PERMISSION_DENIED);
  });
});

describe("the per-task allowlist (claim `secrets`)", () => {
  it("allows only the listed names, on every RPC that names a secret", async () => {
    const task = await svc.token("acl-dev", { scopes: ["secrets:read", "secrets:access", "secrets:write"], allowlist: ["openai_api_key"] });
    expect((await client.accessSecret({ name: "openai_api_key" }, task)).value).toBe("sk-openai-value");
    const denied = [
      () => client.accessSecret({ name: "github_token" }, task),
      () => client.getSecret({ name: "github_token" }, task),
      () => client.resolveSecrets({ names: ["openai_api_key", "github_token"] }, task),
      () => client.updateSecret({ name: "github_token", description: "x" }, task),
      () => client.deleteSecret({ name: "github_token" }, task),
      () => client.createSecret({ name: "brand_new", value: "v" }, task),
      () => client.listSecretVersions({ name: "github_token" }, task),
      () => client.destroySecretVersion({ name: "github_token", version: 1 }, task),
    ];
    for (const call of denied) {
      const err = await expectCallError(call);
      expect(err.code).toBe(status.PERMISSION_DENIED);
      expect(err.reason).toBe("NOT_ALLOWLISTED");
    }
    expect((await client.getSecret({ name: "github_token" }, owner)).secret?.description).toBe("");
  });

  it("a name outside the allowlist is PERMISSION_DENIED whether or not it exists", async () => {
    const task = await svc.token("acl-dev", { scopes: ["secrets:access"], allowlist: ["openai_api_key"] });
    const exists = await expectCallError(() => client.accessSecret({ name: "github_token" }, task));
    const absent = await expectCallError(() => client.accessSecret({ name: "no_such_secret" }, task));
    expect(exists.code).toBe(status.PERMISSION_DENIED);
    expect(absent.code).toBe(status.PERMISSION_DENIED);
    expect(exists.details).toBe(absent.details);
  });

  it("an allowlisted name that does not exist is NOT_FOUND", async () => {
    const task = await svc.token("acl-dev", { scopes: ["secrets:access"], allowlist: ["not_created_yet"] });
    expect((await expectCallError(() => client.accessSecret({ name: "not_created_yet" }, task))).code).toBe(status.NOT_FOUND);
  });

  it("validation comes before the allowlist: an invalid name is INVALID_ARGUMENT", async () => {
    const task = await svc.token("acl-dev", { scopes: ["secrets:access"], allowlist: ["openai_api_key"] });
    expect((await expectCallError(() => client.accessSecret({ name: "1nvalid" }, task))).code).toBe(status.INVALID_ARGUMENT);
  });

  it("[] allows none; ListSecrets shows only allowlisted names", async () => {
    const none = await svc.token("acl-dev", { scopes: ["secrets:read", "secrets:access"], allowlist: [] });
    expect((await expectCallError(() => client.accessSecret({ name: "openai_api_key" }, none))).code).toBe(status.PERMISSION_DENIED);
    expect((await client.listSecrets({}, none)).secrets).toEqual([]);
    const two = await svc.token("acl-dev", { scopes: ["secrets:read"], allowlist: ["github_token", "openai_api_key", "ghost"] });
    expect((await client.listSecrets({}, two)).secrets.map((s) => s.name)).toEqual(["github_token", "openai_api_key"]);
  });
});

describe("errors and logs", () => {
  it("every error carries ErrorInfo with domain secrets.v1 and a request id the log line shares", async () => {
    const err = await expectCallError(() => client.getSecret({ name: "missing_for_log" }, owner));
    expect(err.errorInfo?.domain).toBe("secrets.v1");
    const requestId = err.trailers.get("x-request-id")[0];
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
    const line = svc.logs.lines().find((l) => l["requestId"] === requestId);
    expect(line).toMatchObject({ method: "/secrets.v1.SecretService/GetSecret", code: "NOT_FOUND", developer: "acl-dev" });
    expect(typeof line?.["durationMs"]).toBe("number");
  });

  it("the log never holds a value, a token, or an invalid name", async () => {
    const pasted = "sk_live_PASTED_AS_A_NAME_0123456789";
    await expectCallError(() => client.getSecret({ name: `${pasted} ` }, owner));
    await client.createSecret({ name: "logged_session", value: "log-probe-value-31337" }, owner);
    await client.accessSecret({ name: "logged_session" }, owner);
    await client.resolveSecrets({ names: ["logged_session", "openai_api_key"] }, owner);
    await client.updateSecret({ name: "logged_session", value: "log-probe-value-2" }, owner);
    const text = svc.logs.text;
    expect(text.length).toBeGreaterThan(0);
    for (const forbidden of ["log-probe-value-31337", "log-probe-value-2", "sk-openai-value", pasted, owner, svc.jwtSecret]) {
      expect(text.includes(forbidden), "a secret string reached the log").toBe(false);
    }
  });
});
