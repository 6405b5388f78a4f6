import { createHash } from "node:crypto";
import { SecretsTokenError } from "./errors.js";
import { tokenProblem } from "./limits.js";

/**
 * Bearer tokens as the SDK sends them. A token is trimmed of surrounding whitespace
 * (a token file's trailing newline), then must be non-empty and a bearer token's
 * characters (limits.ts tokenProblem). Every failure is a
 * SecretsTokenError whose message says what is wrong and never holds the token, nor
 * the text of an error the token source threw (which may hold it).
 */

/** Where the bearer token comes from: a fixed string, or a function called before every attempt. */
export type TokenSource = string | (() => string | Promise<string>);


/** An error code such as ENOENT, safe to repeat (never taken from a message). */
const ERROR_CODE = /^[A-Z][A-Z0-9_]{1,31}$/;

/** The token of `source`, trimmed and checked. */
export async function readToken(source: TokenSource): Promise<string> {
  let raw: unknown;
  if (typeof source === "function") {
    try {
      raw = await source();
    } catch (e) {
      const code = (e as { code?: unknown } | null)?.code;
      throw new SecretsTokenError(`the token function failed${typeof code === "string" && ERROR_CODE.test(code) ? ` (${code})` : ""}`);
    }
  } else {
    raw = source;
  }
  return checkToken(raw);
}

/** A token as given (a string, or what a token function returned), trimmed and checked. */
export function checkToken(raw: unknown): string {
  if (typeof raw !== "string") throw new SecretsTokenError("the token is not a string");
  const token = raw.trim();
  if (token === "") throw new SecretsTokenError("the token is empty");
  const problem = tokenProblem(token);
  if (problem !== undefined) throw new SecretsTokenError(problem);
  return token;
}

/**
 * The cache partition of a token: a digest of the exact token. The identity a JWT claims
 * (`sub`, `secrets`) is not verified on the client, so anyone who supplies a token could
 * claim another developer's; the digest shares cached values only between calls made
 * with a token the service accepted for them. Remembers the last token, which is the
 * common case (one token, or a refreshing one).
 */
export function createTokenScopes(): (token: string) => string {
  let lastToken: string | undefined;
  let lastScope = "";
  return (token) => {
    if (token !== lastToken) {
      lastScope = createHash("sha256").update(token).digest("base64url");
      lastToken = token;
    }
    return lastScope;
  };
}
