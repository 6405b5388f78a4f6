import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { expectCallError, masterKey, type ReplicaCluster, startReplicaCluster } from "../support/fixtures.js";

// Crypto-shredding, exactly as docs/design.md states it: a backup from before a shred
// still holds the developer's data keys wrapped under a master key; once that
// master key is rotated away and destroyed, the backup is unreadable.

describe.runIf(process.env["DATABASE_URL"])("crypto-shredding", () => {
  let cluster: ReplicaCluster;

  beforeAll(async () => {
    cluster = await startReplicaCluster();
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  it("rows restored from a pre-shred copy cannot be decrypted once the master key in force before is retired", async () => {
    const k1 = masterKey("k1");
    const k2 = masterKey("k2");
    const a = await cluster.start([k1, k2]);
    const victim = await cluster.token("victim", ["secrets:read", "secrets:write", "secrets:access"]);
    const bystander = await cluster.token("bystander", ["secrets:read", "secrets:write", "secrets:access"]);
    const operator = await cluster.token("ops", ["secrets:operator"]);
    await a.secrets.createSecret({ name: "api_key", value: "victim-api-key-value" }, victim);
    await a.secrets.updateSecret({ name: "api_key", value: "victim-api-key-value-2" }, victim);
    await a.secrets.createSecret({ name: "api_key", value: "bystander-value" }, bystander);

    // The "backup": copies of the victim's rows, data keys included.
    for (const table of ["secrets", "secret_versions", "data_keys"]) {
      await cluster.db.query(`CREATE TABLE backup_${table} AS SELECT * FROM ${table} WHERE developer_id = 'victim'`);
    }

    await a.keys.shredDeveloper({ developerId: "victim", confirmDeveloperId: "victim" }, operator);
    await a.keys.rotateMasterKey({ keyId: "k2" }, operator);
    for (let i = 0; i < 100 && (await a.keys.getKeyStatus({}, operator)).dataKeysToRewrap > 0n; i++) {
      await new Promise((r) => setTimeout(r, 100));
    }
    expect((await a.keys.getKeyStatus({}, operator)).dataKeysToRewrap).toBe(0n);
    expect(await a.stop()).toBe(0);

    // k1 is destroyed: a fresh process runs with the keyring then in force.
    const b = await cluster.start([k2]);
    expect((await b.secrets.accessSecret({ name: "api_key" }, bystander)).value).toBe("bystander-value");

    // Restore the backup into the live tables.
    await cluster.db.query("INSERT INTO data_keys SELECT * FROM backup_data_keys");
    await cluster.db.query("INSERT INTO secrets SELECT * FROM backup_secrets");
    await cluster.db.query("INSERT INTO secret_versions SELECT * FROM backup_secret_versions");

    for (const version of [0, 1, 2]) {
      const err = await expectCallError(() => b.secrets.accessSecret({ name: "api_key", version }, victim));
      expect([status.FAILED_PRECONDITION, status.INTERNAL]).toContain(err.code);
      expect(err.details).not.toContain("victim-api-key");
    }
    const resolve = await expectCallError(() => b.secrets.resolveSecrets({ names: ["api_key"] }, victim));
    expect(resolve.details).not.toContain("victim-api-key");
    // The restored data key is wrapped under the destroyed k1.
    const { rows } = await cluster.db.query<{ kek_id: string }>("SELECT kek_id FROM data_keys WHERE developer_id = 'victim'");
    expect(rows).toEqual([{ kek_id: "k1" }]);
    expect(await b.stop()).toBe(0);

    // And a fresh process with that keyring refuses to start over such data, saying why.
    const refused = await cluster.start([k2]).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(refused?.message).toMatch(/lacks master key "k1", which 1 data key\(s\) are wrapped under/);
  });
});
