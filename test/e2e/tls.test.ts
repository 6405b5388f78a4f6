import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import * as grpc from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { AuditService } from "../../src/api/gen/secrets/v1/audit_pb.js";
import { KeyService } from "../../src/api/gen/secrets/v1/keys_pb.js";
import { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { cliRunner } from "../cli/cli-process.js";
import { createTestClient, expectCallError, startTestService, type TestService } from "../support/fixtures.js";

// TLS and mutual TLS with certificates made here: a client without a certificate,
// or with one from another CA, is refused; the client identity reaches the audit
// trail and gates the operator scope.

const dir = mkdtempSync(join(tmpdir(), "secrets-tls-"));
const file = (name: string) => join(dir, name);

function openssl(...args: string[]): void {
  execFileSync("openssl", args, { stdio: "ignore" });
}

/** A CA, and certificates it signs with the given subjectAltName. */
function makeCa(name: string): void {
  openssl("req", "-x509", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-days", "2",
    "-subj", `/CN=${name}`, "-keyout", file(`${name}.key`), "-out", file(`${name}.crt`));
}
function makeCert(name: string, ca: string, san: string): void {
  openssl("req", "-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:P-256", "-nodes", "-subj", `/CN=${name}`,
    "-keyout", file(`${name}.key`), "-out", file(`${name}.csr`));
  writeFileSync(file(`${name}.ext`), `subjectAltName=${san}\n`);
  openssl("x509", "-req", "-in", file(`${name}.csr`), "-CA", file(`${ca}.crt`), "-CAkey", file(`${ca}.key`),
    "-CAcreateserial", "-days", "2", "-extfile", file(`${name}.ext`), "-out", file(`${name}.crt`));
}

function clientCredentials(cert?: string): grpc.ChannelCredentials {
  const ca = readFileSync(file("ca.crt"));
  return cert
    ? grpc.credentials.createSsl(ca, readFileSync(file(`${cert}.key`)), readFileSync(file(`${cert}.crt`)))
    : grpc.credentials.createSsl(ca);
}

beforeAll(() => {
  makeCa("ca");
  makeCa("other-ca");
  makeCert("server", "ca", "IP:127.0.0.1,DNS:localhost");
  makeCert("ops", "ca", "URI:spiffe://test/ops");
  makeCert("app", "ca", "URI:spiffe://test/app");
  makeCert("intruder", "other-ca", "URI:spiffe://test/ops");
});

afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe("mutual TLS", () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({
      SECRETS_TLS_CERT: file("server.crt"),
      SECRETS_TLS_KEY: file("server.key"),
      SECRETS_TLS_CLIENT_CA: file("ca.crt"),
      SECRETS_OPERATOR_IDENTITIES: "spiffe://test/ops",
    });
  });
  afterAll(async () => svc?.stop());

  const secrets = (cert?: string) => createTestClient(SecretService, svc.address, clientCredentials(cert));

  it("refuses a client without a certificate, with one from another CA, and plaintext", async () => {
    const token = await svc.token("mtls-dev");
    for (const client of [
      secrets(),
      secrets("intruder"),
      createTestClient(SecretService, svc.address, grpc.credentials.createInsecure()),
    ]) {
      try {
        const err = await expectCallError(() => client.listSecrets({}, token));
        expect(err.code).toBe(grpc.status.UNAVAILABLE);
      } finally {
        client.close();
      }
    }
  });

  it("serves a client with a certificate from the CA and records its identity in logs and audit", async () => {
    const token = await svc.token("mtls-dev");
    const app = secrets("app");
    const audit = createTestClient(AuditService, svc.address, clientCredentials("app"));
    try {
      await app.createSecret({ name: "over_mtls", value: "mtls-value" }, token);
      expect((await app.accessSecret({ name: "over_mtls" }, token)).value).toBe("mtls-value");
      let events: { action: string; callerIdentity: string }[] = [];
      for (let i = 0; i < 50 && events.length < 2; i++) {
        // Each listing is audited too: only the calls above are compared.
        events = (await audit.listAuditEvents({}, token)).events.filter((e) => e.action !== "ListAuditEvents");
        if (events.length < 2) await new Promise((r) => setTimeout(r, 50));
      }
      expect(events.map((e) => [e.action, e.callerIdentity])).toEqual([
        ["AccessSecret", "spiffe://test/app"],
        ["CreateSecret", "spiffe://test/app"],
      ]);
      expect(svc.logs.lines().some((l) => l["identity"] === "spiffe://test/app")).toBe(true);
    } finally {
      app.close();
      audit.close();
    }
  });

  it("honours the operator scope only from a listed client identity", async () => {
    const operator = await svc.token("ops", { scopes: ["secrets:operator"] });
    const fromApp = createTestClient(KeyService, svc.address, clientCredentials("app"));
    const fromOps = createTestClient(KeyService, svc.address, clientCredentials("ops"));
    try {
      const denied = await expectCallError(() => fromApp.getKeyStatus({}, operator));
      expect(denied.code).toBe(grpc.status.PERMISSION_DENIED);
      expect(denied.reason).toBe("SCOPE_MISSING");
      expect((await fromOps.getKeyStatus({}, operator)).activeMasterKeyId).toBe("k1");
    } finally {
      fromApp.close();
      fromOps.close();
    }
  });

  it("lets the CLI present a client certificate, so operators need no buf curl", { timeout: 30_000 }, async () => {
    const operator = await svc.token("ops", { scopes: ["secrets:operator"] });
    const cli = cliRunner({ SECRETS_ADDR: `https://${svc.address}`, SECRETS_TOKEN: operator });
    const ca = ["--ca", file("ca.crt")];
    const asOps = await cli([...ca, "--cert", file("ops.crt"), "--key", file("ops.key"), "keys", "status"]);
    expect(asOps.stderr).toBe("");
    expect(asOps).toMatchObject({ code: 0 });
    expect(asOps.stdout).toMatch(/^active_master_key_id: k1$/m);
    const asApp = await cli([...ca, "--cert", file("app.crt"), "--key", file("app.key"), "keys", "status"]);
    expect(asApp.code).toBe(1);
    expect(asApp.stderr).toMatch(/^secrets: PERMISSION_DENIED \(SCOPE_MISSING\)/);
    const noCert = await cli([...ca, "keys", "status", "--timeout", "3000"]);
    expect(noCert.code).toBe(3);
    const named = await cli([...ca, "--server-name", "localhost", "--cert", file("ops.crt"), "--key", file("ops.key"), "keys", "status"]);
    expect(named).toMatchObject({ code: 0, stderr: "" });
    const misnamed = await cli([...ca, "--server-name", "elsewhere.example", "--cert", file("ops.crt"), "--key", file("ops.key"), "keys", "status", "--timeout", "3000"]);
    expect(misnamed.code).toBe(3);
    const halfPair = await cli([...ca, "--cert", file("ops.crt"), "keys", "status"]);
    expect(halfPair).toMatchObject({ code: 2, stderr: "secrets: --cert and --key go together\n" });
  });
});

describe("TLS without client certificates", () => {
  let svc: TestService;
  beforeAll(async () => {
    svc = await startTestService({ SECRETS_TLS_CERT: file("server.crt"), SECRETS_TLS_KEY: file("server.key") });
  });
  afterAll(async () => svc?.stop());

  it("serves TLS clients and refuses plaintext", async () => {
    const token = await svc.token("tls-dev");
    const tls = createTestClient(SecretService, svc.address, clientCredentials());
    const plain = createTestClient(SecretService, svc.address, grpc.credentials.createInsecure());
    try {
      await tls.createSecret({ name: "over_tls", value: "tls-value" }, token);
      expect((await tls.accessSecret({ name: "over_tls" }, token)).value).toBe("tls-value");
      expect((await expectCallError(() => plain.listSecrets({}, token))).code).toBe(grpc.status.UNAVAILABLE);
    } finally {
      tls.close();
      plain.close();
    }
  });
});
