import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { DataKeyState, type KeyService } from "../../src/api/gen/secrets/v1/keys_pb.js";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { DEK_ROTATE_AT } from "../../src/keys/data-keys.js";
import { expectCallError, startTestService, type TestClient, type TestService } from "../support/fixtures.js";

// Developer data key rotation under concurrent writes, automatic rotation at the
// encryption limit, and shredding — over real gRPC, on both backends.

let svc: TestService;
let secrets: TestClient<typeof SecretService>;
let keys: TestClient<typeof KeyService>;

beforeAll(async () => {
  svc = await startTestService({ SECRETS_KEY_JOB_BATCH: "7" });
  secrets = svc.secrets;
  keys = svc.keys;
});

afterAll(async () => {
  await svc?.stop();
});

async function until(what: string, check: () => Promise<boolean>, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await check())) {
    if (Date.now() > deadline) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 100));
  }
}

describe("RotateDeveloperKey", () => {
  it("re-encrypts every value under the new key while writes continue; no write is lost; the old key is retired", async () => {
    const dev = "rotating-dev";
    const token = await svc.token(dev, { scopes: ["secrets:read", "secrets:write", "secrets:access", "secrets:keys"] });
    for (let i = 0; i < 30; i++) await secrets.createSecret({ name: `s${i}`, value: `s${i}-v1` }, token);

    // Writers keep updating while the rotation runs; every acknowledged write is remembered.
    const acknowledged = new Map<string, { value: string; version: number }>();
    let stop = false;
    const writers = Array.from({ length: 4 }, async (_, w) => {
      for (let n = 0; !stop && n < 10_000; n++) {
        const name = `s${(w * 7 + n) % 30}`;
        const value = `${name}-w${w}-${n}`;
        try {
          const { secret } = await secrets.updateSecret({ name, value }, token);
          const prev = acknowledged.get(name);
          if (!prev || (secret?.version ?? 0) > prev.version) acknowledged.set(name, { value, version: secret?.version ?? 0 });
        } catch (e) {
          acknowledged.set("ERROR", { value: String(e), version: -1 });
        }
      }
    });
    await new Promise((r) => setTimeout(r, 200));
    const rotated = await keys.rotateDeveloperKey({}, token);
    expect(rotated.developerId).toBe(dev);
    expect(rotated.newVersion).toBeGreaterThan(rotated.previousVersion);
    await new Promise((r) => setTimeout(r, 300));
    stop = true;
    await Promise.all(writers);
    expect(acknowledged.get("ERROR")).toBeUndefined();

    await until("re-encryption and retirement", async () => {
      const s = await keys.getKeyStatus({}, token);
      return s.versionsToReencrypt === 0n && s.dataKeys.find((k) => k.version === rotated.previousVersion)?.state === DataKeyState.RETIRED;
    });
    const status1 = await keys.getKeyStatus({}, token);
    expect(status1.dataKeys.map((k) => [k.version, k.state])).toEqual([
      [rotated.newVersion, DataKeyState.ACTIVE],
      [rotated.previousVersion, DataKeyState.RETIRED],
    ]);
    expect(status1.activeMasterKeyId).toBe(""); // not an operator: no global view
    expect(status1.replicas).toEqual([]);

    const { rows } = await svc.db.query<{ n: number }>(
      "SELECT count(*) AS n FROM secret_versions WHERE developer_id = $1 AND ciphertext IS NOT NULL AND dek_version <> $2",
      [dev, rotated.newVersion],
    );
    expect(rows[0]?.n).toBe(0);
    const retired = await svc.db.query<{ wrapped_key: Buffer | null }>("SELECT wrapped_key FROM data_keys WHERE developer_id = $1 AND version = $2", [dev, rotated.previousVersion]);
    expect(retired.rows[0]?.wrapped_key).toBeNull();

    // Every acknowledged write is there, and every version still decrypts.
    for (const [name, last] of acknowledged) {
      const current = await secrets.accessSecret({ name }, token);
      expect(current.version).toBeGreaterThanOrEqual(last.version);
      if (current.version === last.version) expect(current.value).toBe(last.value);
      const history = await secrets.listSecretVersions({ name, pageSize: 500 }, token);
      expect(history.versions.map((v) => v.version)).toEqual(Array.from({ length: current.version }, (_, i) => current.version - i));
    }
    expect((await secrets.accessSecret({ name: "s29", version: 1 }, token)).value).toBe("s29-v1");
  });

  it("needs secrets:keys for one's own key and operator for another's", async () => {
    const plain = await svc.token("rotating-dev", { scopes: ["secrets:read", "secrets:write"] });
    expect((await expectCallError(() => keys.rotateDeveloperKey({}, plain))).reason).toBe("SCOPE_MISSING");
    const own = await svc.token("someone", { scopes: ["secrets:keys"] });
    const other = await expectCallError(() => keys.rotateDeveloperKey({ developerId: "rotating-dev" }, own));
    expect(other.code).toBe(status.PERMISSION_DENIED);
    const bad = await expectCallError(() => keys.rotateDeveloperKey({ developerId: "bad developer" }, own));
    expect(bad.code).toBe(status.PERMISSION_DENIED); // scope before validation
    const operator = await svc.token("ops", { scopes: ["secrets:operator"] });
    expect((await expectCallError(() => keys.rotateDeveloperKey({ developerId: "bad developer" }, operator))).code).toBe(status.INVALID_ARGUMENT);
    expect((await expectCallError(() => keys.rotateDeveloperKey({ developerId: "nobody-yet" }, operator))).code).toBe(status.FAILED_PRECONDITION);
  });

  it("rotates automatically before the data key reaches its encryption limit", async () => {
    const dev = "busy-dev";
    const token = await svc.token(dev);
    await secrets.createSecret({ name: "busy", value: "b1" }, token);
    // Pretend the key has done almost 2^30 encryptions; the next reservation crosses the soft limit.
    await svc.db.query("UPDATE data_keys SET encryption_count = $2 WHERE developer_id = $1 AND state = 'active'", [dev, DEK_ROTATE_AT]);
    const fresh = await svc.token("other-busy-dev");
    await secrets.createSecret({ name: "x", value: "y" }, fresh); // unrelated developer: no rotation
    // Reservations come in blocks; force a new one by rotating nothing else and writing until it is taken.
    for (let i = 0; i < 300; i++) await secrets.updateSecret({ name: "busy", value: `b${i + 2}` }, token);
    await until("automatic rotation", async () => {
      const { rows } = await svc.db.query<{ n: number }>("SELECT count(*) AS n FROM data_keys WHERE developer_id = $1", [dev]);
      return (rows[0]?.n ?? 0) >= 2;
    });
    const { rows } = await svc.db.query<{ n: number }>("SELECT count(*) AS n FROM data_keys WHERE developer_id = 'other-busy-dev'");
    expect(rows[0]?.n).toBe(1);
    expect((await secrets.accessSecret({ name: "busy" }, token)).value).toBe("b301");
  });
});

