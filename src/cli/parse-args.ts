import { InvalidArgumentError } from "commander";
import { SECRET_NAME_PATTERN, type JsonObject } from "@secrets-service/client";
import { CliError } from "./cli-error.js";

/**
 * Parsers for option and argument values, in commander's shape (they throw
 * InvalidArgumentError, which commander reports as a usage error), and checks of
 * names done in actions. Messages
 * describe the input's fault and never repeat the input, which may be a value.
 */

/** A non-negative integer, e.g. a version. */
export function nonNegativeInt(text: string): number {
  if (!/^\d{1,9}$/.test(text)) throw new InvalidArgumentError("expected a whole number");
  return Number(text);
}

/** A positive integer. */
export function positiveInt(text: string): number {
  const n = nonNegativeInt(text);
  if (n === 0) throw new InvalidArgumentError("expected a number above 0");
  return n;
}

/** A JSON object, e.g. metadata or a metadata filter. */
export function jsonObject(text: string): JsonObject {
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch {
    throw new InvalidArgumentError("expected a JSON object, e.g. '{\"env\":\"prod\"}'");
  }
  if (typeof parsed !== "object" || parsed === null || Array.isArray(parsed)) throw new InvalidArgumentError("expected a JSON object");
  return parsed as JsonObject;
}

/** Accumulates a repeatable option's values. */
export function collect(text: string, previous: string[] = []): string[] {
  return [...previous, text];
}

/**
 * Secret names from comma-separated option values, each checked against the naming
 * rule. (Checked here rather than in a commander parser, whose message would repeat
 * the input: a mistyped name may be a pasted value.)
 */
export function namesFrom(values: readonly string[], flag: string): string[] {
  const names = values.flatMap((v) => v.split(",")).map((n) => n.trim()).filter((n) => n !== "");
  const bad = names.filter((n) => !SECRET_NAME_PATTERN.test(n)).length;
  if (bad > 0) throw new CliError(`${flag}: ${bad} name(s) do not match ${SECRET_NAME_PATTERN.source}`);
  return [...new Set(names)];
}
