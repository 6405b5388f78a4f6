import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CallError, expectCallError, startTestService, type TestClient, type TestService } from "../support/fixtures.js";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";

// Core I over real gRPC on 127.0.0.1:0: create, get, list, access, delete; two
// developers who cannot see each other; pagination; what the database holds.

let svc: TestService;
let client: TestClient<typeof SecretService>;
let alice: string;
let bob: string;
const written: string[] = [];

/** A value unlikely to appear by chance, remembered for the database scan. */
function newValue(label: string): string {
  const v = `sk_${label}_${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
  written.push(v);
  return v;
}

beforeAll(async () => {
  svc = await startTestService();
  client = svc.secrets;
  alice = await svc.token("alice");
  bob = await svc.token("bob");
});

afterAll(async () => {
  await svc?.stop();
});

describe("create, get, access, delete", () => {
  it("creates a secret at version 1 and returns its attributes without the value", async () => {
    const value = newValue("stripe");
    const { secret } = await client.createSecret(
      { name: "stripe_api_key", value, description: "Stripe live key", metadata: { team: "billing", tier: 1 } },
      alice,
    );
    expect(secret?.name).toBe("stripe_api_key");
    expect(secret?.version).toBe(1);
    expect(secret?.id).toMatch(/^[0-9a-f]{8}-[0-9a-f]{4}-4[0-9a-f]{3}-[89ab][0-9a-f]{3}-[0-9a-f]{12}$/);
    expect(secret?.description).toBe("Stripe live key");
    expect(secret?.metadata).toEqual({ team: "billing", tier: 1 });
    expect(secret?.createdBy).toBe("alice");
    expect(secret?.updatedBy).toBe("alice");
    expect(secret?.createdAt?.seconds).toBeGreaterThan(0n);
    expect(JSON.stringify(secret, (_k, v) => (typeof v === "bigint" ? v.toString() : v))).not.toContain(value);

    const got = await client.getSecret({ name: "stripe_api_key" }, alice);
    expect(got.secret?.id).toBe(secret?.id);
    expect(got.secret?.metadata).toEqual({ team: "billing", tier: 1 });

    const accessed = await client.accessSecret({ name: "stripe_api_key" }, alice);
    expect(accessed).toMatchObject({ name: "stripe_api_key", version: 1, value });
    const byVersion = await client.accessSecret({ name: "stripe_api_key", version: 1 }, alice);
    expect(byVersion.value).toBe(value);
  });

  it("round-trips multi-byte UTF-8 and a 64 KiB value exactly", async () => {
    const unicode = `pässwörd-🔑-${newValue("utf8")}`;
    await client.createSecret({ name: "unicode_value", value: unicode }, alice);
    expect((await client.accessSecret({ name: "unicode_value" }, alice)).value).toBe(unicode);

    const big = "x".repeat(64 * 1024);
    await client.createSecret({ name: "big_value", value: big }, alice);
    expect((await client.accessSecret({ name: "big_value" }, alice)).value).toBe(big);
  });

  it("refuses a taken name with ALREADY_EXISTS and changes nothing", async () => {
    const first = newValue("dup");
    await client.createSecret({ name: "dup_name", value: first }, alice);
    const err = await expectCallError(() => client.createSecret({ name: "dup_name", value: newValue("dup2") }, alice));
    expect(err.code).toBe(status.ALREADY_EXISTS);
    expect(err.reason).toBe("SECRET_EXISTS");
    expect((await client.accessSecret({ name: "dup_name" }, alice)).value).toBe(first);
  });

  it("names are case-sensitive", async () => {
    const lower = newValue("lower");
    const upper = newValue("upper");
    await client.createSecret({ name: "case_key", value: lower }, alice);
    await client.createSecret({ name: "CASE_KEY", value: upper }, alice);
    expect((await client.accessSecret({ name: "case_key" }, alice)).value).toBe(lower);
    expect((await client.accessSecret({ name: "CASE_KEY" }, alice)).value).toBe(upper);
  });

  it("a forced delete removes a secret and every version at once; the name can be created again as a new secret", async () => {
    // Without force the secret goes to the recovery bin first (test/e2e/recovery-bin.test.ts).
    const { secret } = await client.createSecret({ name: "short_lived", value: newValue("gone") }, alice);
    await client.deleteSecret({ name: "short_lived", force: true }, alice);
    for (const call of [
      () => client.getSecret({ name: "short_lived" }, alice),
      () => client.accessSecret({ name: "short_lived" }, alice),
      () => client.deleteSecret({ name: "short_lived" }, alice),
    ]) {
      const err = await expectCallError(call);
      expect(err.code).toBe(status.NOT_FOUND);
      expect(err.reason).toBe("SECRET_NOT_FOUND");
    }
    const { rows } = await svc.db.query<{ n: number }>("SELECT count(*) AS n FROM secret_versions WHERE secret_id = $1", [
      secret?.id,
    ]);
    expect(rows[0]?.n).toBe(0);

    const again = await client.createSecret({ name: "short_lived", value: newValue("again") }, alice);
    expect(again.secret?.id).not.toBe(secret?.id);
    expect(again.secret?.version).toBe(1);
  });

  it("a version that does not exist is NOT_FOUND", async () => {
    await client.createSecret({ name: "one_version", value: newValue("v1") }, alice);
    const err = await expectCallError(() => client.accessSecret({ name: "one_version", version: 7 }, alice));
    expect(err.code).toBe(status.NOT_FOUND);
    expect(err.reason).toBe("VERSION_NOT_FOUND");
  });
});

describe("two developers", () => {
  it("cannot see, read, list or delete each other's secrets", async () => {
    const aliceValue = newValue("alice_own");
    await client.createSecret({ name: "shared_name", value: aliceValue }, alice);
    const bobValue = newValue("bob_own");
    await client.createSecret({ name: "shared_name", value: bobValue }, bob);
    await client.createSecret({ name: "alice_only", value: newValue("alice_only") }, alice);

    expect((await client.accessSecret({ name: "shared_name" }, alice)).value).toBe(aliceValue);
    expect((await client.accessSecret({ name: "shared_name" }, bob)).value).toBe(bobValue);

    for (const call of [
      () => client.getSecret({ name: "alice_only" }, bob),
      () => client.accessSecret({ name: "alice_only" }, bob),
      () => client.deleteSecret({ name: "alice_only" }, bob),
    ]) {
      const err = await expectCallError(call);
      expect(err.code).toBe(status.NOT_FOUND);
      // Indistinguishable from a name that exists nowhere.
      const missing = await expectCallError(() => client.getSecret({ name: "exists_nowhere" }, bob));
      expect(err.details).toBe(missing.details);
      expect(err.reason).toBe(missing.reason);
    }
    const bobList = await client.listSecrets({ pageSize: 500 }, bob);
    expect(bobList.secrets.map((s) => s.name)).toEqual(["shared_name"]);
    expect((await client.getSecret({ name: "alice_only" }, alice)).secret?.name).toBe("alice_only");
  });

  it("each developer has their own data key", async () => {
    const { rows } = await svc.db.query<{ developer_id: string; kek_id: string }>(
      "SELECT developer_id, kek_id FROM data_keys WHERE developer_id IN ('alice', 'bob') ORDER BY developer_id",
    );
    expect(rows.map((r) => r.developer_id)).toEqual(["alice", "bob"]);
    expect(new Set(rows.map((r) => r.kek_id))).toEqual(new Set(["k1"]));
  });
});

describe("listing", () => {
  const dev = "lister";
  let token: string;
  const names = Array.from({ length: 23 }, (_, i) => `item_${String(i).padStart(2, "0")}`);

  beforeAll(async () => {
    token = await svc.token(dev);
    for (const name of names) await client.createSecret({ name, value: newValue(name), metadata: { n: Number(name.slice(5)) } }, token);
    await client.createSecret({ name: "itemX", value: newValue("itemX") }, token);
    await client.createSecret({ name: "Zeta", value: newValue("zeta") }, token);
    await client.createSecret({ name: "alpha", value: newValue("alpha") }, token);
  });

  it("pages through every secret in name (byte) order with opaque tokens", async () => {
    const seen: string[] = [];
    let pageToken = "";
    let pages = 0;
    do {
      const page = await client.listSecrets({ pageSize: 5, pageToken }, token);
      expect(page.secrets.length).toBeLessThanOrEqual(5);
      seen.push(...page.secrets.map((s) => s.name));
      pageToken = page.nextPageToken;
      pages += 1;
    } while (pageToken !== "");
    const all = [...names, "itemX", "Zeta", "alpha"].sort((a, b) => (a < b ? -1 : 1));
    expect(seen).toEqual(all);
    expect(seen[0]).toBe("Zeta"); // uppercase sorts before lowercase in byte order
    expect(pages).toBe(Math.ceil(all.length / 5));
  });

  it("page_size 0 means 50, is capped at 500, and negative is INVALID_ARGUMENT", async () => {
    expect((await client.listSecrets({ pageSize: 0 }, token)).secrets.length).toBe(26);
    expect((await client.listSecrets({ pageSize: 100000 }, token)).secrets.length).toBe(26);
    const err = await expectCallError(() => client.listSecrets({ pageSize: -1 }, token));
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    expect(err.reason).toBe("INVALID_PAGE_SIZE");
  });

  it("name_prefix matches literally: an underscore is not a wildcard", async () => {
    const page = await client.listSecrets({ namePrefix: "item_" }, token);
    expect(page.secrets.map((s) => s.name)).toEqual(names);
    const narrow = await client.listSecrets({ namePrefix: "item_1" }, token);
    expect(narrow.secrets.map((s) => s.name)).toEqual(names.filter((n) => n.startsWith("item_1")));
    expect((await client.listSecrets({ namePrefix: "nothing" }, token)).secrets).toEqual([]);
  });

  it("a page token used with other parameters, by another developer, or forged is INVALID_ARGUMENT", async () => {
    const first = await client.listSecrets({ pageSize: 3, namePrefix: "item_" }, token);
    expect(first.nextPageToken).not.toBe("");
    const attempts = [
      () => client.listSecrets({ pageSize: 3, namePrefix: "item_1", pageToken: first.nextPageToken }, token),
      () => client.listSecrets({ pageSize: 3, namePrefix: "item_", pageToken: first.nextPageToken }, alice),
      () => client.listSecrets({ pageSize: 3, namePrefix: "item_", pageToken: `${first.nextPageToken}x` }, token),
      () => client.listSecrets({ pageSize: 3, pageToken: "not-a-token" }, token),
      () =>
        client.listSecrets(
          { pageSize: 3, pageToken: Buffer.from(JSON.stringify({ a: "item_05", h: "forged" })).toString("base64url") },
          token,
        ),
    ];
    for (const attempt of attempts) {
      const err = await expectCallError(attempt);
      expect(err.code).toBe(status.INVALID_ARGUMENT);
      expect(err.reason).toBe("INVALID_PAGE_TOKEN");
    }
    // Page size may change between pages.
    const second = await client.listSecrets({ pageSize: 10, namePrefix: "item_", pageToken: first.nextPageToken }, token);
    expect(second.secrets[0]?.name).toBe("item_03");
  });
});

describe("what is stored", () => {
  it("the database holds none of the values written, in any common encoding", async () => {
    expect(written.length).toBeGreaterThan(20);
    const tables = ["secrets", "secret_versions", "data_keys", "master_key_state"];
    let dump = "";
    for (const table of tables) {
      const { rows } = await svc.db.query<{ row: string }>(`SELECT t::text AS row FROM ${table} t`);
      dump += rows.map((r) => r.row).join("\n");
    }
    expect(dump.length).toBeGreaterThan(1000);
    for (const value of written) {
      const bytes = Buffer.from(value, "utf8");
      for (const form of [value, bytes.toString("hex"), bytes.toString("base64"), bytes.toString("base64url")]) {
        expect(dump.includes(form), "a stored value was found in the database").toBe(false);
      }
    }
    // The master key is not stored either.
    expect(dump.includes(svc.masterKeys.slice(3))).toBe(false);
  });

  it("a flipped ciphertext byte gives INTERNAL (integrity failure), never a wrong value", async () => {
    const { secret } = await client.createSecret({ name: "tamper_me", value: newValue("tamper") }, alice);
    await svc.db.query(
      "UPDATE secret_versions SET ciphertext = set_byte(ciphertext, 20, get_byte(ciphertext, 20) # 1) WHERE secret_id = $1",
      [secret?.id],
    );
    const err = await expectCallError(() => client.accessSecret({ name: "tamper_me" }, alice));
    expect(err.code).toBe(status.INTERNAL);
    expect(err.reason).toBe("INTEGRITY_FAILURE");
    expect(err.details).toMatch(/^internal error \(request id [0-9a-f-]{36}\)$/);
    expect(svc.logs.text).toContain("integrity failure");
  });

  it("a ciphertext copied onto another secret's row fails to decrypt", async () => {
    const a = await client.createSecret({ name: "copy_source", value: newValue("src") }, alice);
    const b = await client.createSecret({ name: "copy_target", value: newValue("dst") }, alice);
    await svc.db.query(
      `UPDATE secret_versions SET ciphertext = (SELECT ciphertext FROM secret_versions WHERE secret_id = $1 AND version = 1)
       WHERE secret_id = $2`,
      [a.secret?.id, b.secret?.id],
    );
    const err = await expectCallError(() => client.accessSecret({ name: "copy_target" }, alice));
    expect(err.code).toBe(status.INTERNAL);
  });

  it("a secret row moved to another developer fails to decrypt for them", async () => {
    await client.createSecret({ name: "moved_secret", value: newValue("moved") }, alice);
    await client.createSecret({ name: "bob_anchor", value: newValue("anchor") }, bob);
    const move = "UPDATE secrets SET developer_id = 'bob' WHERE developer_id = 'alice' AND name = 'moved_secret'";
    // The schema refuses the move (the per-developer counts could not follow it)...
    await expect(svc.db.query(move)).rejects.toMatchObject({ code: "23514" });
    // ...but whoever can write to the database can also drop that guard: the AAD is what must hold.
    await svc.db.transaction(async (tx) => {
      await tx.query("ALTER TABLE secrets DISABLE TRIGGER secrets_developer_fixed");
      await tx.query(move);
      await tx.query("ALTER TABLE secrets ENABLE TRIGGER secrets_developer_fixed");
    });
    // The versions follow, past the foreign key to their data key (replica mode skips it).
    await svc.db.transaction(async (tx) => {
      await tx.query("SET LOCAL session_replication_role = replica");
      await tx.query(
        `UPDATE secret_versions SET developer_id = 'bob'
         WHERE secret_id = (SELECT id FROM secrets WHERE developer_id = 'bob' AND name = 'moved_secret')`,
      );
    });
    const err = await expectCallError(() => client.accessSecret({ name: "moved_secret" }, bob));
    expect(err).toBeInstanceOf(CallError);
    expect(err.code).toBe(status.INTERNAL);
  });
});