describe("ShredDeveloper", () => {
  it("deletes the developer's secrets, data keys and cache entries, and confirms the eviction", async () => {
    const dev = "doomed-dev";
    const token = await svc.token(dev);
    for (let i = 0; i < 5; i++) await secrets.createSecret({ name: `d${i}`, value: `doomed-${i}` }, token);
    await secrets.accessSecret({ name: "d0" }, token); // cached and DEK in memory
    const operator = await svc.token("ops", { scopes: ["secrets:operator"] });

    const mismatch = await expectCallError(() => keys.shredDeveloper({ developerId: dev, confirmDeveloperId: "doomed-de" }, operator));
    expect(mismatch.code).toBe(status.INVALID_ARGUMENT);
    expect((await expectCallError(() => keys.shredDeveloper({ developerId: dev, confirmDeveloperId: dev }, token))).code).toBe(status.PERMISSION_DENIED);
    expect((await secrets.accessSecret({ name: "d1" }, token)).value).toBe("doomed-1");

    await secrets.updateSecret({ name: "d1", value: "doomed-1b" }, token); // a second version
    const { rows: before } = await svc.db.query<{ version: number }>("SELECT version FROM data_keys WHERE developer_id = $1", [dev]);
    const shredded = await keys.shredDeveloper({ developerId: dev, confirmDeveloperId: dev }, operator);
    expect(shredded).toMatchObject({ developerId: dev, secretsDeleted: 5n, versionsDeleted: 6n, dataKeysDeleted: 1n, cacheCleanupFailed: false });
    expect(shredded.replicasEvicted).toBeGreaterThanOrEqual(1);
    // The in-process cache (embedded database) held d0's entry at least; with Postgres the test runs without a cache.
    expect(shredded.cacheEntriesDeleted).toBeGreaterThanOrEqual(svc.db.kind === "pglite" ? 1n : 0n);

    // Nothing is left to shred: a second shred says so.
    const again = await expectCallError(() => keys.shredDeveloper({ developerId: dev, confirmDeveloperId: dev }, operator));
    expect(again.code).toBe(status.NOT_FOUND);
    expect(again.reason).toBe("DEVELOPER_NOT_FOUND");
    const unknown = await expectCallError(() => keys.shredDeveloper({ developerId: "never-seen", confirmDeveloperId: "never-seen" }, operator));
    expect(unknown.reason).toBe("DEVELOPER_NOT_FOUND");
    for (let i = 0; i < 5; i++) {
      expect((await expectCallError(() => secrets.accessSecret({ name: `d${i}` }, token))).code).toBe(status.NOT_FOUND);
    }
    const { rows } = await svc.db.query<{ n: number }>(
      `SELECT (SELECT count(*) FROM secrets WHERE developer_id = $1) + (SELECT count(*) FROM data_keys WHERE developer_id = $1)
            + (SELECT count(*) FROM secret_versions WHERE developer_id = $1) + (SELECT count(*) FROM developer_secret_counts WHERE developer_id = $1) AS n`,
      [dev],
    );
    expect(rows[0]?.n).toBe(0);
    // The developer can start again, under a brand-new data key whose version was never used.
    await secrets.createSecret({ name: "d0", value: "reborn" }, token);
    expect((await secrets.accessSecret({ name: "d0" }, token)).value).toBe("reborn");
    const { rows: after } = await svc.db.query<{ version: number }>("SELECT version FROM data_keys WHERE developer_id = $1", [dev]);
    expect(after).toHaveLength(1);
    expect(before.map((r) => r.version)).not.toContain(after[0]?.version);
  });
});
