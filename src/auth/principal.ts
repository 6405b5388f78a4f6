/**
 * Who a call acts for, derived only from a verified token. The developer is the
 * token's `sub`: never a request field, never a header the caller may set.
 */

/** The scopes a token may carry (claim `scope`, space-separated). */
export const SCOPES = ["secrets:read", "secrets:access", "secrets:write", "secrets:keys", "secrets:operator"] as const;
export type Scope = (typeof SCOPES)[number];

export interface Principal {
  /** The developer whose secrets the call touches: the token's `sub`. */
  readonly developerId: string;
  readonly scopes: ReadonlySet<Scope>;
  /**
   * The per-task allowlist (claim `secrets`): the exact names the token may touch.
   * `null` when the claim is absent (no restriction); an empty set allows none.
   */
  readonly allowlist: ReadonlySet<string> | null;
  /** The token's `jti`, for audit; may be absent. */
  readonly tokenId: string | undefined;
  /** Seconds since the epoch after which the token is no longer accepted. */
  readonly expiresAt: number;
}

/** `sub` format (docs/api.md, Tokens). */
export const SUBJECT_PATTERN = /^[A-Za-z0-9._@:-]{1,128}$/;

/** A secret name (docs/api.md, SecretService): what the `secrets` allowlist claim may hold. */
export const ALLOWLIST_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_]{0,127}$/;
