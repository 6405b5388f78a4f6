import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { fromBinary } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { ErrorInfoSchema } from "../../src/api/gen/google/rpc/error_details_pb.js";
import { PROJECT_ROOT, startTestService, type TestService } from "../support/fixtures.js";

// A scripted `buf curl` session, as two developers, through server reflection only:
// a Go gRPC client that knows nothing but what the server describes.

const run = promisify(execFile);
const BUF = join(PROJECT_ROOT, "node_modules", ".bin", "buf");

let svc: TestService;
let alice: string;
let bob: string;

/** One `buf curl` call; resolves with the parsed JSON response, or the parsed error for a failed call. */
async function curl(method: string, body: unknown, token?: string): Promise<{ ok: boolean; json: Record<string, unknown> }> {
  const args = ["curl", "--protocol", "grpc", "--http2-prior-knowledge", "-d", JSON.stringify(body)];
  if (token) args.push("-H", `authorization: Bearer ${token}`);
  args.push(`http://${svc.address}/${method}`);
  try {
    const { stdout } = await run(BUF, args, { timeout: 30_000 });
    return { ok: true, json: JSON.parse(stdout) as Record<string, unknown> };
  } catch (e) {
    const { stdout, stderr } = e as { stdout: string; stderr: string };
    const text = (stderr || stdout).trim();
    return { ok: false, json: JSON.parse(text) as Record<string, unknown> };
  }
}

const secrets = (m: string, body: unknown, token: string) => curl(`secrets.v1.SecretService/${m}`, body, token);

/** The ErrorInfo of a failed call: buf curl prints status details as base64 `value`s. */
function errorInfo(json: Record<string, unknown>): { reason: string; domain: string; metadata: Record<string, string> } {
  const details = json["details"] as { type: string; value: string }[];
  const info = details.find((d) => d.type === "google.rpc.ErrorInfo");
  expect(info, "every error carries an ErrorInfo").toBeDefined();
  const decoded = fromBinary(ErrorInfoSchema, Buffer.from(info?.value ?? "", "base64"));
  return { reason: decoded.reason, domain: decoded.domain, metadata: decoded.metadata };
}

beforeAll(async () => {
  svc = await startTestService();
  alice = await svc.token("alice");
  bob = await svc.token("bob");
});

afterAll(async () => {
  await svc?.stop();
});

