/**
 * The small codes a compact audit event stores for its action and outcome
 * (migration 13, audit_log). Fixed forever: the database decodes them with the
 * functions audit_action_name and audit_outcome_name of migration 13, and the chain
 * hashes the code, so a code is never reused or renumbered. A new action gets the
 * next code here and in a new migration that replaces audit_action_name; until
 * then its events store the name itself (code NAMED).
 */

/** The code of an action or outcome stored by name (in action_name / outcome_name). */
export const NAMED = -1;

/** Action names by code, from 1. */
const ACTIONS = [
  "AccessSecret",
  "ResolveSecrets",
  "CreateSecret",
  "GetSecret",
  "ListSecrets",
  "UpdateSecret",
  "DeleteSecret",
  "ListSecretVersions",
  "DestroySecretVersion",
  "RestoreSecret",
  "WatchSecrets",
  "ListAuditEvents",
  "RotateMasterKey",
  "RotateDeveloperKey",
  "ShredDeveloper",
  "GetKeyStatus",
  "ExpireSecret",
  "RotationDue",
  "PurgeSecret",
] as const;

/** Outcome names by code: the gRPC status numbers. */
const OUTCOMES = [
  "OK",
  "CANCELLED",
  "UNKNOWN",
  "INVALID_ARGUMENT",
  "DEADLINE_EXCEEDED",
  "NOT_FOUND",
  "ALREADY_EXISTS",
  "PERMISSION_DENIED",
  "RESOURCE_EXHAUSTED",
  "FAILED_PRECONDITION",
  "ABORTED",
  "OUT_OF_RANGE",
  "UNIMPLEMENTED",
  "INTERNAL",
  "UNAVAILABLE",
  "DATA_LOSS",
  "UNAUTHENTICATED",
] as const;

const ACTION_CODES = new Map<string, number>(ACTIONS.map((name, i) => [name, i + 1]));
const OUTCOME_CODES = new Map<string, number>(OUTCOMES.map((name, i) => [name, i]));

/** The code of an action, or NAMED. */
export function actionCode(name: string): number {
  return ACTION_CODES.get(name) ?? NAMED;
}

/** The code of an outcome, or NAMED. */
export function outcomeCode(name: string): number {
  return OUTCOME_CODES.get(name) ?? NAMED;
}

/** The name of an action code (the inverse of actionCode); undefined for NAMED or an unknown code. */
export function actionName(code: number): string | undefined {
  return ACTIONS[code - 1];
}

/** The name of an outcome code (the inverse of outcomeCode); undefined for NAMED or an unknown code. */
export function outcomeName(code: number): string | undefined {
  return OUTCOMES[code];
}

/** Every action with a code, by code (for the test that holds them equal to the database's). */
export const CODED_ACTIONS: ReadonlyMap<string, number> = ACTION_CODES;
/** Every outcome with a code, by code. */
export const CODED_OUTCOMES: ReadonlyMap<string, number> = OUTCOME_CODES;
