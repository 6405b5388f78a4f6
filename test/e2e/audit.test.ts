import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { AuditService } from "../../src/api/gen/secrets/v1/audit_pb.js";
import type { KeyService } from "../../src/api/gen/secrets/v1/keys_pb.js";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { verifyAuditChains } from "../../src/audit/audit-verify.js";
import { expectCallError, startTestService, type TestClient, type TestService } from "../support/fixtures.js";

// The audit trail end to end: one event per call, in order, with outcome and
// subject, and never a value; strict mode commits value reads before answering.

async function until(check: () => Promise<boolean>, timeoutMs = 10_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error("timed out");
    await new Promise((r) => setTimeout(r, 50));
  }
}

describe("audit trail", () => {
  let svc: TestService;
  let secrets: TestClient<typeof SecretService>;
  let audit: TestClient<typeof AuditService>;
  let keys: TestClient<typeof KeyService>;

  beforeAll(async () => {
    svc = await startTestService();
    secrets = svc.secrets;
    audit = svc.audit;
    keys = svc.keys;
  });

  afterAll(async () => {
    await svc?.stop();
  });

  it("records a scripted session one event per call, in order, without any value", async () => {
    const dev = "audited-dev";
    const token = await svc.token(dev, { scopes: ["secrets:read", "secrets:write", "secrets:access", "secrets:keys"] });
    const values = ["audit-value-one-5f1c", "audit-value-two-9a7e", "audit-value-three-c2d4"];
    const expected: [string, string, string, number][] = [];
    const ok = async (action: string, name: string, version: number, call: () => Promise<unknown>) => {
      await call();
      expected.push([action, name, "OK", version]);
    };
    const fails = async (action: string, name: string, outcome: string, version: number, call: () => Promise<unknown>) => {
      const err = await expectCallError(call);
      expect(status[err.code]).toBe(outcome);
      expected.push([action, name, outcome, version]);
    };

    await ok("CreateSecret", "db_password", 0, () => secrets.createSecret({ name: "db_password", value: values[0] as string }, token));
    await ok("AccessSecret", "db_password", 0, () => secrets.accessSecret({ name: "db_password" }, token));
    await ok("UpdateSecret", "db_password", 1, () => secrets.updateSecret({ name: "db_password", value: values[1] as string, expectedVersion: 1 }, token));
    await fails("UpdateSecret", "db_password", "ABORTED", 1, () => secrets.updateSecret({ name: "db_password", value: values[2] as string, expectedVersion: 1 }, token));
    await ok("AccessSecret", "db_password", 1, () => secrets.accessSecret({ name: "db_password", version: 1 }, token));
    await ok("CreateSecret", "api_key", 0, () => secrets.createSecret({ name: "api_key", value: values[2] as string }, token));
    await ok("ResolveSecrets", "db_password,api_key", 0, () => secrets.resolveSecrets({ names: ["db_password", "api_key"] }, token));
    await fails("GetSecret", "missing_one", "NOT_FOUND", 0, () => secrets.getSecret({ name: "missing_one" }, token));
    await ok("ListSecrets", "", 0, () => secrets.listSecrets({}, token));
    await ok("ListSecretVersions", "db_password", 0, () => secrets.listSecretVersions({ name: "db_password" }, token));
    await ok("DestroySecretVersion", "db_password", 1, () => secrets.destroySecretVersion({ name: "db_password", version: 1 }, token));
    await ok("RotateDeveloperKey", "", 0, () => keys.rotateDeveloperKey({}, token));
    await ok("DeleteSecret", "api_key", 0, () => secrets.deleteSecret({ name: "api_key" }, token));
    const pasted = "sk_live_pasted value";
    const bad = await expectCallError(() => secrets.getSecret({ name: pasted }, token));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);

    // Each listing is audited too (and sees the listings before it): they are left out here.
    const session = async () => (await audit.listAuditEvents({ pageSize: 500 }, token)).events.filter((e) => e.action !== "ListAuditEvents");
    await until(async () => (await session()).length >= expected.length + 1);
    const events = await session();
    const chronological = [...events].reverse();
    expect(chronological).toHaveLength(expected.length + 1);
    expect(chronological.slice(0, -1).map((e) => [e.action, e.secretName, e.outcome, e.version])).toEqual(expected);
    const last = chronological.at(-1);
    expect(last?.action).toBe("GetSecret");
    expect(last?.outcome).toBe("INVALID_ARGUMENT");
    expect(last?.secretName).toMatch(/^<invalid:length=20:sha256=[0-9a-f]{12}>$/);
    for (const e of events) {
      expect(e).toMatchObject({ developerId: dev, callerSubject: dev });
      expect(e.callerTokenId).toMatch(/^[0-9a-f-]{36}$/);
      expect(e.requestId).toMatch(/^[0-9a-f-]{36}$/);
      expect(e.peer).toContain("127.0.0.1");
      expect(e.hash).toMatch(/^[0-9a-f]{64}$/);
    }

    // Filters.
    const accesses = await audit.listAuditEvents({ action: "AccessSecret" }, token);
    expect(accesses.events.map((e) => e.version)).toEqual([1, 0]);
    const aborted = await audit.listAuditEvents({ outcome: "ABORTED" }, token);
    expect(aborted.events).toHaveLength(1);
    const byName = await audit.listAuditEvents({ secretName: "api_key" }, token);
    expect(byName.events.map((e) => e.action)).toEqual(["DeleteSecret", "ResolveSecrets", "CreateSecret"]);

    // No value, token or pasted name anywhere in the table.
    const { rows } = await svc.db.query<{ row: string }>("SELECT t::text AS row FROM audit_events t");
    const dump = rows.map((r) => r.row).join("\n");
    for (const forbidden of [...values, token, pasted, "sk_live_pasted"]) expect(dump.includes(forbidden)).toBe(false);

    // The chain verifies; the table refuses changes.
    const check = await verifyAuditChains(svc.db);
    expect(check.problems).toEqual([]);
    expect(check.events).toBeGreaterThanOrEqual(expected.length);
    await expect(svc.db.query("UPDATE audit_events SET outcome = 'OK' WHERE outcome = 'ABORTED'")).rejects.toThrow(/append-only/);
    await expect(svc.db.query("DELETE FROM audit_events")).rejects.toThrow(/append-only/);
  });

  it("another developer's events need operator scope; an operator's call on a developer is recorded under that developer", async () => {
    const stranger = await svc.token("stranger", { scopes: ["secrets:read"] });
    const denied = await expectCallError(() => audit.listAuditEvents({ developerId: "audited-dev" }, stranger));
    expect(denied.code).toBe(status.PERMISSION_DENIED);
    expect((await audit.listAuditEvents({}, stranger)).events).toEqual([]);

    const operator = await svc.token("ops", { scopes: ["secrets:operator"] });
    await keys.rotateDeveloperKey({ developerId: "audited-dev" }, operator);
    await until(async () => (await audit.listAuditEvents({ developerId: "audited-dev", action: "RotateDeveloperKey" }, operator)).events.length === 2);
    const rotations = await audit.listAuditEvents({ developerId: "audited-dev", action: "RotateDeveloperKey" }, operator);
    expect(rotations.events[0]).toMatchObject({ developerId: "audited-dev", callerSubject: "ops", outcome: "OK" });
  });

  it("reading a trail is recorded in that trail: one's own under oneself, an operator's under the developer read", async () => {
    const dev = "trail-owner";
    const own = await svc.token(dev, { scopes: ["secrets:read"] });
    const operator = await svc.token("trail-ops", { scopes: ["secrets:operator"] });
    const stranger = await svc.token("trail-stranger", { scopes: ["secrets:read"] });
    await audit.listAuditEvents({}, own);
    await audit.listAuditEvents({ developerId: dev, secretName: "api_key" }, operator);
    await expectCallError(() => audit.listAuditEvents({ developerId: dev }, stranger));

    const reads = async () => (await audit.listAuditEvents({ developerId: dev, action: "ListAuditEvents", pageSize: 500 }, operator)).events;
    await until(async () => (await reads()).length >= 3);
    const first = [...(await reads())].reverse().slice(0, 3);
    expect(first.map((e) => [e.developerId, e.callerSubject, e.secretName, e.outcome])).toEqual([
      [dev, dev, "", "OK"],
      [dev, "trail-ops", "api_key", "OK"],
      [dev, "trail-stranger", "", "PERMISSION_DENIED"],
    ]);
    for (const e of first) expect(e.requestId).toMatch(/^[0-9a-f-]{36}$/);
    // The operator's reads of another developer's trail are in that trail, not in the operator's own.
    expect((await audit.listAuditEvents({ action: "ListAuditEvents" }, operator)).events).toEqual([]);
  });
});