describe("buf curl through reflection", () => {
  it("lists every method of SecretService and Health", async () => {
    const { stdout } = await run(BUF, ["curl", "--protocol", "grpc", "--http2-prior-knowledge", "--list-methods", `http://${svc.address}`]);
    const methods = stdout.trim().split("\n");
    for (const m of [
      "CreateSecret",
      "GetSecret",
      "ListSecrets",
      "UpdateSecret",
      "DeleteSecret",
      "AccessSecret",
      "ListSecretVersions",
      "DestroySecretVersion",
      "ResolveSecrets",
      "RestoreSecret",
    ]) {
      expect(methods).toContain(`secrets.v1.SecretService/${m}`);
    }
    expect(methods).toEqual(expect.arrayContaining(["grpc.health.v1.Health/Check", "grpc.health.v1.Health/List", "grpc.health.v1.Health/Watch"]));
    const health = await curl("grpc.health.v1.Health/Check", {});
    expect(health.json).toEqual({ status: "SERVING" });
  });

  it("runs a whole session as two developers who never see each other's secrets", async () => {
    // create, get, list, access
    const created = await secrets("CreateSecret", { name: "openai_api_key", value: "sk-alice-1", description: "OpenAI", metadata: { env: "prod" } }, alice);
    expect(created.ok).toBe(true);
    expect(created.json["secret"]).toMatchObject({ name: "openai_api_key", version: 1, metadata: { env: "prod" }, createdBy: "alice" });
    expect((await secrets("CreateSecret", { name: "openai_api_key", value: "sk-bob-1" }, bob)).ok).toBe(true);
    expect((await secrets("CreateSecret", { name: "github_token", value: "ghp-alice" }, alice)).ok).toBe(true);

    expect((await secrets("GetSecret", { name: "openai_api_key" }, alice)).json["secret"]).toMatchObject({ description: "OpenAI" });
    const list = await secrets("ListSecrets", { pageSize: 10 }, alice);
    expect((list.json["secrets"] as { name: string }[]).map((s) => s.name)).toEqual(["github_token", "openai_api_key"]);
    const bobList = await secrets("ListSecrets", {}, bob);
    expect((bobList.json["secrets"] as { name: string }[]).map((s) => s.name)).toEqual(["openai_api_key"]);
    expect((await secrets("AccessSecret", { name: "openai_api_key" }, alice)).json).toEqual({ name: "openai_api_key", version: 1, value: "sk-alice-1" });
    expect((await secrets("AccessSecret", { name: "openai_api_key" }, bob)).json["value"]).toBe("sk-bob-1");
    const hidden = await secrets("AccessSecret", { name: "github_token" }, bob);
    expect(hidden.ok).toBe(false);
    expect(hidden.json["code"]).toBe("not_found");
    expect(errorInfo(hidden.json)).toMatchObject({ reason: "SECRET_NOT_FOUND", domain: "secrets.v1" });

    // update value, description, metadata; access an old version; list versions
    const updated = await secrets("UpdateSecret", { name: "openai_api_key", value: "sk-alice-2", expectedVersion: 1 }, alice);
    expect(updated.json["secret"]).toMatchObject({ version: 2, description: "OpenAI", metadata: { env: "prod" } });
    const described = await secrets("UpdateSecret", { name: "openai_api_key", description: "OpenAI (rotated)", metadata: { env: "prod", rotated: true } }, alice);
    expect(described.json["secret"]).toMatchObject({ version: 2, description: "OpenAI (rotated)", metadata: { env: "prod", rotated: true } });
    const stale = await secrets("UpdateSecret", { name: "openai_api_key", value: "sk-alice-x", expectedVersion: 1 }, alice);
    expect(stale.json["code"]).toBe("aborted");
    expect(errorInfo(stale.json).reason).toBe("VERSION_MISMATCH");
    expect((await secrets("AccessSecret", { name: "openai_api_key", version: 1 }, alice)).json["value"]).toBe("sk-alice-1");
    expect((await secrets("AccessSecret", { name: "openai_api_key" }, alice)).json["value"]).toBe("sk-alice-2");
    const versions = await secrets("ListSecretVersions", { name: "openai_api_key" }, alice);
    expect((versions.json["versions"] as { version: number; state: string }[]).map((v) => [v.version, v.state])).toEqual([
      [2, "VERSION_STATE_ENABLED"],
      [1, "VERSION_STATE_ENABLED"],
    ]);

    // destroy the old version
    const destroyed = await secrets("DestroySecretVersion", { name: "openai_api_key", version: 1 }, alice);
    expect(destroyed.json["version"]).toMatchObject({ version: 1, state: "VERSION_STATE_DESTROYED" });
    const gone = await secrets("AccessSecret", { name: "openai_api_key", version: 1 }, alice);
    expect(gone.json["code"]).toBe("failed_precondition");
    expect(errorInfo(gone.json).reason).toBe("VERSION_DESTROYED");

    // resolve, including missing names
    const resolved = await secrets("ResolveSecrets", { names: ["openai_api_key", "github_token"] }, alice);
    expect(resolved.json).toEqual({ values: { openai_api_key: "sk-alice-2", github_token: "ghp-alice" } });
    const missing = await secrets("ResolveSecrets", { names: ["openai_api_key", "stripe_key", "aws_key"] }, alice);
    expect(missing.json["code"]).toBe("not_found");
    expect(errorInfo(missing.json)).toMatchObject({ reason: "SECRET_NOT_FOUND", metadata: { names: "stripe_key,aws_key" } });

    // an allowlisted task token
    const task = await svc.token("alice", { scopes: ["secrets:access"], allowlist: ["github_token"] });
    expect((await secrets("AccessSecret", { name: "github_token" }, task)).json["value"]).toBe("ghp-alice");
    const outside = await secrets("AccessSecret", { name: "openai_api_key" }, task);
    expect(outside.json["code"]).toBe("permission_denied");
    expect(errorInfo(outside.json).reason).toBe("NOT_ALLOWLISTED");

    // delete
    expect((await secrets("DeleteSecret", { name: "github_token" }, alice)).json).toEqual({});
    expect((await secrets("GetSecret", { name: "github_token" }, alice)).json["code"]).toBe("not_found");
    expect((await secrets("GetSecret", { name: "openai_api_key" }, bob)).ok).toBe(true);
  });

  it("a bad request says what was wrong, with its reason, and echoes no value", async () => {
    const big = await secrets("CreateSecret", { name: "too_big", value: "s".repeat(70_000) }, alice);
    expect(big.json["code"]).toBe("invalid_argument");
    expect(errorInfo(big.json)).toMatchObject({ reason: "VALUE_TOO_LARGE", metadata: { field: "value" } });
    expect(JSON.stringify(big.json)).not.toContain("sss");
    const noToken = await curl("secrets.v1.SecretService/ListSecrets", {});
    expect(noToken.json["code"]).toBe("unauthenticated");
  });
});
