import { hash } from "node:crypto";
import { bufferFields, isAscii, latin1Fields } from "../lib/length-prefixed.js";
import { copyTextField } from "../store/db.js";
import {
  encodeChainedFields,
  encodeCompactFields,
  type CompactFields,
  type StoredAuditEvent,
  type StoredCompactFields,
} from "../store/audit-store.js";
import { NAMED, actionCode, actionName, outcomeCode, outcomeName } from "./audit-codes.js";

/**
 * The per-writer hash chain of the audit trail, shared by the writer (audit-log.ts)
 * and the verifier (audit/audit-verify.ts): both must encode an event identically,
 * so the encodings live here and nowhere else. A writer (one process) writes one
 * format; the verifier knows both. Changing an encoding breaks every stored chain:
 * add a format and teach the verifier, never edit one in place.
 *
 * Format 2, written now: hash = hex SHA-256 of the UTF-8 of one line of Postgres
 * COPY text, tab-separated, text fields escaped as COPY reads them (`\` → `\\`,
 * tab → `\t`, newline → `\n`, carriage return → `\r`):
 *   FORMAT_2, prevHash, time (ISO 8601 UTC at the millisecond, as Date.toISOString
 *   writes it), developer id, caller subject, caller token id, caller identity,
 *   action, secret name, version, outcome, request id, peer, writer id, writer sequence
 * with numbers in decimal. From the time on, that is exactly the start of the line
 * the writer sends to COPY (store/audit-store.ts, encodeChainedFields), so an event
 * is encoded once, not once for the table and again for the chain. No field's text
 * can hold a bare tab, so no two events (and no shifting of text between fields)
 * encode alike.
 *
 * Format 3, written now (compact events, table audit_log): hex SHA-256 of the UTF-8
 * of FORMAT_3, prevHash, writer id (COPY-escaped) and the compact fields exactly as
 * encodeCompactFields writes them (time, writer sequence, version,
 * action code, outcome code, request id as uuid or `\N`, caller token id as uuid or
 * `\N`, developer id, caller subject or `\N`, caller token id as text or `\N`,
 * caller identity, secret name, request id as text or `\N`, peer, action name or
 * `\N`, outcome name or `\N`), tab-separated: migration 13's row as COPY text. The
 * writer's number in the table is not hashed (the database gives it); its id is.
 * Likewise the developer: since migration 14 a row stores the developer's number
 * (audit_developers names it), and the hash still covers the developer id, so a
 * chain verifies across both row forms and the format stays 3. A writer's chain is cut into segments, one per
 * partition: a segment's first event stores prevHash (the previous segment's last
 * hash), so the chain can be joined again after an older segment is dropped.
 *
 * Format 2, written before the compact format, is what the paragraph above says of
 * audit_events_v1's rows.
 *
 * Format 1, written before: hex SHA-256 of the length-prefixed parts FORMAT_1,
 * prevHash, time (integer ms since the epoch), then the same fields in the same
 * order, each part its UTF-8 byte length as a 4-byte big-endian integer followed by
 * its bytes (lib/length-prefixed.ts).
 */

/** The `prev_hash` of a writer's first event (sequence 1). */
export const GENESIS_HASH = "0".repeat(64);

/** Name the encodings; each is hashed first so that no format can collide with another. */
const FORMAT_1 = "secrets.v1/audit-event/1";
const FORMAT_2 = "secrets.v1/audit-event/2";
const FORMAT_3 = "secrets.v1/audit-event/3";

export type { StoredAuditEvent };

/**
 * The format-2 hash of an event chained to `prevHash`, given the event's chained
 * fields as `encodeChainedFields` writes them (the writer has that text already).
 */
export function chainHash(prevHash: string, chainedFields: string): string {
  return hash("sha256", `${FORMAT_2}\t${copyTextField(prevHash)}\t${chainedFields}`, "hex");
}

/**
 * The format-3 hash of a compact event chained to `prevHash`, given its fields as
 * `encodeCompactFields` writes them and the writer's id as stored.
 */
export function chainHash3(prevHash: string, writerId: string, compactFields: string): string {
  return hash("sha256", `${FORMAT_3}\t${prevHash}\t${copyTextField(writerId)}\t${compactFields}`, "hex");
}

/**
 * The format-3 hash of a stored compact event, for the verifier; undefined for an
 * event that does not read back whole (storedFieldsOf): it was altered.
 */
