import { randomUUID } from "node:crypto";
import { SignJWT } from "jose";
import type { Scope } from "./principal.js";

/** What a minted token says. */
export interface TokenClaims {
  subject: string;
  scopes: readonly Scope[];
  ttlSeconds: number;
  /** The per-task allowlist (claim `secrets`); omitted means no restriction. */
  allowlist?: readonly string[];
  audience?: string;
  issuer?: string;
}

/**
 * Mints an HS256 token. Used by dev mode (the printed developer token), the CLI's
 * `token` command and tests; production tokens come from the caller's identity provider.
 */
export async function mintHs256Token(secret: Uint8Array, claims: TokenClaims, now: Date = new Date()): Promise<string> {
  const iat = Math.floor(now.getTime() / 1000);
  const jwt = new SignJWT({
    scope: claims.scopes.join(" "),
    ...(claims.allowlist ? { secrets: [...claims.allowlist] } : {}),
  })
    .setProtectedHeader({ alg: "HS256", typ: "JWT" })
    .setSubject(claims.subject)
    .setIssuedAt(iat)
    .setExpirationTime(iat + claims.ttlSeconds)
    .setJti(randomUUID());
  if (claims.audience) jwt.setAudience(claims.audience);
  if (claims.issuer) jwt.setIssuer(claims.issuer);
  return jwt.sign(secret);
}
