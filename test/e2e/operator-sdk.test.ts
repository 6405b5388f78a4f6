import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { SecretsClient, SecretsError, SecretsUnavailableError, type SecretsClientOptions } from "@secrets-service/client";
import { startTestService, type TestService } from "../support/fixtures.js";
import { freePort } from "../support/free-port.js";

// The SDK's KeyService (`client.keys`) and AuditService (`client.audit`) over real
// gRPC: plain objects with numbers and Dates, SecretsError failures, pages fetched
// as the iteration goes, and retries for the reading calls only.

let svc: TestService;
let operator: SecretsClient;

beforeAll(async () => {
  svc = await startTestService();
  operator = await svc.connectClient("ops", { token: await svc.token("ops", { scopes: ["secrets:operator"] }) });
});

afterAll(async () => {
  await svc?.stop();
});

/** Stores `count` secrets for `developer`, returning their client (with the keys scope too). */
async function developerWith(developer: string, count: number): Promise<SecretsClient> {
  const client = await svc.connectClient(developer, { token: await svc.token(developer, { scopes: ["secrets:read", "secrets:write", "secrets:keys"] }) });
  for (let i = 0; i < count; i++) await client.secrets.create({ name: `s_${i}`, value: `sdk-marker-${i}` });
  return client;
}

async function failure(call: Promise<unknown>): Promise<SecretsError> {
  const e = await call.then(
    () => undefined,
    (err: unknown) => err,
  );
  expect(e).toBeInstanceOf(SecretsError);
  return e as SecretsError;
}

describe("client.keys", () => {
  it("status, rotateDeveloperKey and shredDeveloper answer plain objects, zero counts included", async () => {
    const carol = await developerWith("carol", 3);
    const everything = await operator.keys.status();
    expect(everything).toMatchObject({ activeMasterKeyId: "k1", dataKeysToRewrap: 0, versionsToReencrypt: 0, dataKeys: [] });
    expect(everything.dataKeysPerMasterKey["k1"]).toBeGreaterThanOrEqual(1);
    expect(everything.replicas[0]?.keyIds).toEqual(["k1"]);
    expect(everything.replicas[0]?.lastHeartbeat).toBeInstanceOf(Date);

    const own = await carol.keys.status();
    expect(own.activeMasterKeyId).toBe("");
    expect(own.dataKeys).toEqual([expect.objectContaining({ developerId: "carol", state: "active", masterKeyId: "k1", secretVersions: 3 })]);
    expect(own.dataKeys[0]?.createdAt).toBeInstanceOf(Date);

    const rotated = await carol.keys.rotateDeveloperKey();
    expect(rotated).toMatchObject({ developerId: "carol", previousVersion: own.dataKeys[0]?.version });
    expect(rotated.newVersion).toBeGreaterThan(rotated.previousVersion);
    expect(typeof rotated.versionsToReencrypt).toBe("number");

    expect((await failure(carol.keys.shredDeveloper({ developerId: "carol", confirmDeveloperId: "carol" }))).codeName).toBe("PERMISSION_DENIED");
    expect((await failure(operator.keys.shredDeveloper({ developerId: "carol", confirmDeveloperId: "caro1" }))).codeName).toBe("INVALID_ARGUMENT");
    const shred = await operator.keys.shredDeveloper({ developerId: "carol", confirmDeveloperId: "carol" });
    expect(shred).toMatchObject({ developerId: "carol", secretsDeleted: 3, versionsDeleted: 3, replicasEvicted: 1, cacheCleanupFailed: false });
    expect(shred.dataKeysDeleted).toBeGreaterThanOrEqual(1);
    const again = await failure(operator.keys.shredDeveloper({ developerId: "carol", confirmDeveloperId: "carol" }));
    expect([again.codeName, again.reason]).toEqual(["NOT_FOUND", "DEVELOPER_NOT_FOUND"]);

    expect((await failure(operator.keys.rotateMasterKey("k9"))).reason).toBe("KEY_STATE");
  });
});

describe("client.audit", () => {
  it("lists a trail newest first, page after page, with the RPC's filters", async () => {
    await developerWith("dave", 5);
    const read = async (filter: Parameters<SecretsClient["audit"]["list"]>[0]) => {
      const events = [];
      for await (const e of operator.audit.list(filter)) events.push(e);
      return events;
    };
    // Events are written in batches; wait until all five creates are readable.
    const deadline = Date.now() + 10_000;
    let creates = await read({ developerId: "dave", action: "CreateSecret", pageSize: 2 });
    while (creates.length < 5 && Date.now() < deadline) creates = await read({ developerId: "dave", action: "CreateSecret", pageSize: 2 });

    expect(creates.map((e) => e.secretName)).toEqual(["s_4", "s_3", "s_2", "s_1", "s_0"]);
    expect(creates.every((e) => e.developerId === "dave" && e.outcome === "OK" && e.time instanceof Date)).toBe(true);
    const ids = creates.map((e) => e.id);
    expect([...ids].sort((a, b) => b - a)).toEqual(ids);
    expect(JSON.stringify(creates)).not.toContain("sdk-marker");

    expect((await read({ developerId: "dave", secretName: "s_2" })).map((e) => e.secretName)).toEqual(["s_2"]);
    expect(await read({ developerId: "dave", endTime: new Date(Date.now() - 3_600_000) })).toEqual([]);
    expect((await read({ developerId: "dave", startTime: new Date(Date.now() - 3_600_000), action: "CreateSecret" })).length).toBe(5);
  });
});

describe("retries", () => {
  it("retries GetKeyStatus and ListAuditEvents on UNAVAILABLE, never a rotation or a shred", async () => {
    const address = `127.0.0.1:${await freePort()}`;
    let attempts = 0;
    const options: SecretsClientOptions = {
      address,
      token: () => {
        attempts += 1;
        return "not-a-real-token";
      },
      retry: { maxAttempts: 3, initialBackoffMs: 1, maxBackoffMs: 5 },
    };
    const client = new SecretsClient(options);
    try {
      const count = async (call: () => Promise<unknown>) => {
        attempts = 0;
        await expect(call()).rejects.toBeInstanceOf(SecretsUnavailableError);
        return attempts;
      };
      expect(await count(() => client.keys.status())).toBe(3);
      expect(await count(async () => {
        for await (const e of client.audit.list()) return e;
      })).toBe(3);
      expect(await count(() => client.keys.rotateMasterKey("k2"))).toBe(1);
      expect(await count(() => client.keys.rotateDeveloperKey())).toBe(1);
      expect(await count(() => client.keys.shredDeveloper({ developerId: "x", confirmDeveloperId: "x" }))).toBe(1);
    } finally {
      client.close();
    }
  });
});
