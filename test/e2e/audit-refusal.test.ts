import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it, vi } from "vitest";
import type { AuditService } from "../../src/api/gen/secrets/v1/audit_pb.js";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import type { AuditLog } from "../../src/audit/audit-log.js";
import { type CallError, expectCallError, startTestService, type TestClient, type TestService } from "../support/fixtures.js";

// A whole service whose audit log refuses events: every audited call is answered
// UNAVAILABLE / AUDIT_UNAVAILABLE, without its result, instead of unaudited. The
// audit log is the real one; the mock only hands the test the instance the service
// creates, so the test can close it (a closed log refuses every event).

const created = vi.hoisted(() => [] as AuditLog[]);
vi.mock("../../src/audit/audit-log.js", async (importOriginal) => {
  const actual = await importOriginal<typeof import("../../src/audit/audit-log.js")>();
  return {
    ...actual,
    createAuditLog: (...args: Parameters<typeof actual.createAuditLog>) => {
      const log = actual.createAuditLog(...args);
      created.push(log);
      return log;
    },
  };
});

const VALUE = "refusal-test-value-d13f";

describe("a service whose audit log refuses events", () => {
  let svc: TestService;
  let secrets: TestClient<typeof SecretService>;
  let audit: TestClient<typeof AuditService>;
  let token: string;

  beforeAll(async () => {
    svc = await startTestService();
    secrets = svc.secrets;
    audit = svc.audit;
    token = await svc.token("refused-dev", { scopes: ["secrets:read", "secrets:access", "secrets:write"] });
    await secrets.createSecret({ name: "guarded_key", value: VALUE }, token);
    expect((await secrets.accessSecret({ name: "guarded_key" }, token)).value).toBe(VALUE);
    expect(created).toHaveLength(1);
    await created[0]?.close();
  });

  afterAll(async () => {
    await svc?.stop();
  });

  function expectRefused(err: CallError): string {
    expect(err.code).toBe(status.UNAVAILABLE);
    expect(err.reason).toBe("AUDIT_UNAVAILABLE");
    expect(err.details).not.toContain(VALUE);
    const requestId = err.trailers.get("x-request-id")[0];
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
    return requestId as string;
  }

  it("withholds values: AccessSecret and ResolveSecrets are refused", async () => {
    const access = expectRefused(await expectCallError(() => secrets.accessSecret({ name: "guarded_key" }, token)));
    const resolve = expectRefused(await expectCallError(() => secrets.resolveSecrets({ names: ["guarded_key"] }, token)));
    const lines = svc.logs.lines();
    for (const requestId of [access, resolve]) {
      expect(lines.find((l) => l["requestId"] === requestId && l["msg"] === "call")?.["code"]).toBe("UNAVAILABLE");
    }
  });

  it("refuses writes before they run: nothing changes unaudited", async () => {
    expectRefused(await expectCallError(() => secrets.updateSecret({ name: "guarded_key", value: "changed-unaudited" }, token)));
    expectRefused(await expectCallError(() => secrets.createSecret({ name: "new_unaudited", value: "x" }, token)));
    expectRefused(await expectCallError(() => secrets.deleteSecret({ name: "guarded_key" }, token)));
    const { rows } = await svc.db.query<{ name: string; current_version: number }>(
      "SELECT name, current_version FROM secrets WHERE developer_id = $1 ORDER BY name",
      ["refused-dev"],
    );
    expect(rows).toEqual([{ name: "guarded_key", current_version: 1 }]);
  });

  it("refuses failures and reads of the audit trail too", async () => {
    expectRefused(await expectCallError(() => secrets.getSecret({ name: "no_such_secret" }, token)));
    expectRefused(await expectCallError(() => audit.listAuditEvents({}, token)));
  });

  it("records none of the refused calls, and logs no value or token", async () => {
    const { rows } = await svc.db.query<{ action: string }>("SELECT action FROM audit_events WHERE developer_id = $1 ORDER BY id", ["refused-dev"]);
    expect(rows.map((r) => r.action)).toEqual(["CreateSecret", "AccessSecret"]);
    expect(svc.logs.text).not.toContain(VALUE);
    expect(svc.logs.text).not.toContain(token);
  });

  it("still answers an unauthenticated call UNAUTHENTICATED: it has no event to record", async () => {
    const err = await expectCallError(() => secrets.accessSecret({ name: "guarded_key" }));
    expect(err.code).toBe(status.UNAUTHENTICATED);
  });
});