describe("SECRETS_AUDIT_STRICT=1", () => {
  let svc: TestService;
  let secrets: TestClient<typeof SecretService>;

  beforeAll(async () => {
    svc = await startTestService({ SECRETS_AUDIT_STRICT: "1" });
    secrets = svc.secrets;
  });

  afterAll(async () => {
    await svc?.stop();
  });

  it("a value read answers only after its audit event is committed", async () => {
    const token = await svc.token("strict-dev");
    await secrets.createSecret({ name: "guarded", value: "strict-value" }, token);
    for (let i = 0; i < 5; i++) {
      const before = await svc.db.query<{ n: number }>("SELECT count(*) AS n FROM audit_events WHERE action = 'AccessSecret'");
      await secrets.accessSecret({ name: "guarded" }, token);
      const after = await svc.db.query<{ n: number }>("SELECT count(*) AS n FROM audit_events WHERE action = 'AccessSecret'");
      expect(after.rows[0]?.n).toBe((before.rows[0]?.n ?? 0) + 1);
    }
    await secrets.resolveSecrets({ names: ["guarded"] }, token);
    const resolved = await svc.db.query<{ n: number }>("SELECT count(*) AS n FROM audit_events WHERE action = 'ResolveSecrets'");
    expect(resolved.rows[0]?.n).toBe(1);
  });
});
