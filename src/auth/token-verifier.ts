import { createPublicKey, webcrypto, type KeyObject } from "node:crypto";
import { errors as joseErrors, jwtVerify, type JWTPayload } from "jose";
import { AppError } from "../api/errors.js";
import { NAME_PATTERN, SUBJECT_PATTERN } from "../api/limits.js";
import { SCOPES, type Principal, type Scope } from "./principal.js";

/** Turns a bearer token into a Principal, or fails UNAUTHENTICATED. */
export interface TokenVerifier {
  verify(token: string): Promise<Principal>;
  /** The principal of a token already verified and still valid, at once; undefined means: call verify. */
  verified?(token: string): Principal | undefined;
}

/** Exactly one verification key; it alone fixes the algorithm. */
export type VerificationKey = { kind: "hmac"; secret: Uint8Array } | { kind: "public"; pem: string };

export interface TokenVerifierOptions {
  key: VerificationKey;
  audience?: string | undefined;
  issuer?: string | undefined;
  /** Longest accepted lifetime, `exp − iat`. */
  maxTtlSeconds: number;
  clockToleranceSeconds?: number;
  now?: () => Date;
}

/** The least HS256 secret length we accept (bytes of its UTF-8). */
export const MIN_HMAC_SECRET_BYTES = 32;

const DEFAULT_CLOCK_TOLERANCE_SECONDS = 30;
const SCOPE_SET: ReadonlySet<string> = new Set(SCOPES);

/**
 * Builds a verifier whose algorithm comes from the configured key, never from the
 * token header: an HMAC secret means HS256; an RSA key (≥ 2048 bits) RS256; a P-256
 * key ES256. `alg: none` and every other algorithm are rejected by construction.
 */
export function createTokenVerifier(options: TokenVerifierOptions): TokenVerifier {
  const { algorithm, key: configured } = verificationKey(options.key);
  // Imported once: given raw bytes, jose would import the HMAC key again on every verification.
  const key: Promise<webcrypto.CryptoKey | KeyObject> =
    configured instanceof Uint8Array
      ? webcrypto.subtle.importKey("raw", configured, { name: "HMAC", hash: "SHA-256" }, false, ["verify"])
      : Promise.resolve(configured);
  const tolerance = options.clockToleranceSeconds ?? DEFAULT_CLOCK_TOLERANCE_SECONDS;
  const now = options.now ?? (() => new Date());

  return {
    async verify(token) {
      let payload: JWTPayload;
      try {
        ({ payload } = await jwtVerify(token, await key, {
          algorithms: [algorithm],
          clockTolerance: tolerance,
          requiredClaims: ["exp", "iat", "sub"],
          audience: options.audience,
          issuer: options.issuer,
          currentDate: now(),
        }));
      } catch (e) {
        throw tokenError(e);
      }
      const exp = payload.exp as number;
      const iat = payload.iat as number;
      if (iat > Math.floor(now().getTime() / 1000) + tolerance) {
        throw new AppError("TOKEN_INVALID", "token issued in the future");
      }
      if (exp - iat > options.maxTtlSeconds) {
        throw new AppError("TOKEN_INVALID", `token lifetime exceeds ${options.maxTtlSeconds} seconds`);
      }
      return principalFrom(payload, exp);
    },
  };
}

function verificationKey(config: VerificationKey): { algorithm: string; key: Uint8Array | KeyObject } {
  if (config.kind === "hmac") {
    if (config.secret.length < MIN_HMAC_SECRET_BYTES) {
      throw new Error(`the HS256 secret must be at least ${MIN_HMAC_SECRET_BYTES} bytes`);
    }
    return { algorithm: "HS256", key: config.secret };
  }
  const key = createPublicKey(config.pem);
  const details = key.asymmetricKeyDetails;
  if (key.asymmetricKeyType === "rsa") {
    if ((details?.modulusLength ?? 0) < 2048) throw new Error("the RSA public key must be at least 2048 bits");
    return { algorithm: "RS256", key };
  }
  if (key.asymmetricKeyType === "ec" && details?.namedCurve === "prime256v1") {
    return { algorithm: "ES256", key };
  }
  throw new Error("the public key must be RSA (2048 bits or more) or EC P-256");
}

function principalFrom(payload: JWTPayload, exp: number): Principal {
  // jose checks that `sub` is present, not its type. The type is checked before the
  // pattern because RegExp.test coerces: ["alice"] and 12 would pass as "alice" and "12".
  const sub: unknown = payload.sub;
  if (typeof sub !== "string" || !SUBJECT_PATTERN.test(sub)) {
    throw new AppError("TOKEN_INVALID", "token subject is malformed", { claim: "sub" });
  }

  const scopes = new Set<Scope>();
  const scopeClaim = payload["scope"];
  if (scopeClaim !== undefined) {
    if (typeof scopeClaim !== "string") throw new AppError("TOKEN_INVALID", "token scope claim must be a string", { claim: "scope" });
    for (const s of scopeClaim.split(" ")) if (SCOPE_SET.has(s)) scopes.add(s as Scope);
  }

  let allowlist: Set<string> | null = null;
  const secretsClaim = payload["secrets"];
  if (secretsClaim !== undefined) {
    if (!Array.isArray(secretsClaim) || !secretsClaim.every((n) => typeof n === "string")) {
      throw new AppError("TOKEN_INVALID", "token secrets claim must be an array of names", { claim: "secrets" });
    }
    // An entry that is not a valid name can never match one; it is dropped here so that
    // nothing malformed (U+0000, say) travels further, e.g. into a query parameter.
    allowlist = new Set((secretsClaim as string[]).filter((n) => NAME_PATTERN.test(n)));
  }

  // The token id goes into every audit event of the call: a jti that is not a string is
  // refused rather than dropped, so the trail never loses the id a token claimed.
  const jti: unknown = payload.jti;
  if (jti !== undefined && typeof jti !== "string") {
    throw new AppError("TOKEN_INVALID", "token jti claim must be a string", { claim: "jti" });
  }
  return Object.freeze({ developerId: sub, scopes, allowlist, tokenId: jti, expiresAt: exp });
}

/** jose's messages are safe (they never echo the token) but we send fixed ones. */
function tokenError(e: unknown): AppError {
  if (e instanceof joseErrors.JWTExpired && e.claim === "exp") {
    return new AppError("TOKEN_EXPIRED", "token expired", {}, { cause: e });
  }
  if (e instanceof joseErrors.JWTClaimValidationFailed) {
    return new AppError("TOKEN_INVALID", `token claim "${e.claim}" is missing or invalid`, { claim: e.claim }, { cause: e });
  }
  if (e instanceof joseErrors.JWSSignatureVerificationFailed) {
    return new AppError("TOKEN_INVALID", "token signature invalid", {}, { cause: e });
  }
  if (e instanceof joseErrors.JOSEAlgNotAllowed) {
    return new AppError("TOKEN_INVALID", "token algorithm not accepted", {}, { cause: e });
  }
  return new AppError("TOKEN_INVALID", "token malformed", {}, { cause: e });
}
