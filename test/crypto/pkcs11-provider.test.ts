import { Buffer } from "node:buffer";
import { randomBytes } from "node:crypto";
import { afterEach, beforeAll, expect, it } from "vitest";
import pkcs11js from "pkcs11js";
import { AppError } from "../../src/api/errors.js";
import { parseWrappedKeyEnvelope } from "../../src/crypto/envelope.js";
import { KeyBytes } from "../../src/crypto/key-bytes.js";
import { combineKeyProviders, createLocalKeyProvider, type DataKeyContext, type KeyProvider } from "../../src/crypto/key-provider.js";
import { createPkcs11KeyProvider, Pkcs11SetupError, type Pkcs11ProviderOptions } from "../../src/crypto/pkcs11-provider.js";
import { createSoftHsmToken, describeWithSoftHsm, moduleHandle, slotOf, SOFTHSM_MODULE, type SoftHsmToken } from "../support/softhsm.js";
import { expectIntegrityFailureAsync } from "./expect-integrity-failure.js";

// The PKCS#11 provider against a real SoftHSM2 token: round trips, the known-answer vector of
// the local provider (the same envelope and AAD, sealed inside the token), keys that cannot be
// read out, the start-up refusals, and an outage of the token's sessions and the recovery after it.

/** The frozen vector of test/crypto/key-provider.test.ts: DEK under KEK "k1" for CONTEXT with NONCE. */
const KEK_HEX = "202122232425262728292a2b2c2d2e2f303132333435363738393a3b3c3d3e3f";
const DEK_HEX = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const NONCE_HEX = "b0b1b2b3b4b5b6b7b8b9babb";
const FROZEN_WRAPPED =
  "0202" + "6b31" + NONCE_HEX + "36fb28449626ce093a0417f10f3093398622b0889e5d8226f85db543c93a13c0" + "e971ff0aeb19fb4ec4e328f17f921a47";
const CONTEXT: DataKeyContext = { developerId: "dev_frozen", dekVersion: 7 };

