/**
 * The audit policy: every method of the project's own services (everything generated
 * under src/api/gen/secrets) has exactly one rule, and each rule derives from a decoded
 * request the subject the handlers used to note by hand.
 */
import { readdirSync } from "node:fs";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { create, type DescFile, type DescService } from "@bufbuild/protobuf";
import { describe, expect, it } from "vitest";

import { AuditService } from "../../src/api/gen/secrets/v1/audit_pb.js";
import { KeyService } from "../../src/api/gen/secrets/v1/keys_pb.js";
import { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { auditPolicy, type AuditSubject } from "../../src/audit/audit-policy.js";

const GEN_SECRETS = path.resolve(import.meta.dirname, "../../src/api/gen/secrets");

/** Every service of every generated file under src/api/gen/secrets, found on disk so a new file counts too. */
async function generatedServices(): Promise<DescService[]> {
  const files = readdirSync(GEN_SECRETS, { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith("_pb.ts"));
  expect(files.length).toBeGreaterThan(0);
  const services: DescService[] = [];
  for (const file of files) {
    const mod = (await import(pathToFileURL(path.join(GEN_SECRETS, file)).href)) as Record<string, unknown>;
    for (const value of Object.values(mod)) {
      if (typeof value === "object" && value !== null && (value as { kind?: unknown }).kind === "file") {
        services.push(...(value as DescFile).services);
      }
    }
  }
  return services;
}

const pathOf = (service: DescService, methodName: string) => `/${service.typeName}/${methodName}`;

describe("audit policy", () => {
  it("has a rule for every method of every audited service, and for nothing else", async () => {
    const services = await generatedServices();
    expect(services.map((s) => s.typeName).sort()).toEqual(["secrets.v1.AuditService", "secrets.v1.KeyService", "secrets.v1.SecretService"]);
    const paths = services.flatMap((s) => s.methods.map((m) => pathOf(s, m.name)));
    const missing = paths.filter((p) => !auditPolicy.has(p));
    expect(missing).toEqual([]);
    expect([...auditPolicy.keys()].sort()).toEqual([...paths].sort());
    for (const s of services) {
      for (const m of s.methods) expect(auditPolicy.get(pathOf(s, m.name))?.action).toBe(m.name);
    }
  });

  it("marks only the value reads as returning values (the methods SECRETS_AUDIT_STRICT holds back)", () => {
    const valueReads = [...auditPolicy].filter(([, rule]) => rule.returnsValues).map(([p]) => p);
    expect(valueReads.sort()).toEqual([pathOf(SecretService, "AccessSecret"), pathOf(SecretService, "ResolveSecrets")]);
  });

  /** The subject the policy gives a request of `service`'s method `methodName`. */
  function subjectOf(service: DescService, methodName: string, init: Record<string, unknown>): AuditSubject {
    const method = service.methods.find((m) => m.name === methodName);
    const rule = auditPolicy.get(pathOf(service, methodName));
    if (!method || !rule) throw new Error(`no method or rule ${methodName}`);
    return rule.subject(create(method.input, init));
  }

  it("derives SecretService subjects: the names, and the version the request names", () => {
    const cases: [string, Record<string, unknown>, AuditSubject][] = [
      ["CreateSecret", { name: "api_key", value: "v" }, { names: ["api_key"], version: 0 }],
      ["GetSecret", { name: "api_key" }, { names: ["api_key"], version: 0 }],
      ["ListSecrets", { namePrefix: "api" }, { names: [], version: 0 }],
      ["UpdateSecret", { name: "api_key", value: "v", expectedVersion: 4 }, { names: ["api_key"], version: 4 }],
      ["DeleteSecret", { name: "api_key", expectedVersion: 2 }, { names: ["api_key"], version: 2 }],
      ["AccessSecret", { name: "api_key", version: 3 }, { names: ["api_key"], version: 3 }],
      ["ListSecretVersions", { name: "api_key" }, { names: ["api_key"], version: 0 }],
      ["DestroySecretVersion", { name: "api_key", version: 5 }, { names: ["api_key"], version: 5 }],
      ["ResolveSecrets", { names: ["a", "b"] }, { names: ["a", "b"], version: 0 }],
    ];
    for (const [method, init, expected] of cases) expect([method, subjectOf(SecretService, method, init)]).toEqual([method, expected]);
  });

  it("records a KeyService call about a developer in that developer's trail, unless the id is malformed", () => {
    expect(subjectOf(KeyService, "RotateMasterKey", { keyId: "k2" })).toEqual({ names: [], version: 0 });
    for (const method of ["RotateDeveloperKey", "ShredDeveloper", "GetKeyStatus"]) {
      expect([method, subjectOf(KeyService, method, { developerId: "dev-1" })]).toEqual([method, { names: [], version: 0, developerId: "dev-1" }]);
      expect([method, subjectOf(KeyService, method, { developerId: "not a developer id" })]).toEqual([method, { names: [], version: 0 }]);
      expect([method, subjectOf(KeyService, method, { developerId: "" })]).toEqual([method, { names: [], version: 0 }]);
    }
  });

  it("records a ListAuditEvents call in the trail it reads, with the name it filtered on", () => {
    expect(subjectOf(AuditService, "ListAuditEvents", {})).toEqual({ names: [], version: 0 });
    expect(subjectOf(AuditService, "ListAuditEvents", { developerId: "dev-2", secretName: "api_key" })).toEqual({
      names: ["api_key"],
      version: 0,
      developerId: "dev-2",
    });
    expect(subjectOf(AuditService, "ListAuditEvents", { developerId: "bad id", secretName: "x" })).toEqual({ names: ["x"], version: 0 });
  });
});
