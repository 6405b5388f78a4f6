import { randomBytes } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, expect, it } from "vitest";
import { ConfigError } from "../../src/app/config.js";
import type { Scope } from "../../src/auth/principal.js";
import { expectCallError, masterKey } from "../support/fixtures.js";
import { createSoftHsmToken, describeWithSoftHsm, moduleHandle, slotOf, type SoftHsmToken } from "../support/softhsm.js";
import { createTestDb, type TestDb } from "../support/test-db.js";
import { startTestService, type TestService } from "../support/test-service.js";

// Master keys in an HSM (SoftHSM2) behind a running service: rotation from a key in the
// environment to a key in the token under read load, then between two token keys; restarts with
// only the token's keys; the token's sessions closed mid-run; the start-up refusals.

const OPERATOR: Scope[] = ["secrets:operator"];
const DEVELOPERS = 12;
const valueOf = (d: number, s: string) => `hsm-value-${d}-${s}`;

describeWithSoftHsm("master keys in an HSM (SoftHSM2)", () => {
  const suffix = randomBytes(3).toString("hex");
  const env1 = masterKey("k1");
  let token: SoftHsmToken;
  let refusals: SoftHsmToken;
  let t: TestDb;
  const jwtSecret = randomBytes(32).toString("base64url");
  const running: TestService[] = [];

  /** A service on the shared database: `keyring` for SECRETS_MASTER_KEYS ("" for none), `hsmKeys` id → label. */
  async function start(keyring: string, hsmKeys: Record<string, string>, env: Record<string, string> = {}): Promise<TestService> {
    const service = await startTestService(
      { SECRETS_MASTER_KEYS: keyring, ...token.env(hsmKeys), SECRETS_KEY_JOB_BATCH: "2", SECRETS_KEY_JOB_PAUSE_MS: "50", ...env },
      { database: { db: t.db, url: t.url ?? "" }, masterKeys: keyring, jwtSecret, logLevel: "info" },
    );
    running.push(service);
    return service;
  }
  async function stop(service: TestService): Promise<void> {
    running.splice(running.indexOf(service), 1);
    await service.stop();
  }
  const tokenOf = (service: TestService, d: number) => service.token(`hsm-dev${d}`);

  async function readAll(service: TestService, developers: number[]): Promise<void> {
    for (const d of developers) {
      const r = await service.secrets.resolveSecrets({ names: ["alpha", "beta"] }, await tokenOf(service, d));
      expect(r.values).toEqual({ alpha: valueOf(d, "alpha"), beta: valueOf(d, "beta") });
    }
  }
  async function waitForRewrap(service: TestService, operator: string): Promise<void> {
    const deadline = Date.now() + 60_000;
    for (;;) {
      const s = await service.keys.getKeyStatus({}, operator);
      if (s.dataKeysToRewrap === 0n) return;
      if (Date.now() > deadline) throw new Error(`rewrap not finished: ${s.dataKeysToRewrap} left`);
      await new Promise((r) => setTimeout(r, 100));
    }
  }

  beforeAll(async () => {
    token = createSoftHsmToken(`e2e-${suffix}`);
    refusals = createSoftHsmToken(`refuse-${suffix}`);
    await token.createKey("mk-a");
    await token.createKey("mk-b");
    await refusals.createKey("mk-r");
    t = await createTestDb();
  });

  afterAll(async () => {
    for (const service of running.splice(0)) await service.stop();
    await t?.cleanup();
  });

  it("refuses to start with one line naming the fix: wrong PIN, missing label, unloadable module", async () => {
    const refusal = async (env: Record<string, string>): Promise<string> => {
      const error = await startTestService({ ...refusals.env({ r1: "mk-r" }), ...env }, { database: { db: t.db, url: t.url ?? "" }, jwtSecret }).then(
        () => {
          throw new Error("expected start-up to be refused");
        },
        (e: unknown) => e,
      );
      expect(error).toBeInstanceOf(ConfigError);
      const message = (error as Error).message;
      expect(message.split("\n")).toHaveLength(1);
      expect(message).not.toContain(refusals.pin);
      return message;
    };
    expect(await refusal({ SECRETS_PKCS11_PIN: "wrong-pin" })).toBe("SECRETS_PKCS11_PIN is not the token's user PIN (CKR_PIN_INCORRECT): set the right PIN");
    expect(await refusal({ SECRETS_PKCS11_KEYS: "r1:mk-missing" })).toMatch(/^SECRETS_PKCS11_KEYS: master key "r1" \(label "mk-missing"\) is not in the token/);
    expect(await refusal({ SECRETS_PKCS11_MODULE: "/nonexistent/libpkcs11.so" })).toMatch(/^SECRETS_PKCS11_MODULE cannot be loaded as a PKCS#11 module/);
    expect(await refusal({ SECRETS_PKCS11_TOKEN_LABEL: "no-such-token" })).toMatch(/^SECRETS_PKCS11_TOKEN_LABEL names no token/);
  });

  it("rotates from an environment key to an HSM key under read load with zero failed reads; restarts with only HSM keys", async () => {
    const a = await start(env1, { h1: "mk-a", h2: "mk-b" });
    const operator = await a.token("hsm-ops", { scopes: OPERATOR });
    for (let d = 0; d < DEVELOPERS; d++) {
      const developer = await tokenOf(a, d);
      await a.secrets.createSecret({ name: "alpha", value: valueOf(d, "alpha") }, developer);
      await a.secrets.createSecret({ name: "beta", value: valueOf(d, "beta") }, developer);
    }
    const before = await a.keys.getKeyStatus({}, operator);
    expect(before.activeMasterKeyId).toBe("k1");
    expect(before.masterKeys.map((k) => [k.keyId, k.provider])).toEqual([
      ["k1", "env"],
      ["h1", "pkcs11"],
      ["h2", "pkcs11"],
    ]);

    let stopReading = false;
    let reads = 0;
    const failures: string[] = [];
    const readers = Array.from({ length: 4 }, async (_, w) => {
      for (let n = 0; !stopReading; n++) {
        const d = (w * 5 + n) % DEVELOPERS;
        const name = n % 2 ? "alpha" : "beta";
        try {
          const r = await a.secrets.accessSecret({ name }, await tokenOf(a, d));
          if (r.value !== valueOf(d, name)) failures.push(`wrong value for developer ${d}`);
          reads += 1;
        } catch (e) {
          failures.push(String(e));
        }
      }
    });
    const readsPast = async (n: number) => {
      while (reads < n && failures.length === 0) await new Promise((r) => setTimeout(r, 10));
    };
    await readsPast(20);
    const readsBefore = reads;
    const rotated = await a.keys.rotateMasterKey({ keyId: "h1" }, operator);
    expect(rotated).toMatchObject({ activeKeyId: "h1", previousKeyId: "k1" });
    expect(rotated.dataKeysToRewrap).toBeGreaterThan(0n);
    await waitForRewrap(a, operator);
    await readsPast(reads + 20); // and on, with every data key under h1
    stopReading = true;
    await Promise.all(readers);
    expect(failures).toEqual([]);
    expect(reads - readsBefore).toBeGreaterThanOrEqual(20);
    const { rows } = await t.db.query<{ kek_id: string }>("SELECT DISTINCT kek_id FROM data_keys WHERE developer_id LIKE 'hsm-dev%'");
    expect(rows).toEqual([{ kek_id: "h1" }]);
    await stop(a);

    // Only the token's keys configured: everything decrypts, and the next rotation moves h1 → h2.
    const b = await start("", { h1: "mk-a", h2: "mk-b" });
    const providers = (await b.keys.getKeyStatus({}, operator)).masterKeys.filter((k) => k.provider === "pkcs11").map((k) => k.keyId);
    expect(providers).toEqual(["h1", "h2"]);
    await readAll(
      b,
      Array.from({ length: DEVELOPERS }, (_, d) => d),
    );
    expect(await b.keys.rotateMasterKey({ keyId: "h2" }, operator)).toMatchObject({ activeKeyId: "h2", previousKeyId: "h1" });
    await waitForRewrap(b, operator);
    await stop(b);

    const c = await start("", { h2: "mk-b" });
    await readAll(
      c,
      Array.from({ length: DEVELOPERS }, (_, d) => d),
    );
    await stop(c);
  });

  it("the token's sessions closed mid-run: cache hits keep serving, a miss fails UNAVAILABLE with a reason, then it recovers by itself", async () => {
    // A replica that has not read developer 1 yet, so developer 1's data key is a miss for it.
    const d = await start("", { h1: "mk-a", h2: "mk-b" }, { SECRETS_METRICS_ADDR: "127.0.0.1:0" });
    await readAll(d, [0]);

    const lib = moduleHandle();
    lib.C_CloseAllSessions(slotOf(lib, token.label));

    const miss = await expectCallError(async () => d.secrets.accessSecret({ name: "alpha" }, await tokenOf(d, 1)));
    expect(miss.code).toBe(status.UNAVAILABLE);
    expect(miss.reason).toBe("BACKEND_UNAVAILABLE");
    expect(miss.details).toBe("the master key provider (HSM) is unavailable; retry shortly");
    expect(miss.errorInfo?.metadata["backend"]).toBe("key_provider");
    for (let n = 0; n < 20; n++) await readAll(d, [0]); // hits: the data key is in memory

    const deadline = Date.now() + 10_000;
    for (;;) {
      try {
        await readAll(d, [1]);
        break;
      } catch (e) {
        if (Date.now() > deadline) throw e;
        await new Promise((r) => setTimeout(r, 100));
      }
    }
    await readAll(d, [0, 2, 3]);
    const log = d.logs.text;
    expect(log).toContain("HSM unusable");
    expect(log).toContain("HSM usable again");
    expect(log).not.toContain(token.pin);
    const scraped = await (await fetch(`http://127.0.0.1:${d.service.metricsPort}/metrics`)).text();
    expect(scraped).toMatch(/^secrets_key_provider_up 1$/m);
    await stop(d);
  });
});
