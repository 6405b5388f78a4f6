import { createHash } from "node:crypto";
import { AppError, invalid } from "../api/errors.js";
import { LIMITS, NAME_PATTERN, NAME_PREFIX_PATTERN } from "../api/limits.js";

/**
 * Input checks, run before anything is read or written. Messages say what is wrong
 * and never echo the input: not a value, and not an invalid name (which may be a
 * pasted value); `describeRejectedName` gives logs its length and a hash instead.
 */

/** JSON as the API carries it in a google.protobuf.Struct. */
export type JsonValue = null | boolean | number | string | JsonValue[] | { [key: string]: JsonValue };
export type JsonObject = { [key: string]: JsonValue };

export function validateName(name: string, field = "name"): string {
  if (!NAME_PATTERN.test(name)) {
    throw new AppError(
      "INVALID_NAME",
      `${field} must start with an ASCII letter and hold only letters, digits and underscores, 1 to ${LIMITS.nameMaxLength} characters`,
      { field },
      { logFields: { rejectedName: describeRejectedName(name) } },
    );
  }
  return name;
}

export function validateNamePrefix(prefix: string): string {
  if (!NAME_PREFIX_PATTERN.test(prefix)) {
    throw invalid("INVALID_NAME", "name_prefix", "name_prefix must be the beginning of a valid name");
  }
  return prefix;
}

/** Length and SHA-256 prefix of a rejected name: enough to correlate, nothing to leak. */
export function describeRejectedName(name: string): { length: number; sha256: string } {
  return { length: name.length, sha256: createHash("sha256").update(name, "utf8").digest("hex").slice(0, 12) };
}

/**
 * A value is a string of 1 byte to 64 KiB of UTF-8. Protobuf strings are UTF-8 on
 * the wire, so lone surrogates cannot arrive over gRPC; we still refuse them, so
 * that what is stored is exactly what is returned.
 */
export function validateValue(value: string, field = "value"): Buffer {
  if (value.length === 0) throw invalid("INVALID_VALUE", field, `${field} must not be empty`);
  if (!value.isWellFormed()) throw invalid("INVALID_VALUE", field, `${field} must be valid UTF-8`);
  const bytes = Buffer.from(value, "utf8");
  if (bytes.length > LIMITS.valueMaxBytes) {
    throw invalid("VALUE_TOO_LARGE", field, `${field} is larger than ${LIMITS.valueMaxBytes} bytes`);
  }
  return bytes;
}

export function validateDescription(description: string): string {
  if ([...description].length > LIMITS.descriptionMaxChars) {
    throw invalid("INVALID_DESCRIPTION", "description", `description is longer than ${LIMITS.descriptionMaxChars} characters`);
  }
  if (!description.isWellFormed()) throw invalid("INVALID_DESCRIPTION", "description", "description must be valid UTF-8");
  // Postgres text cannot hold U+0000.
  if (description.includes("\u0000")) throw invalid("INVALID_DESCRIPTION", "description", "description must not contain U+0000");
  return description;
}

/**
 * Metadata: a JSON object of at most 16 KiB (UTF-8 of its JSON), depth at most 8,
 * at most 256 keys counted at every level. Returns its canonical JSON text.
 */
export function validateMetadata(metadata: JsonObject, field = "metadata"): string {
  let keys = 0;
  // Depth counts containers: `{}` is depth 1, `{"a": {"b": 1}}` depth 2.
  const walk = (v: JsonValue, depth: number): void => {
    if (depth > LIMITS.metadataMaxDepth && v !== null && typeof v === "object") {
      throw invalid("INVALID_METADATA", field, `${field} is nested deeper than ${LIMITS.metadataMaxDepth} levels`);
    }
    if (typeof v === "number" && !Number.isFinite(v)) {
      throw invalid("INVALID_METADATA", field, `${field} holds a number JSON cannot represent`);
    }
    if (typeof v === "string" && !v.isWellFormed()) {
      throw invalid("INVALID_METADATA", field, `${field} holds a string that is not valid UTF-8`);
    }
    if (Array.isArray(v)) {
      for (const item of v) walk(item, depth + 1);
    } else if (v !== null && typeof v === "object") {
      for (const [k, item] of Object.entries(v)) {
        keys += 1;
        if (keys > LIMITS.metadataMaxKeys) {
          throw invalid("INVALID_METADATA", field, `${field} has more than ${LIMITS.metadataMaxKeys} keys`);
        }
        if (!k.isWellFormed() || k.includes("\u0000")) throw invalid("INVALID_METADATA", field, `${field} has a malformed key`);
        walk(item, depth + 1);
      }
    } else if (typeof v === "string" && v.includes("\u0000")) {
      // Postgres jsonb cannot hold U+0000.
      throw invalid("INVALID_METADATA", field, `${field} strings must not contain U+0000`);
    }
  };
  walk(metadata, 1);
  const json = JSON.stringify(metadata);
  if (Buffer.byteLength(json, "utf8") > LIMITS.metadataMaxBytes) {
    throw invalid("INVALID_METADATA", field, `${field} is larger than ${LIMITS.metadataMaxBytes} bytes of JSON`);
  }
  return json;
}

