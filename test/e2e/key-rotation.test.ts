import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { Scope } from "../../src/auth/principal.js";
import { expectCallError, masterKey, type Replica, type ReplicaCluster, startReplicaCluster } from "../support/fixtures.js";

// Master key rotation while serving, across processes sharing one Postgres: the
// activation check against live replicas, the background rewrap under read load,
// removing the old key and restarting, and a replica killed mid-rotation.

const OPERATOR: Scope[] = ["secrets:operator"];
const USER: Scope[] = ["secrets:read", "secrets:write", "secrets:access"];
const DEVELOPERS = 40;
/**
 * Data keys stored: one per developer. These replicas run without a value cache,
 * so none of them makes the cache entry key (src/keys/cache-entry-key.ts).
 */
const DATA_KEYS = DEVELOPERS;

describe.runIf(process.env["DATABASE_URL"])("master key rotation", () => {
  let cluster: ReplicaCluster;
  const k1 = masterKey("k1");
  const k2 = masterKey("k2");
  const k3 = masterKey("k3");
  const tokens = new Map<string, string>();
  const valueOf = (d: number, s: number) => `rot-value-${d}-${s}`;

  beforeAll(async () => {
    cluster = await startReplicaCluster();
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  async function waitForRewrap(replica: Replica, operator: string, timeoutMs = 60_000): Promise<void> {
    const deadline = Date.now() + timeoutMs;
    for (;;) {
      const s = await replica.keys.getKeyStatus({}, operator);
      if (s.dataKeysToRewrap === 0n) return;
      if (Date.now() > deadline) throw new Error(`rewrap not finished: ${s.dataKeysToRewrap} left`);
      await new Promise((r) => setTimeout(r, 200));
    }
  }

  async function readAll(replica: Replica): Promise<void> {
    for (let d = 0; d < DEVELOPERS; d++) {
      const r = await replica.secrets.resolveSecrets({ names: ["alpha", "beta"] }, tokens.get(`dev${d}`));
      expect(r.values).toEqual({ alpha: valueOf(d, 0), beta: valueOf(d, 1) });
    }
  }

  it("refuses a key a live replica lacks, naming it; rotates under read load with zero failed reads; restarts without the old key", async () => {
    const a = await cluster.start([k1, k2], { SECRETS_KEY_JOB_BATCH: "5", SECRETS_KEY_JOB_PAUSE_MS: "50" });
    const operator = await cluster.token("ops", OPERATOR);
    for (let d = 0; d < DEVELOPERS; d++) {
      const t = await cluster.token(`dev${d}`, USER);
      tokens.set(`dev${d}`, t);
      await a.secrets.createSecret({ name: "alpha", value: valueOf(d, 0) }, t);
      await a.secrets.createSecret({ name: "beta", value: valueOf(d, 1) }, t);
    }
    expect((await a.keys.getKeyStatus({}, operator)).activeMasterKeyId).toBe("k1");

    // A second live replica without k2: activation must wait for it.
    const b = await cluster.start([k1]);
    const refused = await expectCallError(() => a.keys.rotateMasterKey({ keyId: "k2" }, operator));
    expect(refused.code).toBe(status.FAILED_PRECONDITION);
    expect(refused.reason).toBe("KEY_STATE");
    expect(refused.errorInfo?.metadata["replicas"]).toBe(b.replicaId);
    expect(refused.details).toContain(b.replicaId);
    expect(await b.stop()).toBe(0); // deregisters on a clean stop

    // Only an operator may rotate.
    const user = tokens.get("dev0") as string;
    expect((await expectCallError(() => a.keys.rotateMasterKey({ keyId: "k2" }, user))).code).toBe(status.PERMISSION_DENIED);

    // Rotate while readers hammer the service.
    let stop = false;
    let reads = 0;
    const failures: string[] = [];
    const readers = Array.from({ length: 6 }, async (_, w) => {
      for (let n = 0; !stop && n < 100_000; n++) {
        const d = (w * 7 + n) % DEVELOPERS;
        try {
          const r = await a.secrets.accessSecret({ name: n % 2 ? "alpha" : "beta" }, tokens.get(`dev${d}`));
          if (r.value !== valueOf(d, n % 2 ? 0 : 1)) failures.push("wrong value");
          reads += 1;
        } catch (e) {
          failures.push(String(e));
        }
      }
    });
    const rotated = await a.keys.rotateMasterKey({ keyId: "k2" }, operator);
    expect(rotated).toMatchObject({ activeKeyId: "k2", previousKeyId: "k1" });
    expect(rotated.dataKeysToRewrap).toBeGreaterThan(0n);
    await waitForRewrap(a, operator);
    stop = true;
    await Promise.all(readers);
    expect(failures).toEqual([]);
    expect(reads).toBeGreaterThan(100);

    const { rows } = await cluster.db.query<{ kek_id: string; n: number }>("SELECT kek_id, count(*) AS n FROM data_keys GROUP BY kek_id");
    expect(rows).toEqual([{ kek_id: "k2", n: DATA_KEYS }]);
    expect((await a.keys.getKeyStatus({}, operator)).dataKeysPerMasterKey).toEqual({ k2: BigInt(DATA_KEYS) });
    expect(await a.stop()).toBe(0);

    // The old key removed from configuration: the service restarts and everything decrypts.
    const c = await cluster.start([k2]);
    await readAll(c);
    expect(await c.stop()).toBe(0);
  });

  it("refuses to start with a keyring that lacks a referenced master key, saying how many data keys need it", async () => {
    const bad = await cluster.start([k3]).then(
      () => undefined,
      (e: unknown) => e as Error,
    );
    expect(bad?.message).toMatch(new RegExp(`lacks master key "k2", which ${DATA_KEYS} data key\\(s\\) are wrapped under`));
  });

  it("a replica killed (SIGKILL) mid-rotation is restarted and finishes it; every secret still decrypts", async () => {
    const slow = { SECRETS_KEY_JOB_BATCH: "2", SECRETS_KEY_JOB_PAUSE_MS: "250" };
    const a = await cluster.start([k2, k3], slow);
    const operator = await cluster.token("ops", OPERATOR);
    await a.keys.rotateMasterKey({ keyId: "k3" }, operator);
    // Wait until the rewrap is under way with at least two batches (≥ 500 ms) to go, then kill.
    const deadline = Date.now() + 30_000;
    for (;;) {
      const left = (await a.keys.getKeyStatus({}, operator)).dataKeysToRewrap;
      if (left >= 4n && left <= BigInt(DATA_KEYS - 4)) break;
      if (Date.now() > deadline) throw new Error(`rewrap never seen half-way (left: ${left})`);
      await new Promise((r) => setTimeout(r, 20));
    }
    expect(await a.stop("SIGKILL")).toBe("SIGKILL");
    const { rows } = await cluster.db.query<{ n: number }>("SELECT count(*) AS n FROM data_keys WHERE kek_id = 'k2'");
    expect(rows[0]?.n).toBeGreaterThan(0); // interrupted half-way
    expect(rows[0]?.n).toBeLessThan(DATA_KEYS);

    const b = await cluster.start([k2, k3]);
    await waitForRewrap(b, operator);
    const after = await cluster.db.query<{ kek_id: string; n: number }>("SELECT kek_id, count(*) AS n FROM data_keys GROUP BY kek_id");
    expect(after.rows).toEqual([{ kek_id: "k3", n: DATA_KEYS }]);
    await readAll(b);
    expect(await b.stop()).toBe(0);
    const c = await cluster.start([k3]);
    await readAll(c);
    expect(await c.stop()).toBe(0);
  });

  it("every replica's GetKeyStatus is true once RotateMasterKey returns; each key is rewrapped once, never back", async () => {
    // Small batches with pauses, so both replicas' background jobs rewrap at once.
    const slow = { SECRETS_KEY_JOB_BATCH: "2", SECRETS_KEY_JOB_PAUSE_MS: "30" };
    // The replica killed above would count as live (and lacking k1) for 30 s more.
    await cluster.db.query("DELETE FROM replicas");
    const a = await cluster.start([k3, k1], slow);
    const b = await cluster.start([k3, k1], slow);
    const operator = await cluster.token("ops", OPERATOR);
    expect((await b.keys.getKeyStatus({}, operator)).activeMasterKeyId).toBe("k3");

    await a.keys.rotateMasterKey({ keyId: "k1" }, operator);
    // b has not had a heartbeat since (every 5 s): it answers from the database all the same.
    const status = await b.keys.getKeyStatus({}, operator);
    expect(status.activeMasterKeyId).toBe("k1");
    const { rows: left } = await cluster.db.query<{ n: number }>("SELECT count(*) AS n FROM data_keys WHERE kek_id <> 'k1'");
    expect(status.dataKeysToRewrap).toBeGreaterThanOrEqual(BigInt(left[0]?.n ?? 0));
    expect(status.dataKeysToRewrap).toBeGreaterThan(0n);

    await waitForRewrap(b, operator);
    // Past b's next heartbeat: nothing moves back under k3.
    await new Promise((r) => setTimeout(r, 6_000));
    const after = await cluster.db.query<{ kek_id: string; n: number }>("SELECT kek_id, count(*) AS n FROM data_keys GROUP BY kek_id");
    expect(after.rows).toEqual([{ kek_id: "k1", n: DATA_KEYS }]);

    // The rewraps the two replicas logged add up to one per data key.
    const rewraps = (replica: Replica) =>
      replica.process
        .stdout()
        .split("\n")
        .filter((line) => line.includes('"msg":"key job pass"'))
        .reduce((sum, line) => sum + (JSON.parse(line) as { rewrapped: number }).rewrapped, 0);
    expect(await a.stop()).toBe(0);
    expect(await b.stop()).toBe(0);
    expect(rewraps(a) + rewraps(b)).toBe(DATA_KEYS);
    await readAll(await cluster.start([k1]));
  });
});
