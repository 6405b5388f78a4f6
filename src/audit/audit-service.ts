import type { Principal } from "../auth/principal.js";
import { SUBJECT_PATTERN } from "../api/limits.js";
import { AppError, invalid } from "../api/errors.js";
import type { Db } from "../store/db.js";
import * as store from "../store/audit-store.js";
import { requireAllowlisted } from "../auth/authorize.js";
import { pageOf, pageTokenCodec, type Page } from "../secrets/page-token.js";
import { validateName, validatePageSize } from "../secrets/validation.js";
import { auditPolicy, LIFECYCLE_ACTIONS } from "./audit-policy.js";
import { CODED_OUTCOMES } from "./audit-codes.js";

/** An audit event as the API returns it (the stored row without its previous hash). Events never hold a value. */
export type AuditEvent = Omit<store.AuditEventRow, "prevHash">;

export interface AuditListInput {
  /** Empty: the caller. Another developer needs secrets:operator. */
  developerId: string;
  /** Empty: any. */
  secretName: string;
  action: string;
  outcome: string;
  /** [startTime, endTime); undefined leaves that side open. */
  startTime: Date | undefined;
  endTime: Date | undefined;
  pageSize: number;
  pageToken: string;
}

/** The use case behind AuditService. */
export interface AuditService {
  listAuditEvents(p: Principal, input: AuditListInput): Promise<Page<AuditEvent>>;
}

export interface AuditServiceDeps {
  db: Pick<Db, "query">;
}

/** The actions an event can hold, which the `action` filter accepts (or ""): every audited RPC's name, and the lifecycle job's. */
export const AUDIT_ACTIONS: ReadonlySet<string> = new Set([
  ...[...auditPolicy.values()].map((rule) => rule.action),
  ...Object.values(LIFECYCLE_ACTIONS).map((a) => a.action),
]);

/** gRPC status names: the `outcome` filter accepts these or "". */
export const AUDIT_OUTCOMES: ReadonlySet<string> = new Set(CODED_OUTCOMES.keys());

// google.protobuf.Timestamp's range, which Postgres timestamptz also holds.
const MIN_TIME = new Date(0).setUTCFullYear(1, 0, 1);
const MAX_TIME = Date.UTC(9999, 11, 31, 23, 59, 59, 999);

const idTokens = pageTokenCodec((k): k is number => Number.isSafeInteger(k) && (k as number) > 0);

export function createAuditService(deps: AuditServiceDeps): AuditService {
  const { db } = deps;
  return {
    async listAuditEvents(p, input) {
      // Scope first (the order of docs/api.md, Tokens): one's own with read (or operator), anyone else's with operator only.
      const own = input.developerId === "" || input.developerId === p.developerId;
      if (!p.scopes.has("secrets:operator") && !(own && p.scopes.has("secrets:read"))) {
        const scope = own ? "secrets:read" : "secrets:operator";
        throw new AppError("SCOPE_MISSING", `this call needs the ${scope} scope`, { scope });
      }

      if (!own && !SUBJECT_PATTERN.test(input.developerId)) {
        throw invalid("INVALID_ARGUMENT", "developer_id", "developer_id must be a token subject: 1 to 128 of A-Z a-z 0-9 . _ @ : -");
      }
      const developerId = own ? p.developerId : input.developerId;
      const pageSize = validatePageSize(input.pageSize);
      const secretName = input.secretName === "" ? undefined : validateName(input.secretName, "secret_name");
      if (input.action !== "" && !AUDIT_ACTIONS.has(input.action)) {
        throw invalid("INVALID_ARGUMENT", "action", "action must be empty or the name of an RPC of this service, e.g. AccessSecret");
      }
      if (input.outcome !== "" && !AUDIT_OUTCOMES.has(input.outcome)) {
        throw invalid("INVALID_ARGUMENT", "outcome", "outcome must be empty, OK or a gRPC status name such as NOT_FOUND");
      }
      const start = validTime(input.startTime, "start_time");
      const end = validTime(input.endTime, "end_time");
      if (start !== undefined && end !== undefined && end.getTime() < start.getTime()) {
        throw invalid("INVALID_ARGUMENT", "end_time", "end_time must not be before start_time");
      }
      // The token's allowlist limits audit like ListSecrets: only allowlisted names are shown,
      // and filtering on another name is refused whether or not it was ever used.
      if (secretName !== undefined) requireAllowlisted(p, [secretName]);
      const onlyNames = p.allowlist ? [...p.allowlist].sort() : undefined;

      const binding = [
        developerId,
        secretName ?? "",
        input.action,
        input.outcome,
        start === undefined ? "" : String(start.getTime()),
        end === undefined ? "" : String(end.getTime()),
        JSON.stringify(onlyNames ?? null),
      ];
      const beforeId = idTokens.decode(input.pageToken, binding);

      const rows = await store.listAuditEvents(db, {
        developerId,
        beforeId,
        secretName,
        action: input.action === "" ? undefined : input.action,
        outcome: input.outcome === "" ? undefined : input.outcome,
        start,
        end,
        onlyNames,
        limit: pageSize + 1,
      });
      return pageOf(rows, pageSize, toEvent, (r) => r.id, idTokens, binding);
    },
  };
}

function validTime(t: Date | undefined, field: string): Date | undefined {
  if (t === undefined) return undefined;
  const ms = t.getTime();
  if (!Number.isFinite(ms) || ms < MIN_TIME || ms > MAX_TIME) {
    throw invalid("INVALID_ARGUMENT", field, `${field} must lie between the years 1 and 9999`);
  }
  return t;
}

function toEvent(r: store.AuditEventRow): AuditEvent {
  const { prevHash, ...event } = r; // the previous hash is for the verifier, not the API
  void prevHash;
  return event;
}