/** `page_size`: 0 means the default, at most the maximum, negative is an error. */
export function validatePageSize(pageSize: number): number {
  if (!Number.isInteger(pageSize) || pageSize < 0) {
    throw invalid("INVALID_PAGE_SIZE", "page_size", "page_size must not be negative");
  }
  if (pageSize === 0) return LIMITS.pageSizeDefault;
  return Math.min(pageSize, LIMITS.pageSizeMax);
}

/** A version number in a request: 0 where allowed means "current"; negative is an error. */
export function validateVersion(version: number, field: string, allowZero: boolean): number {
  if (!Number.isInteger(version) || version < 0 || (!allowZero && version === 0)) {
    throw invalid("INVALID_VERSION", field, allowZero ? `${field} must not be negative` : `${field} must be positive`);
  }
  return version;
}

/** Names for ResolveSecrets: 1 to 100 distinct valid names; duplicates collapse. */
export function validateNameList(names: readonly string[]): string[] {
  const unique = [...new Set(names)];
  if (unique.length === 0) throw invalid("INVALID_ARGUMENT", "names", "names must hold at least one name");
  if (unique.length > LIMITS.resolveMaxNames) {
    throw new AppError("TOO_MANY_NAMES", `names may hold at most ${LIMITS.resolveMaxNames} distinct names`, { field: "names" });
  }
  unique.forEach((n, i) => validateName(n, `names[${i}]`));
  return unique;
}

/** The longest recovery window a delete may ask for (and SECRETS_RECOVERY_WINDOW_DAYS may set). */
export const MAX_RECOVERY_WINDOW_DAYS = 365;

/**
 * DeleteSecret's `recovery_window_days` and `force`: the days the secret stays in the
 * recovery bin (0 means `defaultDays`), or "force" to delete it at once. Both at once
 * is an error: the caller asked for two different things.
 */
export function validateRecoveryWindow(days: number, force: boolean, defaultDays: number): number | "force" {
  if (!Number.isInteger(days) || days < 0 || days > MAX_RECOVERY_WINDOW_DAYS) {
    throw invalid("INVALID_ARGUMENT", "recovery_window_days", `recovery_window_days must be 0 (the default) or 1 to ${MAX_RECOVERY_WINDOW_DAYS}`);
  }
  if (force && days !== 0) throw invalid("INVALID_ARGUMENT", "force", "force deletes at once: send it without recovery_window_days");
  if (force) return "force";
  return days === 0 ? defaultDays : days;
}

/** A secret id as the service hands them out (randomUUID: lower-case hex). */
export const UUID_PATTERN = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;

/** RestoreSecret's target: exactly one of a valid name and a secret id (a UUID, in lower case as the API returns it). */
export function validateRestoreTarget(name: string, id: string): { name: string } | { id: string } {
  if ((name === "") === (id === "")) throw invalid("INVALID_ARGUMENT", "name,id", "send exactly one of name and id");
  if (name !== "") return { name: validateName(name) };
  if (!UUID_PATTERN.test(id)) throw invalid("INVALID_ARGUMENT", "id", "id must be a secret id (a UUID)");
  return { id };
}

/** A google.protobuf.Timestamp or Duration as it arrives: whole seconds and nanoseconds. */
export interface WireSpan {
  seconds: bigint;
  nanos: number;
}

/** The longest expiry, ttl and rotation period: about a hundred years. */
export const MAX_LIFECYCLE_DAYS = 36_500;
const MAX_LIFECYCLE_MS = MAX_LIFECYCLE_DAYS * 86_400_000;

