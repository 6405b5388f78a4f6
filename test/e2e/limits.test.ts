import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { expectCallError, startTestService, type TestClient, type TestService } from "../support/fixtures.js";

// Per-developer limits over real gRPC: RESOURCE_EXHAUSTED with its reason, and a
// rejected call changes nothing.

let svc: TestService;
let client: TestClient<typeof SecretService>;

beforeAll(async () => {
  svc = await startTestService({ SECRETS_MAX_SECRETS_PER_DEVELOPER: "3", SECRETS_WRITE_RATE: "4", SECRETS_READ_RATE: "10" });
  client = svc.secrets;
});

afterAll(async () => {
  await svc?.stop();
});

describe("per-developer limits", () => {
  it("caps the number of secrets a developer stores (QUOTA_EXCEEDED), and other developers are unaffected", async () => {
    const a = await svc.token("quota-a");
    for (let i = 0; i < 3; i++) await client.createSecret({ name: `q${i}`, value: "v" }, a);
    const err = await expectCallError(() => client.createSecret({ name: "q3", value: "v" }, a));
    expect(err.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(err.reason).toBe("QUOTA_EXCEEDED");
    expect(err.errorInfo?.metadata["limit"]).toBe("3");
    expect((await expectCallError(() => client.getSecret({ name: "q3" }, a))).code).toBe(status.NOT_FOUND);
    await client.deleteSecret({ name: "q0" }, a);
    await client.createSecret({ name: "q3", value: "v" }, a); // room again
    const b = await svc.token("quota-b");
    await client.createSecret({ name: "q0", value: "v" }, b);
  });

  it("lets exactly the quota's number of concurrent creates through, whatever their order", async () => {
    // Its own service: the quota 5 and no write rate limit, so that 20 creates are on the wire at once.
    const own = await startTestService({ SECRETS_MAX_SECRETS_PER_DEVELOPER: "5", SECRETS_WRITE_RATE: "0" });
    const c = own.secrets;
    try {
      const t = await own.token("quota-race");
      const results = await Promise.allSettled(Array.from({ length: 20 }, (_, i) => c.createSecret({ name: `r${i}`, value: "v" }, t)));
      const created = results.filter((r) => r.status === "fulfilled");
      expect(created).toHaveLength(5);
      for (const r of results.filter((r) => r.status === "rejected")) {
        expect((r as PromiseRejectedResult).reason).toMatchObject({ code: status.RESOURCE_EXHAUSTED, reason: "QUOTA_EXCEEDED" });
      }
      const { secrets } = await c.listSecrets({ pageSize: 50 }, t);
      expect(secrets).toHaveLength(5);
      // Deleting one makes room for exactly one more.
      await c.deleteSecret({ name: secrets[0]!.name }, t);
      const again = await Promise.allSettled(Array.from({ length: 4 }, (_, i) => c.createSecret({ name: `s${i}`, value: "v" }, t)));
      expect(again.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    } finally {
      await own.stop();
    }
  });

  it("limits a developer's write and read rates (RATE_LIMITED with a retry hint)", async () => {
    const w = await svc.token("rate-writer");
    await client.createSecret({ name: "hot", value: "v0" }, w);
    const results = await Promise.allSettled(Array.from({ length: 12 }, (_, i) => client.updateSecret({ name: "hot", value: `v${i + 1}` }, w)));
    const limited = results.filter((r) => r.status === "rejected");
    expect(limited.length).toBeGreaterThan(0);
    for (const r of limited) {
      const e = (r as PromiseRejectedResult).reason as { code: number; reason: string; errorInfo?: { metadata: Record<string, string> } };
      expect(e.code).toBe(status.RESOURCE_EXHAUSTED);
      expect(e.reason).toBe("RATE_LIMITED");
      expect(Number(e.errorInfo?.metadata["retry_after_ms"])).toBeGreaterThan(0);
    }
    // A limited call wrote nothing: one version per update that succeeded.
    const { secret } = await client.getSecret({ name: "hot" }, w);
    expect(secret?.version).toBe(1 + 12 - limited.length);

    const reader = await svc.token("rate-reader");
    // ResolveSecrets of n names costs n: 25 names exceed a burst of 20 at once.
    const big = await expectCallError(() => client.resolveSecrets({ names: Array.from({ length: 25 }, (_, i) => `n${i}`) }, reader));
    expect(big.reason).toBe("RATE_LIMITED");
  });
});
