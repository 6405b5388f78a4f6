import type { StoredAuditEvent } from "./chain.js";
import { describeRejectedName } from "../secrets/validation.js";
import { NAME_PATTERN } from "../api/limits.js";

/**
 * An audit event as the caller gives it, and the storable form the writer
 * (audit-log.ts) chains and stores. What is hashed is what is stored, so text is
 * made storable (well-formed UTF-8, no U+0000, which Postgres text refuses) before
 * it is hashed: a batch can then never be rejected for its content and block the
 * queue, and the verifier recomputes exactly the hash written.
 */

/**
 * One audited call, as the caller describes it (the writer adds its id, the
 * sequence and the hashes). Never a value; for an invalid name the caller passes a
 * description (length and hash), not the name (see `auditSecretName`).
 */
export type AuditEventInput = Omit<StoredAuditEvent, "writerId" | "writerSequence">;

/**
 * The `secretName` of an event about `names`: joined with ",". A name that breaks
 * the naming rule may be a pasted value, so it is replaced by its length and a hash
 * prefix, in a form that holds no comma and is never itself a valid name.
 */
export function auditSecretName(names: readonly string[]): string {
  return names
    .map((n) => {
      if (NAME_PATTERN.test(n)) return n;
      const d = describeRejectedName(n);
      return `<invalid:length=${d.length}:sha256=${d.sha256}>`;
    })
    .join(",");
}

// Timestamp's range (0001-01-01 to 9999-12-31), well inside both JS Date and Postgres timestamptz.
const MIN_TIME = new Date(0).setUTCFullYear(1, 0, 1);
const MAX_TIME = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

/**
 * The stored form of an event: text made storable, time in whole milliseconds within
 * Timestamp's range (else `now()`), a version outside int4 stored as 0. Its place in
 * the chain (`writerSequence`) is left 0 for the writer to set.
 */
export function storableEvent(e: AuditEventInput, writerId: string, now: () => Date): StoredAuditEvent {
  const ms = e.time.getTime();
  // Field order as in StoredAuditEvent, the sequence last (set by the writer): one shape for every row.
  return {
    time: new Date(Number.isInteger(ms) && ms >= MIN_TIME && ms <= MAX_TIME ? ms : now().getTime()),
    developerId: storableText(e.developerId),
    callerSubject: storableText(e.callerSubject),
    callerTokenId: storableText(e.callerTokenId),
    callerIdentity: storableText(e.callerIdentity),
    action: storableText(e.action),
    secretName: storableText(e.secretName),
    version: Number.isInteger(e.version) && e.version >= -(2 ** 31) && e.version < 2 ** 31 ? e.version : 0,
    outcome: storableText(e.outcome),
    requestId: storableText(e.requestId),
    peer: storableText(e.peer),
    writerId,
    writerSequence: 0,
  };
}

/** Well-formed UTF-8 without U+0000 (Postgres text refuses it): what is hashed is then exactly what is stored. */
export function storableText(s: string): string {
  if (s.isWellFormed() && !s.includes("\u0000")) return s;
  return s.toWellFormed().replaceAll("\u0000", "\uFFFD");
}
