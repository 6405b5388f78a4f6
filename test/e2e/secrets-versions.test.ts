import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { VersionState, type SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { expectCallError, startTestService, type TestClient, type TestService } from "../support/fixtures.js";

// Core II over real gRPC: updates, versions, destroy, resolve, metadata filters.
// The service keeps 3 versions with ciphertext so retention is quick to reach.

let svc: TestService;
let client: TestClient<typeof SecretService>;
let dev: string;

beforeAll(async () => {
  svc = await startTestService({ SECRETS_MAX_VERSIONS: "3" });
  client = svc.secrets;
  dev = await svc.token("versions-dev");
});

afterAll(async () => {
  await svc?.stop();
});

describe("UpdateSecret", () => {
  it("a new value makes a new version; older versions stay readable", async () => {
    await client.createSecret({ name: "rotating", value: "value-one", description: "d1", metadata: { a: 1 } }, dev);
    const { secret } = await client.updateSecret({ name: "rotating", value: "value-two" }, dev);
    expect(secret?.version).toBe(2);
    expect(secret?.description).toBe("d1");
    expect(secret?.metadata).toEqual({ a: 1 });
    expect((await client.accessSecret({ name: "rotating" }, dev)).value).toBe("value-two");
    expect((await client.accessSecret({ name: "rotating", version: 1 }, dev)).value).toBe("value-one");
  });

  it("description and metadata alone change no version; metadata is replaced whole, {} clears it", async () => {
    await client.createSecret({ name: "attrs", value: "v", description: "old", metadata: { keep: "no", x: { y: 1 } } }, dev);
    let r = await client.updateSecret({ name: "attrs", description: "new" }, dev);
    expect(r.secret).toMatchObject({ version: 1, description: "new", metadata: { keep: "no", x: { y: 1 } } });
    r = await client.updateSecret({ name: "attrs", metadata: { only: true } }, dev);
    expect(r.secret).toMatchObject({ version: 1, description: "new", metadata: { only: true } });
    r = await client.updateSecret({ name: "attrs", metadata: {} }, dev);
    expect(r.secret?.metadata).toEqual({});
    r = await client.updateSecret({ name: "attrs", description: "" }, dev);
    expect(r.secret?.description).toBe("");
    expect(r.secret?.updatedAt && r.secret.createdAt && r.secret.updatedAt.seconds >= r.secret.createdAt.seconds).toBe(true);
  });

  it("an update with nothing to change is INVALID_ARGUMENT (EMPTY_UPDATE)", async () => {
    await client.createSecret({ name: "untouched", value: "v" }, dev);
    const err = await expectCallError(() => client.updateSecret({ name: "untouched" }, dev));
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    expect(err.reason).toBe("EMPTY_UPDATE");
  });

  it("expected_version must match the current version, else ABORTED (VERSION_MISMATCH) and nothing changes", async () => {
    await client.createSecret({ name: "guarded", value: "g1" }, dev);
    await client.updateSecret({ name: "guarded", value: "g2", expectedVersion: 1 }, dev);
    const err = await expectCallError(() => client.updateSecret({ name: "guarded", value: "g3", expectedVersion: 1 }, dev));
    expect(err.code).toBe(status.ABORTED);
    expect(err.reason).toBe("VERSION_MISMATCH");
    expect(err.errorInfo?.metadata).toMatchObject({ expected_version: "1", current_version: "2" });
    expect((await client.accessSecret({ name: "guarded" }, dev)).value).toBe("g2");

    const del = await expectCallError(() => client.deleteSecret({ name: "guarded", expectedVersion: 1 }, dev));
    expect(del.code).toBe(status.ABORTED);
    await client.deleteSecret({ name: "guarded", expectedVersion: 2 }, dev);
    expect((await expectCallError(() => client.getSecret({ name: "guarded" }, dev))).code).toBe(status.NOT_FOUND);
  });

  it("concurrent updates with the same expected_version: exactly one wins", async () => {
    await client.createSecret({ name: "contended", value: "start" }, dev);
    const results = await Promise.allSettled(
      Array.from({ length: 8 }, (_, i) => client.updateSecret({ name: "contended", value: `w${i}`, expectedVersion: 1 }, dev)),
    );
    expect(results.filter((r) => r.status === "fulfilled")).toHaveLength(1);
    for (const r of results) if (r.status === "rejected") expect((r.reason as { code: number }).code).toBe(status.ABORTED);
    expect((await client.getSecret({ name: "contended" }, dev)).secret?.version).toBe(2);
  });
});

describe("versions", () => {
  it("keeps the newest SECRETS_MAX_VERSIONS with ciphertext; older ones are DESTROYED with no gaps", async () => {
    await client.createSecret({ name: "history", value: "h1" }, dev);
    for (let v = 2; v <= 5; v++) await client.updateSecret({ name: "history", value: `h${v}` }, dev);
    const { versions, nextPageToken } = await client.listSecretVersions({ name: "history" }, dev);
    expect(nextPageToken).toBe("");
    expect(versions.map((v) => v.version)).toEqual([5, 4, 3, 2, 1]);
    expect(versions.map((v) => v.state)).toEqual([
      VersionState.ENABLED,
      VersionState.ENABLED,
      VersionState.ENABLED,
      VersionState.DESTROYED,
      VersionState.DESTROYED,
    ]);
    expect(versions.every((v) => v.createdBy === "versions-dev")).toBe(true);
    const err = await expectCallError(() => client.accessSecret({ name: "history", version: 2 }, dev));
    expect(err.code).toBe(status.FAILED_PRECONDITION);
    expect(err.reason).toBe("VERSION_DESTROYED");
    expect((await client.accessSecret({ name: "history", version: 3 }, dev)).value).toBe("h3");
    const { rows } = await svc.db.query<{ n: number }>(
      `SELECT count(*) AS n FROM secret_versions v JOIN secrets s ON s.id = v.secret_id
       WHERE s.developer_id = 'versions-dev' AND s.name = 'history' AND v.ciphertext IS NOT NULL`,
    );
    expect(rows[0]?.n).toBe(3);
  });

  it("finds the versions an update destroys among the enabled ones only (an index of them), not the whole history", async () => {
    const { rows } = await svc.db.query<{ indexdef: string }>(
      "SELECT indexdef FROM pg_indexes WHERE tablename = 'secret_versions' AND indexname = 'secret_versions_enabled'",
    );
    expect(rows[0]?.indexdef).toMatch(/\(secret_id, version\) WHERE \(state = 'enabled'::text\)/);
  });

  it("lists versions newest first across pages", async () => {
    await client.createSecret({ name: "paged_versions", value: "p1" }, dev);
    for (let v = 2; v <= 7; v++) await client.updateSecret({ name: "paged_versions", value: `p${v}` }, dev);
    const seen: number[] = [];
    let pageToken = "";
    do {
      const page = await client.listSecretVersions({ name: "paged_versions", pageSize: 2, pageToken }, dev);
      seen.push(...page.versions.map((v) => v.version));
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(seen).toEqual([7, 6, 5, 4, 3, 2, 1]);
    const bad = await expectCallError(() => client.listSecretVersions({ name: "history", pageToken: "garbage" }, dev));
    expect(bad.reason).toBe("INVALID_PAGE_TOKEN");
  });

  it("DestroySecretVersion removes an old version's ciphertext; the current one cannot be destroyed", async () => {
    await client.createSecret({ name: "leaked", value: "leaked-v1" }, dev);
    await client.updateSecret({ name: "leaked", value: "fresh-v2" }, dev);
    const { version } = await client.destroySecretVersion({ name: "leaked", version: 1 }, dev);
    expect(version).toMatchObject({ version: 1, state: VersionState.DESTROYED });
    expect((await expectCallError(() => client.accessSecret({ name: "leaked", version: 1 }, dev))).reason).toBe("VERSION_DESTROYED");
    // Destroying again is harmless.
    expect((await client.destroySecretVersion({ name: "leaked", version: 1 }, dev)).version?.state).toBe(VersionState.DESTROYED);

    const current = await expectCallError(() => client.destroySecretVersion({ name: "leaked", version: 2 }, dev));
    expect(current.code).toBe(status.FAILED_PRECONDITION);
    expect(current.reason).toBe("CURRENT_VERSION");
    const missing = await expectCallError(() => client.destroySecretVersion({ name: "leaked", version: 9 }, dev));
    expect(missing.code).toBe(status.NOT_FOUND);
    const zero = await expectCallError(() => client.destroySecretVersion({ name: "leaked", version: 0 }, dev));
    expect(zero.code).toBe(status.INVALID_ARGUMENT);
    expect((await client.accessSecret({ name: "leaked" }, dev)).value).toBe("fresh-v2");
  });

  it("a deleted and re-created name is a new secret at version 1; old ciphertexts cannot be replayed into it", async () => {
    const first = await client.createSecret({ name: "reborn", value: "old-life-1" }, dev);
    await client.updateSecret({ name: "reborn", value: "old-life-2" }, dev);
    const { rows: saved } = await svc.db.query<{ ciphertext: Buffer; dek_version: number }>(
      "SELECT ciphertext, dek_version FROM secret_versions WHERE secret_id = $1 AND version = 1",
      [first.secret?.id],
    );
    await client.deleteSecret({ name: "reborn" }, dev);
    const second = await client.createSecret({ name: "reborn", value: "new-life-1" }, dev);
    expect(second.secret?.version).toBe(1);
    expect(second.secret?.id).not.toBe(first.secret?.id);
    expect((await client.listSecretVersions({ name: "reborn" }, dev)).versions.map((v) => v.version)).toEqual([1]);

    // Replay the old version-1 ciphertext into the new secret's version 1.
    await svc.db.query("UPDATE secret_versions SET ciphertext = $2, dek_version = $3 WHERE secret_id = $1 AND version = 1", [
      second.secret?.id,
      saved[0]?.ciphertext,
      saved[0]?.dek_version,
    ]);
    const err = await expectCallError(() => client.accessSecret({ name: "reborn" }, dev));
    expect(err.code).toBe(status.INTERNAL);
    expect(err.reason).toBe("INTEGRITY_FAILURE");
  });
});

describe("ResolveSecrets", () => {
  beforeAll(async () => {
    for (let i = 0; i < 12; i++) await client.createSecret({ name: `task_secret_${i}`, value: `resolved-value-${i}` }, dev);
  });

  it("returns every named value in one call; duplicates collapse", async () => {
    const names = Array.from({ length: 12 }, (_, i) => `task_secret_${i}`);
    const { values } = await client.resolveSecrets({ names: [...names, "task_secret_0"] }, dev);
    expect(Object.keys(values).sort()).toEqual([...names].sort());
    for (let i = 0; i < 12; i++) expect(values[`task_secret_${i}`]).toBe(`resolved-value-${i}`);
  });

  it("any missing name fails NOT_FOUND naming every missing one, and returns nothing", async () => {
    const err = await expectCallError(() =>
      client.resolveSecrets({ names: ["task_secret_1", "missing_one", "task_secret_2", "missing_two"] }, dev),
    );
    expect(err.code).toBe(status.NOT_FOUND);
    expect(err.reason).toBe("SECRET_NOT_FOUND");
    expect(err.errorInfo?.metadata["names"]).toBe("missing_one,missing_two");
    expect(err.details).toContain("missing_one");
    expect(err.details).toContain("missing_two");
    expect(err.details).not.toContain("resolved-value");
  });

  it("rejects an empty list, more than 100 names, and invalid names", async () => {
    expect((await expectCallError(() => client.resolveSecrets({ names: [] }, dev))).code).toBe(status.INVALID_ARGUMENT);
    const many = Array.from({ length: 101 }, (_, i) => `n${i}`);
    const tooMany = await expectCallError(() => client.resolveSecrets({ names: many }, dev));
    expect(tooMany.code).toBe(status.INVALID_ARGUMENT);
    expect(tooMany.reason).toBe("TOO_MANY_NAMES");
    const invalid = await expectCallError(() => client.resolveSecrets({ names: ["ok_name", "bad name"] }, dev));
    expect(invalid.reason).toBe("INVALID_NAME");
    expect(invalid.errorInfo?.metadata["field"]).toBe("names[1]");
  });

  it("accepts exactly 100 names", async () => {
    const names = Array.from({ length: 100 }, (_, i) => `task_secret_${i % 12}_${i}`);
    const err = await expectCallError(() => client.resolveSecrets({ names }, dev));
    expect(err.code).toBe(status.NOT_FOUND);
    expect(err.errorInfo?.metadata["names"]?.split(",")).toHaveLength(100);
  });
});

describe("ListSecrets metadata_filter", () => {
  beforeAll(async () => {
    const t = await svc.token("filter-dev");
    await client.createSecret({ name: "db_prod", value: "x", metadata: { env: "prod", kind: "db", tags: ["a", "b"] } }, t);
    await client.createSecret({ name: "db_staging", value: "x", metadata: { env: "staging", kind: "db" } }, t);
    await client.createSecret({ name: "api_prod", value: "x", metadata: { env: "prod", kind: "api", owner: { team: "core" } } }, t);
    await client.createSecret({ name: "bare", value: "x" }, t);
  });

  it("is JSON containment; {} matches all", async () => {
    const t = await svc.token("filter-dev");
    const names = async (filter: Record<string, unknown> | undefined) =>
      (await client.listSecrets({ metadataFilter: filter as never }, t)).secrets.map((s) => s.name);
    expect(await names({ env: "prod" })).toEqual(["api_prod", "db_prod"]);
    expect(await names({ env: "prod", kind: "db" })).toEqual(["db_prod"]);
    expect(await names({ tags: ["b"] })).toEqual(["db_prod"]);
    expect(await names({ owner: { team: "core" } })).toEqual(["api_prod"]);
    expect(await names({})).toEqual(["api_prod", "bare", "db_prod", "db_staging"]);
    expect(await names({ env: "nowhere" })).toEqual([]);
  });

  it("is backed by a GIN index", async () => {
    const { rows } = await svc.db.query<{ indexdef: string }>(
      "SELECT indexdef FROM pg_indexes WHERE tablename = 'secrets' AND indexname = 'secrets_metadata_gin'",
    );
    expect(rows[0]?.indexdef).toMatch(/USING gin \(metadata jsonb_path_ops\)/);
  });
});
