import type { Principal } from "../../auth/principal.js";

/**
 * The operator rule (docs/configuration.md): with mTLS on, secrets:operator needs both
 * the scope in the token and a client certificate whose identity is listed in
 * SECRETS_OPERATOR_IDENTITIES; otherwise the scope is dropped for this call.
 * `allowed` is undefined when mTLS is off: the token's scopes stand.
 */
export function withOperatorRule(p: Principal, identity: string | undefined, allowed: ReadonlySet<string> | undefined): Principal {
  if (!allowed || !p.scopes.has("secrets:operator")) return p;
  if (identity !== undefined && allowed.has(identity)) return p;
  const scopes = new Set(p.scopes);
  scopes.delete("secrets:operator");
  return { ...p, scopes };
}
