import type * as grpc from "@grpc/grpc-js";
import type { Principal } from "../../auth/principal.js";
import type { TokenVerifier } from "../../auth/token-verifier.js";
import { AppError } from "../../api/errors.js";
import { BEARER_TOKEN_PATTERN } from "../../api/limits.js";

/**
 * Authentication of a call to a protected service: exactly one
 * `authorization: Bearer <token>` header, whose token the verifier accepts.
 */

const BEARER_PREFIX = "Bearer ";

/**
 * The principal of a call's bearer token: the principal itself when the verifier
 * already knows the token (no promise, no wait), else the verifier's promise. Throws
 * TOKEN_MISSING or TOKEN_INVALID when the header is absent or not of that form.
 */
export type Authenticate = (metadata: grpc.Metadata) => Principal | Promise<Principal>;

export function createBearerAuth(verifier: TokenVerifier): Authenticate {
  return (metadata) => {
    const values = metadata.get("authorization");
    if (values.length === 0) throw new AppError("TOKEN_MISSING", "missing authorization: Bearer token");
    const header = values.length === 1 ? values[0] : undefined;
    // A token the verifier knows passed the form check before it was verified, so
    // its form is checked only otherwise.
    if (typeof header === "string" && header.startsWith(BEARER_PREFIX)) {
      const known = verifier.verified?.(header.slice(BEARER_PREFIX.length));
      if (known !== undefined) return known;
    }
    const token = typeof header === "string" && header.startsWith(BEARER_PREFIX) ? header.slice(BEARER_PREFIX.length) : "";
    if (!BEARER_TOKEN_PATTERN.test(token)) throw new AppError("TOKEN_INVALID", "authorization must be one 'Bearer <token>' header");
    return verifier.verify(token);
  };
}