/**
 * Milliseconds of a Timestamp or Duration (nanoseconds below a millisecond are
 * dropped), or INVALID_ARGUMENT when it is out of the well-known types' ranges.
 */
function spanMs(span: WireSpan, field: string): number {
  const { seconds, nanos } = span;
  // The ranges both types allow (google/protobuf/timestamp.proto, duration.proto): ±10,000 years.
  const inRange = seconds >= -315_576_000_000n && seconds <= 315_576_000_000n && Number.isInteger(nanos) && Math.abs(nanos) < 1e9;
  if (!inRange) throw invalid("INVALID_ARGUMENT", field, `${field} is not a valid time`);
  return Number(seconds) * 1000 + Math.trunc(nanos / 1e6);
}

/** A time in the future, at most MAX_LIFECYCLE_DAYS ahead of `now`. */
function futureTime(span: WireSpan, now: Date, field: string): Date {
  const ms = spanMs(span, field);
  if (ms <= now.getTime()) throw invalid("INVALID_ARGUMENT", field, `${field} must be in the future`);
  if (ms > now.getTime() + MAX_LIFECYCLE_MS) {
    throw invalid("INVALID_ARGUMENT", field, `${field} must be at most ${MAX_LIFECYCLE_DAYS} days ahead`);
  }
  return new Date(ms);
}

/** How a request sets a secret's expiry: a time, a time to live, or (UpdateSecret) no expiry, sent as `true`. */
export type ExpiryInput = { expireTime: WireSpan } | { ttl: WireSpan } | { clear: boolean };

/** The expiry a request sets, as a time (null: none). */
export function validateExpiry(input: ExpiryInput, now: Date): Date | null {
  if ("clear" in input) return validateClear(input.clear, "clear_expiration", "the expiry");
  if ("expireTime" in input) return futureTime(input.expireTime, now, "expire_time");
  const ms = spanMs(input.ttl, "ttl");
  if (ms < 1000 || ms > MAX_LIFECYCLE_MS) {
    throw invalid("INVALID_ARGUMENT", "ttl", `ttl must be 1 second to ${MAX_LIFECYCLE_DAYS} days`);
  }
  return new Date(now.getTime() + ms);
}

/** A rotation schedule as a request sends it; its due time is output only and not read. */
export interface RotationInput {
  nextRotationTime: WireSpan | undefined;
  rotationPeriod: WireSpan | undefined;
}

/** The shortest rotation period: a reminder more often than hourly is noise. */
export const MIN_ROTATION_PERIOD_SECONDS = 3_600;

/** A `clear_…` field: present means true; false is refused rather than read as "keep". */
function validateClear(clear: boolean, field: string, what: string): null {
  if (!clear) throw invalid("INVALID_ARGUMENT", field, `${field} removes ${what}: send it true, or leave it out`);
  return null;
}

/** UpdateSecret's rotation change: a new schedule, or its removal (`clear_rotation`). */
export function validateRotationChange(
  input: RotationInput | { clear: boolean },
  now: Date,
): { nextRotationTime: Date; periodSeconds: number } | null {
  return "clear" in input ? validateClear(input.clear, "clear_rotation", "the schedule") : validateRotation(input, now);
}

/** A rotation schedule: a period of whole seconds, 1 hour to MAX_LIFECYCLE_DAYS; the first time defaults to one period from `now`. */
export function validateRotation(input: RotationInput, now: Date): { nextRotationTime: Date; periodSeconds: number } {
  const field = "rotation.rotation_period";
  if (input.rotationPeriod === undefined) throw invalid("INVALID_ARGUMENT", field, `${field} is required`);
  const periodMs = spanMs(input.rotationPeriod, field);
  if (input.rotationPeriod.nanos !== 0 || periodMs < MIN_ROTATION_PERIOD_SECONDS * 1000 || periodMs > MAX_LIFECYCLE_MS) {
    throw invalid("INVALID_ARGUMENT", field, `${field} must be whole seconds, 1 hour to ${MAX_LIFECYCLE_DAYS} days`);
  }
  const nextRotationTime =
    input.nextRotationTime === undefined
      ? new Date(now.getTime() + periodMs)
      : futureTime(input.nextRotationTime, now, "rotation.next_rotation_time");
  return { nextRotationTime, periodSeconds: periodMs / 1000 };
}

/** ListSecrets' `expires_before`: any valid time. */
export function validateExpiresBefore(span: WireSpan): Date {
  return new Date(spanMs(span, "expires_before"));
}
