import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { expectCallError, startTestService, type TcpProxy, type TestClient, type TestService } from "../support/fixtures.js";

// Postgres unreachable → UNAVAILABLE (BACKEND_UNAVAILABLE), and the service recovers
// by itself. The service reaches Postgres through a proxy this test cuts; the
// machine's shared Postgres is never touched.

describe.runIf(process.env["DATABASE_URL"])("Postgres unreachable", () => {
  let svc: TestService;
  let proxy: TcpProxy;
  let client: TestClient<typeof SecretService>;
  let token: string;

  beforeAll(async () => {
    const proxied = await startTestService({}, { proxy: true });
    svc = proxied;
    ({ proxy, secrets: client } = proxied);
    token = await svc.token("unavail-dev");
  });

  afterAll(async () => {
    await svc?.stop();
  });

  it("fails reads and writes UNAVAILABLE while Postgres is down, writes nothing, and recovers", async () => {
    await client.createSecret({ name: "before_outage", value: "v-before" }, token);
    await proxy.down();
    for (const call of [
      () => client.accessSecret({ name: "before_outage" }, token),
      () => client.createSecret({ name: "during_outage", value: "v-during" }, token),
      () => client.listSecrets({}, token),
    ]) {
      const err = await expectCallError(call);
      expect(err.code).toBe(status.UNAVAILABLE);
      expect(err.reason).toBe("BACKEND_UNAVAILABLE");
      expect(err.details).not.toMatch(/postgres|127\.0\.0\.1|password/i);
    }
    await proxy.up();
    let value: string | undefined;
    for (let i = 0; i < 50 && value === undefined; i++) {
      value = await client.accessSecret({ name: "before_outage" }, token).then(
        (r) => r.value,
        () => new Promise<undefined>((r) => setTimeout(() => r(undefined), 100)),
      );
    }
    expect(value).toBe("v-before");
    expect((await client.listSecrets({}, token)).secrets.map((s) => s.name)).toEqual(["before_outage"]);
  });
});
