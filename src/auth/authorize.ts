import type { Principal, Scope } from "./principal.js";
import { AppError } from "../api/errors.js";

/**
 * Access checks, in the order docs/api.md gives (Tokens): the scope before any validation, the
 * allowlist after validation and before any lookup, so a name outside the
 * allowlist is PERMISSION_DENIED whether or not it exists.
 */
export function requireScope(principal: Principal, scope: Scope): void {
  if (!principal.scopes.has(scope)) {
    throw new AppError("SCOPE_MISSING", `this call needs the ${scope} scope`, { scope });
  }
}

export function requireAllowlisted(principal: Principal, names: readonly string[]): void {
  const allow = principal.allowlist;
  if (allow === null) return;
  const denied = names.filter((n) => !allow.has(n));
  if (denied.length > 0) {
    // The names were validated, and the caller sent them: safe to return.
    throw new AppError("NOT_ALLOWLISTED", "the token does not allow these secrets", { names: denied.join(",") });
  }
}