export function chainHash3Of(prevHash: string, writerId: string, e: StoredCompactFields): string | undefined {
  const fields = storedFieldsOf(e);
  return fields === undefined ? undefined : chainHash3(prevHash, writerId, encodeCompactFields(fields, fields.developerId));
}

/**
 * A compact event's fields as read back, whole; undefined if its developer or name
 * number names nothing (the row was altered).
 */
export function storedFieldsOf(e: StoredCompactFields): CompactFields | undefined {
  const { developerId, secretName } = e;
  return developerId === null || secretName === null ? undefined : { ...e, developerId, secretName };
}

/** An event in its compact stored form: codes for action and outcome, no repeated subject. */
export function compactOf(e: StoredAuditEvent): CompactFields {
  const action = actionCode(e.action);
  const outcome = outcomeCode(e.outcome);
  const requestUuid = isUuid(e.requestId);
  const tokenUuid = isUuid(e.callerTokenId);
  return {
    time: e.time,
    writerSequence: e.writerSequence,
    version: e.version,
    action,
    outcome,
    requestUuid: requestUuid ? e.requestId : null,
    callerTokenUuid: tokenUuid ? e.callerTokenId : null,
    developerId: e.developerId,
    callerSubject: e.callerSubject === e.developerId ? null : e.callerSubject,
    callerTokenId: tokenUuid ? null : e.callerTokenId,
    callerIdentity: e.callerIdentity,
    secretName: e.secretName,
    requestId: requestUuid ? null : e.requestId,
    peer: e.peer,
    actionName: action === NAMED ? e.action : null,
    outcomeName: outcome === NAMED ? e.outcome : null,
  };
}

/**
 * A stored compact event in full again, the inverse of compactOf (so that
 * compactOf(storedOf(e)) encodes as e did): for an export of stored events in the
 * sink's line format. Throws on a code this release does not know, which a stored
 * event cannot carry.
 */
export function storedOf(e: CompactFields, writerId: string): StoredAuditEvent {
  const action = e.actionName ?? actionName(e.action);
  const outcome = e.outcomeName ?? outcomeName(e.outcome);
  if (action === undefined || outcome === undefined) throw new Error(`audit event ${e.writerSequence} of ${writerId} has an unknown code`);
  return {
    time: e.time,
    developerId: e.developerId,
    callerSubject: e.callerSubject ?? e.developerId,
    callerTokenId: e.callerTokenId ?? e.callerTokenUuid ?? "",
    callerIdentity: e.callerIdentity,
    action,
    secretName: e.secretName,
    version: e.version,
    outcome,
    requestId: e.requestId ?? e.requestUuid ?? "",
    peer: e.peer,
    writerId,
    writerSequence: e.writerSequence,
  };
}

/** A UUID as Postgres prints one (lower case, hyphenated): stored as uuid, it reads back as the same text. */
const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/;
const isUuid = (s: string) => s.length === 36 && UUID.test(s);

/** The format-2 hash of a stored event, for the verifier. */
export function chainHashOf(prevHash: string, e: StoredAuditEvent): string {
  return chainHash(prevHash, encodeChainedFields(e));
}

/** The format-1 hash of event `e` chained to `prevHash` (see the module comment): chains written before format 2. */
export function chainHashV1(prevHash: string, e: StoredAuditEvent): string {
  const parts = [
    FORMAT_1,
    prevHash,
    String(e.time.getTime()),
    e.developerId,
    e.callerSubject,
    e.callerTokenId,
    e.callerIdentity,
    e.action,
    e.secretName,
    String(e.version),
    e.outcome,
    e.requestId,
    e.peer,
    e.writerId,
    String(e.writerSequence),
  ];
  return hash("sha256", encodeV1(parts), "hex");
}

/**
 * The length-prefixed parts of format 1, as bytes or, when every byte is ASCII, as the string of those
 * characters, whose UTF-8 (what `hash` takes of a string) is exactly those bytes. A lone surrogate is encoded
 * as U+FFFD, as format 1 always encoded it (no subject for `bufferFields`).
 */
function encodeV1(parts: readonly string[]): string | Buffer {
  const latin1 = latin1Fields(parts, "audit format 1");
  if (latin1 === undefined) return bufferFields(parts, undefined);
  // ASCII parts with a length of 128 or more: a prefix byte past ASCII, so the Latin-1 string's bytes.
  return isAscii(latin1) ? latin1 : Buffer.from(latin1, "latin1");
}
