/**
 * The secret use cases (createSecretService) against a real database, without gRPC:
 * a request refused by validation changes nothing, NOT_FOUND and its kin, versions
 * and their retention, the per-developer limits, and the lookup cache answering
 * with the new value (or none) once a write has returned.
 */
import { randomUUID } from "node:crypto";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { AppError } from "../../src/api/errors.js";
import type { Principal, Scope } from "../../src/auth/principal.js";
import { createMemoryCache } from "../../src/cache/memory-cache.js";
import { noCache, type LookupOutcome } from "../../src/cache/secret-cache.js";
import { KeyBytes } from "../../src/crypto/key-bytes.js";
import { createLocalKeyProvider } from "../../src/crypto/key-provider.js";
import { createDataKeys } from "../../src/keys/data-keys.js";
import { createDekCache } from "../../src/keys/dek-cache.js";
import { createRateLimiter } from "../../src/secrets/rate-limiter.js";
import { createSecretService, type SecretService, type SecretServiceDeps } from "../../src/secrets/secret-service.js";
import { ensureActiveMasterKey } from "../../src/store/master-key-store.js";
import { createTestDb, testDatabaseKind, type TestDb } from "../support/test-db.js";

const ALL: Scope[] = ["secrets:read", "secrets:write", "secrets:access"];

function principalOf(developerId: string, scopes: Scope[] = ALL): Principal {
  return { developerId, scopes: new Set(scopes), allowlist: null, tokenId: undefined, expiresAt: Date.now() / 1000 + 600 };
}

/** A fresh developer (and its principal): tests share one database, never a developer. */
function newDeveloper(): Principal {
  return principalOf(`dev-${randomUUID()}`);
}

/** The reason of the AppError `call` rejects with; fails the test if it resolves or throws anything else. */
async function reasonOf(call: Promise<unknown>): Promise<string> {
  try {
    await call;
  } catch (e) {
    expect(e).toBeInstanceOf(AppError);
    return (e as AppError).reason;
  }
  throw new Error("expected the call to fail");
}

const text = (value: Buffer) => value.toString("utf8");
const noInput = { description: "", metadata: undefined };

