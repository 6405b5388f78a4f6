/**
 * The API's limits as the SDK exports them, for callers that validate before they send (the CLI's import
 * checks a whole file before writing anything), and the checks the SDK itself makes before a call. The rule
 * and the numbers are the service's own (api/limits.ts), not a copy.
 */
import { BEARER_TOKEN_PATTERN, LIMITS, NAME_PATTERN } from "./contract.js";

/** Secret names: an ASCII letter, then letters, digits and underscores; 1 to 128 characters. */
export const SECRET_NAME_PATTERN = NAME_PATTERN;

/** The largest value, in bytes of UTF-8 (values are 1 byte to 64 KiB). */
export const VALUE_MAX_BYTES = LIMITS.valueMaxBytes;

/** The most distinct names one ResolveSecrets call takes. */
export const RESOLVE_MAX_NAMES = LIMITS.resolveMaxNames;

/** Why `value` is not a storable secret value, or undefined when it is. Never mentions the value itself. */
export function valueProblem(value: string): string | undefined {
  if (value.length === 0) return "value is empty";
  if (!value.isWellFormed()) return "value is not valid UTF-8 (it holds a lone surrogate)";
  const bytes = Buffer.byteLength(value, "utf8");
  if (bytes > VALUE_MAX_BYTES) return `value is ${bytes} bytes, more than ${VALUE_MAX_BYTES}`;
  return undefined;
}

/**
 * Why `name` breaks the naming rule, or undefined when it does not. Never repeats the name: a "name" that
 * breaks the rule is sometimes a value pasted in the wrong place.
 */
export function nameProblem(name: string): string | undefined {
  if (NAME_PATTERN.test(name)) return undefined;
  const rule = "invalid secret name";
  if (name.length === 0) return `${rule}: it is empty`;
  if (!/^[A-Za-z]/.test(name)) return `${rule}: it must start with a letter (A-Z or a-z)`;
  if (name.length > LIMITS.nameMaxLength) return `${rule}: it is longer than ${LIMITS.nameMaxLength} characters`;
  return `${rule}: it may contain only letters, digits and underscores`;
}

/**
 * Why a trimmed token cannot be a bearer token (BEARER_TOKEN_PATTERN), or undefined when it can. Never
 * repeats the token. Checked before a call: grpc-js would refuse some of these characters in a header with
 * the token in its message, and the service refuses every one of them.
 */
export function tokenProblem(token: string): string | undefined {
  if (BEARER_TOKEN_PATTERN.test(token)) return undefined;
  if (/^Bearer\s/i.test(token)) return "the token starts with 'Bearer ': give the token alone";
  if (/[^\x20-\x7e]/.test(token)) return "the token holds characters a header cannot carry (a line break, control or non-ASCII character)";
  return "the token holds characters a bearer token cannot (a space, or punctuation other than . _ ~ + / = -)";
}