describeWithSoftHsm("PKCS#11 key provider (SoftHSM2)", () => {
  const suffix = randomBytes(3).toString("hex");
  let token: SoftHsmToken;
  const providers: KeyProvider[] = [];
  const open = (overrides: Partial<Pkcs11ProviderOptions> = {}): KeyProvider => {
    const provider = createPkcs11KeyProvider({
      modulePath: SOFTHSM_MODULE,
      token: { label: token.label },
      pin: KeyBytes.from(Buffer.from(token.pin)),
      keys: new Map([
        ["h1", "mk-1"],
        ["h2", "mk-2"],
      ]),
      ...overrides,
    });
    providers.push(provider);
    return provider;
  };
  /** What the constructor throws, checked to be a one-line Pkcs11SetupError. */
  const setupError = (overrides: Partial<Pkcs11ProviderOptions>): string => {
    try {
      open(overrides);
    } catch (e) {
      expect(e).toBeInstanceOf(Pkcs11SetupError);
      const message = (e as Error).message;
      expect(message).not.toContain("\n");
      expect(message).not.toContain(token.pin);
      return message;
    }
    throw new Error("expected the provider to refuse to start");
  };

  beforeAll(async () => {
    token = createSoftHsmToken(`unit-${suffix}`);
    await token.createKey("mk-1");
    await token.createKey("mk-2");
    // The frozen vector's KEK, imported with a known value (sensitive, not extractable from now on).
    const lib = moduleHandle();
    const session = lib.C_OpenSession(slotOf(lib, token.label), pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    lib.C_Login(session, pkcs11js.CKU_USER, token.pin);
    const secretKey = (label: string, extractable: boolean) => [
      { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
      { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
      { type: pkcs11js.CKA_LABEL, value: label },
      { type: pkcs11js.CKA_TOKEN, value: true },
      { type: pkcs11js.CKA_PRIVATE, value: true },
      { type: pkcs11js.CKA_SENSITIVE, value: !extractable },
      { type: pkcs11js.CKA_EXTRACTABLE, value: extractable },
      { type: pkcs11js.CKA_ENCRYPT, value: true },
      { type: pkcs11js.CKA_DECRYPT, value: true },
    ];
    lib.C_CreateObject(session, [...secretKey("frozen", false), { type: pkcs11js.CKA_VALUE, value: Buffer.from(KEK_HEX, "hex") }]);
    lib.C_CreateObject(session, [...secretKey("readable", true), { type: pkcs11js.CKA_VALUE, value: randomBytes(32) }]);
    lib.C_CloseSession(session);
  });

  // Destroyed after each test: PKCS#11 login is per process, and a login left by one provider would
  // let the next one in whatever PIN it gives (CKR_USER_ALREADY_LOGGED_IN).
  afterEach(() => {
    for (const provider of providers.splice(0)) provider.destroy();
  });

  it("wraps and unwraps inside the token; the envelope names the master key; another binding or a flipped bit fails", async () => {
    const provider = open();
    expect(provider.keyIds()).toEqual(["h1", "h2"]);
    expect(provider.describe("h1")).toEqual({ provider: "pkcs11" });
    expect(provider.describe("k1")).toBeUndefined();
    const dek = KeyBytes.random();
    const wrapped = await provider.wrap("h2", dek, { developerId: "dev_a", dekVersion: 3 });
    expect(parseWrappedKeyEnvelope(wrapped).kekId).toBe("h2");
    expect(wrapped.includes(dek.exposeSecretBytes())).toBe(false);
    const back = await provider.unwrap("h2", wrapped, { developerId: "dev_a", dekVersion: 3 });
    expect(back.equals(dek)).toBe(true);

    await expectIntegrityFailureAsync(() => provider.unwrap("h2", wrapped, { developerId: "dev_b", dekVersion: 3 }));
    await expectIntegrityFailureAsync(() => provider.unwrap("h2", wrapped, { developerId: "dev_a", dekVersion: 4 }));
    await expectIntegrityFailureAsync(() => provider.unwrap("h1", wrapped, { developerId: "dev_a", dekVersion: 3 }));
    const flipped = Buffer.from(wrapped);
    flipped.writeUInt8(flipped.readUInt8(flipped.length - 20) ^ 0x01, flipped.length - 20);
    await expectIntegrityFailureAsync(() => provider.unwrap("h2", flipped, { developerId: "dev_a", dekVersion: 3 }));
    expect(await provider.health()).toEqual({ ok: true });
  });

  it("finds the token by slot id as well as by label", async () => {
    const lib = moduleHandle();
    const slotId = Number(slotOf(lib, token.label).readBigUInt64LE(0));
    const bySlot = open({ token: { slot: slotId } });
    const context = { developerId: "dev_slot", dekVersion: 1 };
    const dek = KeyBytes.random();
    expect((await bySlot.unwrap("h1", await open().wrap("h1", dek, context), context)).equals(dek)).toBe(true);
    expect(setupError({ token: { slot: slotId + 1 }, variables: { token: "SECRETS_PKCS11_SLOT" } })).toMatch(/^SECRETS_PKCS11_SLOT names no slot with a token/);
  });

  it("reproduces the local provider's frozen vector inside the token, both ways", async () => {
    const nonce = Buffer.from(NONCE_HEX, "hex");
    const provider = open({ keys: new Map([["k1", "frozen"]]), randomBytes: () => Buffer.from(nonce) });
    const dek = KeyBytes.from(Buffer.from(DEK_HEX, "hex"));
    expect((await provider.wrap("k1", dek, CONTEXT)).toString("hex")).toBe(FROZEN_WRAPPED);
    expect((await provider.unwrap("k1", Buffer.from(FROZEN_WRAPPED, "hex"), CONTEXT)).equals(dek)).toBe(true);
    const local = createLocalKeyProvider(new Map([["k1", KeyBytes.from(Buffer.from(KEK_HEX, "hex"))]]));
    const fresh = KeyBytes.random();
    const sealedLocally = await local.wrap("k1", fresh, CONTEXT);
    expect((await provider.unwrap("k1", sealedLocally, CONTEXT)).equals(fresh)).toBe(true);
    local.destroy();
  });

  it("holds master keys the token will not reveal: reading CKA_VALUE fails CKR_ATTRIBUTE_SENSITIVE", () => {
    const lib = moduleHandle();
    const session = lib.C_OpenSession(slotOf(lib, token.label), pkcs11js.CKF_SERIAL_SESSION);
    try {
      lib.C_Login(session, pkcs11js.CKU_USER, token.pin);
    } catch (e) {
      // The user is logged in already when a provider of this process holds a session.
      expect((e as { code?: number }).code).toBe(pkcs11js.CKR_USER_ALREADY_LOGGED_IN);
    }
    for (const label of ["mk-1", "mk-2"]) {
      lib.C_FindObjectsInit(session, [{ type: pkcs11js.CKA_LABEL, value: label }]);
      const [key] = lib.C_FindObjects(session, 1);
      lib.C_FindObjectsFinal(session);
      expect(key).toBeDefined();
      let code: number | undefined;
      try {
        lib.C_GetAttributeValue(session, key as Buffer, [{ type: pkcs11js.CKA_VALUE }]);
      } catch (e) {
        code = (e as { code?: number }).code;
      }
      expect(code).toBe(pkcs11js.CKR_ATTRIBUTE_SENSITIVE);
      const [extractable, neverExtractable] = lib.C_GetAttributeValue(session, key as Buffer, [
        { type: pkcs11js.CKA_EXTRACTABLE },
        { type: pkcs11js.CKA_NEVER_EXTRACTABLE },
      ]);
      expect(extractable?.value).toEqual(Buffer.from([0]));
      expect(neverExtractable?.value).toEqual(Buffer.from([1]));
    }
    lib.C_CloseSession(session);
  });

  it("refuses to start with one line naming the variable: module, token, PIN, label, a readable key", () => {
    expect(setupError({ modulePath: "/nonexistent/libpkcs11.so" })).toMatch(/^SECRETS_PKCS11_MODULE cannot be loaded/);
    expect(setupError({ token: { label: "no-such-token" } })).toMatch(/^SECRETS_PKCS11_TOKEN_LABEL names no token/);
    expect(setupError({ pin: KeyBytes.from(Buffer.from("not-the-pin")) })).toMatch(/^SECRETS_PKCS11_PIN is not the token's user PIN/);
    expect(setupError({ pin: KeyBytes.from(Buffer.from("not-the-pin")), variables: { pin: "SECRETS_PKCS11_PIN_FILE" } })).toMatch(
      /^SECRETS_PKCS11_PIN_FILE is not/,
    );
    expect(setupError({ keys: new Map([["h9", "missing-label"]]) })).toBe(
      'SECRETS_PKCS11_KEYS: master key "h9" (label "missing-label") is not in the token: create it with `secrets keys hsm-init --label …` or fix the label',
    );
    expect(setupError({ keys: new Map([["h1", "readable"]]) })).toMatch(/can be read out of the token/);
  });

  it("sessions closed under it: calls fail UNAVAILABLE with a reason, then it reconnects by itself", async () => {
    const outages: string[] = [];
    const provider = open({ sessions: 2, backoffMs: 200, onOutage: (event) => outages.push(event) });
    const context = { developerId: "dev_outage", dekVersion: 1 };
    const dek = KeyBytes.random();
    const wrapped = await provider.wrap("h1", dek, context);
    // Many at once through two sessions.
    const many = await Promise.all(Array.from({ length: 24 }, () => provider.unwrap("h1", wrapped, context)));
    expect(many.every((k) => k.equals(dek))).toBe(true);

    const lib = moduleHandle();
    lib.C_CloseAllSessions(slotOf(lib, token.label));
    const failure = await provider.unwrap("h1", wrapped, context).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(failure).toBeInstanceOf(AppError);
    expect((failure as AppError).reason).toBe("BACKEND_UNAVAILABLE");
    expect((failure as AppError).kind).toBe("unavailable");
    expect((failure as AppError).message).toBe("the master key provider (HSM) is unavailable; retry shortly");
    expect(await provider.health()).toEqual({ ok: false, reason: "CKR_SESSION_HANDLE_INVALID" });
    expect(outages).toEqual(["down"]);

    const deadline = Date.now() + 5_000;
    let recovered: KeyBytes | undefined;
    while (recovered === undefined && Date.now() < deadline) {
      await new Promise((r) => setTimeout(r, 50));
      recovered = await provider.unwrap("h1", wrapped, context).catch(() => undefined);
    }
    expect(recovered?.equals(dek)).toBe(true);
    expect(outages).toEqual(["down", "up"]);
    expect(await provider.health()).toEqual({ ok: true });
  });

  it("combines with the local keyring: each id goes to the provider holding it; one id in both is refused", async () => {
    const hsm = open();
    const local = createLocalKeyProvider(new Map([["k1", KeyBytes.random()]]));
    const both = combineKeyProviders([local, hsm]);
    expect(both.keyIds()).toEqual(["k1", "h1", "h2"]);
    expect(["k1", "h1", "x"].map((id) => both.describe(id)?.provider)).toEqual(["env", "pkcs11", undefined]);
    const dek = KeyBytes.random();
    const context = { developerId: "dev_c", dekVersion: 1 };
    const underEnv = await both.wrap("k1", dek, context);
    const underHsm = await both.wrap("h1", await both.unwrap("k1", underEnv, context), context);
    expect((await hsm.unwrap("h1", underHsm, context)).equals(dek)).toBe(true);
    const clash = createLocalKeyProvider(new Map([["h1", KeyBytes.random()]]));
    expect(() => combineKeyProviders([clash, hsm])).toThrow('master key id "h1" is configured by two key providers');
    clash.destroy();
  });
});
