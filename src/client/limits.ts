/**
 * The API's input limits (docs/api.md), for callers that validate before
 * they send (the CLI's import checks a whole file before writing anything). The
 * service enforces the same numbers; these are a copy because the SDK imports no
 * server code, and a change to the API changes both.
 */

/** Secret names: an ASCII letter, then letters, digits and underscores; 1 to 128 characters. */
export const SECRET_NAME_PATTERN = /^[A-Za-z][A-Za-z0-9_]{0,127}$/;

/** The largest value, in bytes of UTF-8 (values are 1 byte to 64 KiB). */
export const VALUE_MAX_BYTES = 64 * 1024;

/** The most distinct names one ResolveSecrets call takes. */
export const RESOLVE_MAX_NAMES = 100;

/** Why `value` is not a storable secret value, or undefined when it is. Never mentions the value itself. */
export function valueProblem(value: string): string | undefined {
  if (value.length === 0) return "value is empty";
  if (!value.isWellFormed()) return "value is not valid UTF-8 (it holds a lone surrogate)";
  const bytes = Buffer.byteLength(value, "utf8");
  if (bytes > VALUE_MAX_BYTES) return `value is ${bytes} bytes, more than ${VALUE_MAX_BYTES}`;
  return undefined;
}
