import { generateKeyPairSync, randomBytes } from "node:crypto";
import { SignJWT, UnsecuredJWT } from "jose";
import { describe, expect, it } from "vitest";
import { mintHs256Token } from "../../src/auth/token-issuer.js";
import { createTokenVerifier } from "../../src/auth/token-verifier.js";
import { AppError } from "../../src/api/errors.js";

const secret = randomBytes(32);
const verifier = createTokenVerifier({ key: { kind: "hmac", secret }, maxTtlSeconds: 86_400 });
const now = () => Math.floor(Date.now() / 1000);

async function rejects(token: string, reason: string, v = verifier): Promise<AppError> {
  const err = await v.verify(token).then(
    () => undefined,
    (e: unknown) => e,
  );
  expect(err).toBeInstanceOf(AppError);
  expect((err as AppError).reason).toBe(reason);
  expect((err as AppError).kind).toBe("unauthenticated");
  if (token.length > 0) expect((err as AppError).message).not.toContain(token);
  return err as AppError;
}

function sign(claims: Record<string, unknown>, key: Uint8Array = secret, header = { alg: "HS256" }) {
  return new SignJWT(claims).setProtectedHeader(header).sign(key);
}

describe("token verification", () => {
  it("accepts a good token: developer = sub, scopes and allowlist from the claims", async () => {
    const token = await mintHs256Token(secret, { subject: "dev-1@acme", scopes: ["secrets:read", "secrets:access"], ttlSeconds: 60, allowlist: ["a", "b"] });
    const p = await verifier.verify(token);
    expect(p.developerId).toBe("dev-1@acme");
    expect([...p.scopes].sort()).toEqual(["secrets:access", "secrets:read"]);
    expect(p.allowlist).toEqual(new Set(["a", "b"]));
    expect(p.tokenId).toMatch(/[0-9a-f-]{36}/);
  });

  it("ignores unknown scopes and treats a missing allowlist as unrestricted, [] as none", async () => {
    const p = await verifier.verify(await sign({ sub: "x", iat: now(), exp: now() + 60, scope: "secrets:read admin root" }));
    expect([...p.scopes]).toEqual(["secrets:read"]);
    expect(p.allowlist).toBeNull();
    const none = await verifier.verify(await sign({ sub: "x", iat: now(), exp: now() + 60, secrets: [] }));
    expect(none.allowlist).toEqual(new Set());
  });

  it("rejects a forged signature", async () => {
    await rejects(await sign({ sub: "x", iat: now(), exp: now() + 60 }, randomBytes(32)), "TOKEN_INVALID");
  });

  it("rejects alg none", async () => {
    const unsigned = new UnsecuredJWT({ sub: "x", scope: "secrets:read" }).setIssuedAt().setExpirationTime("1h").encode();
    await rejects(unsigned, "TOKEN_INVALID");
  });

  it("rejects a token whose header picks another algorithm (HS512 with the same secret)", async () => {
    await rejects(await sign({ sub: "x", iat: now(), exp: now() + 60 }, secret, { alg: "HS512" }), "TOKEN_INVALID");
  });

  it("rejects an RS256 token when an HMAC secret is configured (no key confusion)", async () => {
    const { privateKey } = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const token = await new SignJWT({ sub: "x", iat: now(), exp: now() + 60 }).setProtectedHeader({ alg: "RS256" }).sign(privateKey);
    await rejects(token, "TOKEN_INVALID");
  });

  it("rejects expired tokens beyond the 30 s skew, and accepts within it", async () => {
    await rejects(await sign({ sub: "x", iat: now() - 120, exp: now() - 31 }), "TOKEN_EXPIRED");
    await expect(verifier.verify(await sign({ sub: "x", iat: now() - 120, exp: now() - 20 }))).resolves.toBeTruthy();
  });

  it("requires exp, iat and sub", async () => {
    await rejects(await sign({ sub: "x", iat: now() }), "TOKEN_INVALID");
    await rejects(await sign({ sub: "x", exp: now() + 60 }), "TOKEN_INVALID");
    await rejects(await sign({ iat: now(), exp: now() + 60 }), "TOKEN_INVALID");
  });

  it("rejects a lifetime over the maximum and an iat in the future", async () => {
    await rejects(await sign({ sub: "x", iat: now(), exp: now() + 86_401 }), "TOKEN_INVALID");
    await rejects(await sign({ sub: "x", iat: now() + 300, exp: now() + 600 }), "TOKEN_INVALID");
  });

  it("rejects a malformed sub", async () => {
    for (const sub of ["", "has space", "a/b", "x".repeat(129), "ünï"]) {
      await rejects(await sign({ sub, iat: now(), exp: now() + 60 }), "TOKEN_INVALID");
    }
  });

  it("rejects a correctly signed sub that is not a string, or not a subject, naming the claim", async () => {
    // RegExp.test coerces: ["alice"] and 12345 would read as "alice" and "12345" if the type went unchecked.
    for (const sub of [["alice"], 12345, { id: "alice" }, "", "alice/../bob", true, null]) {
      const err = await rejects(await sign({ sub, iat: now(), exp: now() + 60, scope: "secrets:read" }), "TOKEN_INVALID");
      expect(err.metadata["claim"]).toBe("sub");
    }
  });

  it("rejects a jti that is not a string, and keeps one that is", async () => {
    for (const jti of [["id-1"], 42, { id: "id-1" }]) {
      const err = await rejects(await sign({ sub: "x", iat: now(), exp: now() + 60, jti }), "TOKEN_INVALID");
      expect(err.metadata["claim"]).toBe("jti");
    }
    expect((await verifier.verify(await sign({ sub: "x", iat: now(), exp: now() + 60, jti: "id-1" }))).tokenId).toBe("id-1");
    expect((await verifier.verify(await sign({ sub: "x", iat: now(), exp: now() + 60 }))).tokenId).toBeUndefined();
  });

  it("rejects exp and iat that are not numbers, and scope and secrets of the wrong type, naming the claim", async () => {
    const cases: [Record<string, unknown>, string][] = [
      [{ sub: "x", iat: now(), exp: String(now() + 60) }, "exp"],
      [{ sub: "x", iat: String(now()), exp: now() + 60 }, "iat"],
      [{ sub: "x", iat: [now()], exp: now() + 60 }, "iat"],
      [{ sub: "x", iat: now(), exp: now() + 60, scope: ["secrets:read"] }, "scope"],
      [{ sub: "x", iat: now(), exp: now() + 60, secrets: "api_key" }, "secrets"],
    ];
    for (const [claims, claim] of cases) {
      const err = await rejects(await sign(claims), "TOKEN_INVALID");
      expect(err.metadata["claim"]).toBe(claim);
    }
  });

  it("rejects garbage", async () => {
    for (const t of ["", "abc", "a.b.c", "eyJhbGciOiJIUzI1NiJ9..."]) await rejects(t, "TOKEN_INVALID");
  });

  it("checks aud and iss when configured", async () => {
    const strict = createTokenVerifier({ key: { kind: "hmac", secret }, maxTtlSeconds: 3600, audience: "secrets", issuer: "https://idp" });
    const base = { sub: "x", iat: now(), exp: now() + 60 };
    await expect(strict.verify(await sign({ ...base, aud: "secrets", iss: "https://idp" }))).resolves.toBeTruthy();
    await rejects(await sign({ ...base, aud: "other", iss: "https://idp" }), "TOKEN_INVALID", strict);
    await rejects(await sign({ ...base, aud: "secrets", iss: "https://evil" }), "TOKEN_INVALID", strict);
    await rejects(await sign(base), "TOKEN_INVALID", strict);
  });

  it("verifies RS256 and ES256 with a configured public key, fixed by the key type", async () => {
    const rsa = generateKeyPairSync("rsa", { modulusLength: 2048 });
    const rsVerifier = createTokenVerifier({ key: { kind: "public", pem: rsa.publicKey.export({ type: "spki", format: "pem" }) as string }, maxTtlSeconds: 3600 });
    const claims = { sub: "x", iat: now(), exp: now() + 60 };
    const rs = await new SignJWT(claims).setProtectedHeader({ alg: "RS256" }).sign(rsa.privateKey);
    expect((await rsVerifier.verify(rs)).developerId).toBe("x");
    const ps = await new SignJWT(claims).setProtectedHeader({ alg: "PS256" }).sign(rsa.privateKey);
    await rejects(ps, "TOKEN_INVALID", rsVerifier);

    const ec = generateKeyPairSync("ec", { namedCurve: "P-256" });
    const esVerifier = createTokenVerifier({ key: { kind: "public", pem: ec.publicKey.export({ type: "spki", format: "pem" }) as string }, maxTtlSeconds: 3600 });
    const es = await new SignJWT(claims).setProtectedHeader({ alg: "ES256" }).sign(ec.privateKey);
    expect((await esVerifier.verify(es)).developerId).toBe("x");
    await rejects(rs, "TOKEN_INVALID", esVerifier);
  });

  it("refuses weak verification keys at configuration time", () => {
    expect(() => createTokenVerifier({ key: { kind: "hmac", secret: randomBytes(31) }, maxTtlSeconds: 60 })).toThrow(/32 bytes/);
    const small = generateKeyPairSync("rsa", { modulusLength: 1024 });
    expect(() =>
      createTokenVerifier({ key: { kind: "public", pem: small.publicKey.export({ type: "spki", format: "pem" }) as string }, maxTtlSeconds: 60 }),
    ).toThrow(/2048/);
  });
});
