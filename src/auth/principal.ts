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

/** `sub` format: the API's rule (api/limits.ts), which a Principal's `developerId` obeys. */
export { SUBJECT_PATTERN } from "../api/limits.js";
