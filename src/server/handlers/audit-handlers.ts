import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { AuditService as AuditServiceDesc, type AuditEventSchema } from "../../api/gen/secrets/v1/audit_pb.js";
import { SUBJECT_PATTERN } from "../../auth/principal.js";
import type { AuditEvent, AuditService } from "../../audit/audit-service.js";
import { noteAuditSubject, principalOf, type AuditSubject } from "../interceptors/call-interceptor.js";
import type { ServiceImpl } from "../grpc-adapter.js";

/**
 * AuditService handlers: translate proto ↔ domain and nothing more. Authorization,
 * validation and storage live in the use case; errors are mapped by status.ts.
 */
export function auditHandlers(service: AuditService): ServiceImpl<typeof AuditServiceDesc> {
  return {
    async listAuditEvents(req, ctx) {
      noteAuditSubject(ctx.metadata, trailRead(req.developerId, req.secretName));
      const page = await service.listAuditEvents(principalOf(ctx.metadata), {
        developerId: req.developerId,
        secretName: req.secretName,
        action: req.action,
        outcome: req.outcome,
        startTime: req.startTime ? timestampDate(req.startTime) : undefined,
        endTime: req.endTime ? timestampDate(req.endTime) : undefined,
        pageSize: req.pageSize,
        pageToken: req.pageToken,
      });
      return { events: page.items.map(eventMessage), nextPageToken: page.nextPageToken };
    },
  };
}

/**
 * What a ListAuditEvents call is about, for its own audit event: it is recorded in the
 * trail it reads, that of the developer named (as KeyService records an operator's
 * call under its target; a malformed id is not recorded) or else the caller's, with
 * the secret name it filtered on.
 */
function trailRead(developerId: string, secretName: string): AuditSubject {
  return { names: secretName === "" ? [] : [secretName], version: 0, ...(SUBJECT_PATTERN.test(developerId) ? { developerId } : {}) };
}

function eventMessage(e: AuditEvent): MessageInitShape<typeof AuditEventSchema> {
  return {
    id: BigInt(e.id),
    time: timestampFromDate(e.time),
    developerId: e.developerId,
    callerSubject: e.callerSubject,
    callerTokenId: e.callerTokenId,
    callerIdentity: e.callerIdentity,
    action: e.action,
    secretName: e.secretName,
    version: e.version,
    outcome: e.outcome,
    requestId: e.requestId,
    peer: e.peer,
    writerId: e.writerId,
    writerSequence: BigInt(e.writerSequence),
    hash: e.hash,
  };
}