describe(`secret use cases on ${testDatabaseKind()}`, () => {
  let t: TestDb;
  let deps: Omit<SecretServiceDeps, "cache">;
  /** maxVersions 3, at most 3 secrets per developer, no rate limits, no value cache. */
  let service: SecretService;

  beforeAll(async () => {
    t = await createTestDb();
    await ensureActiveMasterKey(t.db, "k1");
    const keyProvider = createLocalKeyProvider(new Map([["k1", KeyBytes.random(32)]]));
    deps = {
      db: t.db,
      dataKeys: createDataKeys({ db: t.db, keyProvider, cache: createDekCache() }),
      maxVersions: 3,
    };
    service = serviceWith();
  });
  afterAll(async () => {
    await t?.cleanup();
  });

  function serviceWith(extra: Partial<SecretServiceDeps> = {}): SecretService {
    return createSecretService({
      ...deps,
      cache: noCache(),
      limits: {
        maxSecrets: 3,
        reads: createRateLimiter({ ratePerSecond: 0, kind: "read" }),
        writes: createRateLimiter({ ratePerSecond: 0, kind: "write" }),
      },
      ...extra,
    });
  }

  /** Everything stored for a developer: secrets, versions (with whether they hold a ciphertext) and data keys. */
  async function storedFor(developerId: string): Promise<unknown> {
    const secrets = await t.db.query(
      "SELECT name, description, metadata, current_version FROM secrets WHERE developer_id = $1 ORDER BY name",
      [developerId],
    );
    const versions = await t.db.query(
      `SELECT s.name, v.version, v.state, v.ciphertext IS NOT NULL AS sealed, encode(v.ciphertext, 'hex') AS ciphertext
       FROM secret_versions v JOIN secrets s ON s.id = v.secret_id WHERE v.developer_id = $1 ORDER BY s.name, v.version`,
      [developerId],
    );
    const keys = await t.db.query("SELECT version FROM data_keys WHERE developer_id = $1", [developerId]);
    return { secrets: secrets.rows, versions: versions.rows, dataKeys: keys.rows };
  }

  describe("validation", () => {
    it("a create refused by validation stores nothing, not even the developer's first data key", async () => {
      const p = newDeveloper();
      const before = await storedFor(p.developerId);
      expect(await reasonOf(service.createSecret(p, { name: "1bad", value: "v", ...noInput }))).toBe("INVALID_NAME");
      expect(await reasonOf(service.createSecret(p, { name: "ok", value: "", ...noInput }))).toBe("INVALID_VALUE");
      expect(await reasonOf(service.createSecret(p, { name: "ok", value: "v", description: "a\u0000b", metadata: undefined }))).toBe(
        "INVALID_DESCRIPTION",
      );
      const deep = { a: { b: { c: { d: { e: { f: { g: { h: { i: 1 } } } } } } } } };
      expect(await reasonOf(service.createSecret(p, { name: "ok", value: "v", description: "", metadata: deep }))).toBe(
        "INVALID_METADATA",
      );
      expect(await storedFor(p.developerId)).toEqual(before);
      expect(before).toEqual({ secrets: [], versions: [], dataKeys: [] });
    });

    it("an update, delete or destroy refused by validation leaves the secret as it was", async () => {
      const p = newDeveloper();
      await service.createSecret(p, { name: "api_key", value: "first", description: "d", metadata: { team: "a" } });
      await service.updateSecret(p, { name: "api_key", value: "second", description: undefined, metadata: undefined, expectedVersion: 0 });
      const before = await storedFor(p.developerId);

      const update = (patch: object) =>
        service.updateSecret(p, { name: "api_key", value: "third", description: undefined, metadata: undefined, expectedVersion: 0, ...patch });
      expect(await reasonOf(update({ value: "" }))).toBe("INVALID_VALUE");
      expect(await reasonOf(update({ metadata: { n: Number.NaN } }))).toBe("INVALID_METADATA");
      expect(await reasonOf(update({ expectedVersion: -1 }))).toBe("INVALID_VERSION");
      expect(await reasonOf(update({ value: undefined }))).toBe("EMPTY_UPDATE");
      expect(await reasonOf(service.deleteSecret(p, "api_key", -1))).toBe("INVALID_VERSION");
      expect(await reasonOf(service.destroySecretVersion(p, "api_key", 0))).toBe("INVALID_VERSION");

      expect(await storedFor(p.developerId)).toEqual(before);
      expect(text((await service.accessSecret(p, "api_key", 0)).value)).toBe("second");
    });

    it("a call without its scope is refused before anything is read or written", async () => {
      const p = newDeveloper();
      const reader = principalOf(p.developerId, ["secrets:read"]);
      expect(await reasonOf(service.createSecret(reader, { name: "api_key", value: "v", ...noInput }))).toBe("SCOPE_MISSING");
      expect(await storedFor(p.developerId)).toEqual({ secrets: [], versions: [], dataKeys: [] });
    });
  });

  describe("not found", () => {
    it("answers SECRET_NOT_FOUND for a name the developer does not have, on every call", async () => {
      const p = newDeveloper();
      const other = newDeveloper();
      await service.createSecret(other, { name: "theirs", value: "v", ...noInput }); // another developer's name
      for (const name of ["nothing_here", "theirs"]) {
        expect(await reasonOf(service.getSecret(p, name))).toBe("SECRET_NOT_FOUND");
        expect(await reasonOf(service.accessSecret(p, name, 0))).toBe("SECRET_NOT_FOUND");
        expect(await reasonOf(service.accessSecret(p, name, 2))).toBe("SECRET_NOT_FOUND");
        expect(
          await reasonOf(service.updateSecret(p, { name, value: undefined, description: "x", metadata: undefined, expectedVersion: 0 })),
        ).toBe("SECRET_NOT_FOUND");
        expect(await reasonOf(service.deleteSecret(p, name, 0))).toBe("SECRET_NOT_FOUND");
        expect(await reasonOf(service.listSecretVersions(p, name, 0, ""))).toBe("SECRET_NOT_FOUND");
        expect(await reasonOf(service.destroySecretVersion(p, name, 1))).toBe("SECRET_NOT_FOUND");
      }
      // An update of a value for a developer with no data key yet creates none.
      expect(
        await reasonOf(service.updateSecret(p, { name: "x", value: "v", description: undefined, metadata: undefined, expectedVersion: 0 })),
      ).toBe("SECRET_NOT_FOUND");
      expect(await storedFor(p.developerId)).toEqual({ secrets: [], versions: [], dataKeys: [] });
    });

    it("ResolveSecrets names only the missing secrets; a version past the current one is VERSION_NOT_FOUND", async () => {
      const p = newDeveloper();
      await service.createSecret(p, { name: "present", value: "v", ...noInput });
      try {
        await service.resolveSecrets(p, ["present", "absent_b", "absent_a"]);
        expect.unreachable("ResolveSecrets with missing names must fail");
      } catch (e) {
        expect((e as AppError).reason).toBe("SECRET_NOT_FOUND");
        expect((e as AppError).metadata["names"]).toBe("absent_b,absent_a");
      }
      expect(await reasonOf(service.accessSecret(p, "present", 2))).toBe("VERSION_NOT_FOUND");
      expect(await reasonOf(service.destroySecretVersion(p, "present", 2))).toBe("VERSION_NOT_FOUND");
    });
  });

  describe("versions", () => {
    it("a new value is a new version; attributes alone are not; older versions stay readable", async () => {
      const p = newDeveloper();
      const created = await service.createSecret(p, { name: "db_url", value: "one", description: "d1", metadata: { env: "dev" } });
      expect(created).toMatchObject({ name: "db_url", version: 1, description: "d1", metadata: { env: "dev" } });
      const second = await service.updateSecret(p, { name: "db_url", value: "two", description: undefined, metadata: undefined, expectedVersion: 1 });
      expect(second).toMatchObject({ version: 2, description: "d1", metadata: { env: "dev" } });
      const relabelled = await service.updateSecret(p, { name: "db_url", value: undefined, description: "d2", metadata: undefined, expectedVersion: 2 });
      expect(relabelled).toMatchObject({ version: 2, description: "d2" });

      expect(await service.accessSecret(p, "db_url", 0)).toMatchObject({ name: "db_url", version: 2 });
      expect(text((await service.accessSecret(p, "db_url", 0)).value)).toBe("two");
      expect(text((await service.accessSecret(p, "db_url", 1)).value)).toBe("one");
      expect(text((await service.resolveSecrets(p, ["db_url"])).get("db_url") as Buffer)).toBe("two");
      const versions = await service.listSecretVersions(p, "db_url", 0, "");
      expect(versions.items.map((v) => [v.version, v.state])).toEqual([
        [2, "enabled"],
        [1, "enabled"],
      ]);
      expect(await reasonOf(service.createSecret(p, { name: "db_url", value: "again", ...noInput }))).toBe("SECRET_EXISTS");
    });

    it("checks expected_version under the row lock: a mismatch writes nothing", async () => {
      const p = newDeveloper();
      await service.createSecret(p, { name: "token", value: "one", ...noInput });
      await service.updateSecret(p, { name: "token", value: "two", description: undefined, metadata: undefined, expectedVersion: 0 });
      const before = await storedFor(p.developerId);
      const stale = { name: "token", value: "three", description: undefined, metadata: undefined, expectedVersion: 1 };
      expect(await reasonOf(service.updateSecret(p, stale))).toBe("VERSION_MISMATCH");
      expect(await reasonOf(service.deleteSecret(p, "token", 1))).toBe("VERSION_MISMATCH");
      expect(await storedFor(p.developerId)).toEqual(before);
      await service.deleteSecret(p, "token", 2);
      expect(await reasonOf(service.getSecret(p, "token"))).toBe("SECRET_NOT_FOUND");
    });

    it("keeps the ciphertexts of the last maxVersions versions; destroying one keeps its row", async () => {
      const p = newDeveloper();
      await service.createSecret(p, { name: "rotating", value: "v1", ...noInput });
      for (const value of ["v2", "v3", "v4"]) {
        await service.updateSecret(p, { name: "rotating", value, description: undefined, metadata: undefined, expectedVersion: 0 });
      }
      // maxVersions 3: version 1 lost its ciphertext when version 4 was written.
      expect(await reasonOf(service.accessSecret(p, "rotating", 1))).toBe("VERSION_DESTROYED");
      expect(text((await service.accessSecret(p, "rotating", 2)).value)).toBe("v2");

      expect(await reasonOf(service.destroySecretVersion(p, "rotating", 4))).toBe("CURRENT_VERSION");
      expect(await service.destroySecretVersion(p, "rotating", 2)).toMatchObject({ version: 2, state: "destroyed" });
      expect(await reasonOf(service.accessSecret(p, "rotating", 2))).toBe("VERSION_DESTROYED");
      const versions = await service.listSecretVersions(p, "rotating", 0, "");
      expect(versions.items.map((v) => [v.version, v.state])).toEqual([
        [4, "enabled"],
        [3, "enabled"],
        [2, "destroyed"],
        [1, "destroyed"],
      ]);
      const stored = (await storedFor(p.developerId)) as { versions: { version: number; sealed: boolean }[] };
      expect(stored.versions.map((v) => [v.version, v.sealed])).toEqual([
        [1, false],
        [2, false],
        [3, true],
        [4, true],
      ]);
    });
  });

  describe("limits", () => {
    it("refuses a create past maxSecrets without storing it; a delete makes room", async () => {
      const p = newDeveloper();
      for (const name of ["s1", "s2", "s3"]) await service.createSecret(p, { name, value: "v", ...noInput });
      expect(await reasonOf(service.createSecret(p, { name: "s4", value: "v", ...noInput }))).toBe("QUOTA_EXCEEDED");
      const page = await service.listSecrets(p, { pageSize: 0, pageToken: "", namePrefix: "", metadataFilter: undefined });
      expect(page.items.map((s) => s.name)).toEqual(["s1", "s2", "s3"]);
      await service.deleteSecret(p, "s2", 0);
      await service.createSecret(p, { name: "s4", value: "v", ...noInput });
    });

    it("rate-limits reads and writes per developer; a refused write stores nothing", async () => {
      const clock = { now: 1_000_000 };
      const limited = serviceWith({
        limits: {
          maxSecrets: 100,
          reads: createRateLimiter({ ratePerSecond: 1, burst: 2, kind: "read", now: () => clock.now }),
          writes: createRateLimiter({ ratePerSecond: 1, burst: 2, kind: "write", now: () => clock.now }),
        },
      });
      const p = newDeveloper();
      await limited.createSecret(p, { name: "a", value: "v", ...noInput });
      await limited.createSecret(p, { name: "b", value: "v", ...noInput });
      expect(await reasonOf(limited.createSecret(p, { name: "c", value: "v", ...noInput }))).toBe("RATE_LIMITED");
      expect(await reasonOf(limited.getSecret(p, "c"))).toBe("SECRET_NOT_FOUND"); // a read: its own bucket

      // ResolveSecrets costs one read per name: two names need two tokens, and one is left.
      expect(await reasonOf(limited.resolveSecrets(p, ["a", "b"]))).toBe("RATE_LIMITED");
      clock.now += 2_000;
      expect([...(await limited.resolveSecrets(p, ["a", "b"])).keys()]).toEqual(["a", "b"]);
      // Another developer has buckets of its own.
      await limited.createSecret(newDeveloper(), { name: "c", value: "v", ...noInput });
    });
  });

  describe("with a value cache", () => {
    /** A service over an in-process cache, and how many lookups were hits. */
    function cached() {
      const outcomes: Record<LookupOutcome, number> = { hit: 0, miss: 0, rejected: 0, expired: 0, error: 0 };
      const cache = createMemoryCache({
        ttlMs: 60_000,
        entryKey: KeyBytes.random(32),
        onLookup: (result, count) => {
          outcomes[result] += count;
        },
      });
      return { service: serviceWith({ cache }), hits: () => outcomes.hit };
    }

    /** Reads `name` until the cache answers it (a fill lands after its read returns); returns what the hit gave. */
    async function readUntilHit(s: SecretService, p: Principal, name: string, hits: () => number): Promise<string> {
      for (let attempt = 0; attempt < 100; attempt++) {
        const before = hits();
        const answer = await s.accessSecret(p, name, 0).then(
          (r) => text(r.value),
          (e: unknown) => (e as AppError).reason,
        );
        if (hits() > before) return answer;
        await new Promise((r) => setTimeout(r, 10));
      }
      throw new Error("the cache never answered");
    }

    it("serves the new value once an update has returned, and none once a delete has", async () => {
      const { service: s, hits } = cached();
      const p = newDeveloper();
      await s.createSecret(p, { name: "hot", value: "old", ...noInput });
      expect(await readUntilHit(s, p, "hot", hits)).toBe("old");

      await s.updateSecret(p, { name: "hot", value: "new", description: undefined, metadata: undefined, expectedVersion: 0 });
      expect(await s.accessSecret(p, "hot", 0)).toMatchObject({ version: 2 });
      expect(text((await s.resolveSecrets(p, ["hot"])).get("hot") as Buffer)).toBe("new");
      expect(await readUntilHit(s, p, "hot", hits)).toBe("new");

      await s.deleteSecret(p, "hot", 0);
      expect(await reasonOf(s.accessSecret(p, "hot", 0))).toBe("SECRET_NOT_FOUND");
      expect(await reasonOf(s.resolveSecrets(p, ["hot"]))).toBe("SECRET_NOT_FOUND");
    });

    it("a cached 'not found' gives way to a create, and a destroyed old version does not touch the current one", async () => {
      const { service: s, hits } = cached();
      const p = newDeveloper();
      expect(await readUntilHit(s, p, "later", hits)).toBe("SECRET_NOT_FOUND");
      await s.createSecret(p, { name: "later", value: "here", ...noInput });
      expect(text((await s.accessSecret(p, "later", 0)).value)).toBe("here");

      await s.updateSecret(p, { name: "later", value: "there", description: undefined, metadata: undefined, expectedVersion: 0 });
      expect(await readUntilHit(s, p, "later", hits)).toBe("there");
      await s.destroySecretVersion(p, "later", 1);
      expect(await readUntilHit(s, p, "later", hits)).toBe("there");
    });
  });
});
