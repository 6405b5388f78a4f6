import { timestampDate, timestampFromDate } from "@bufbuild/protobuf/wkt";
import type { MessageInitShape } from "@bufbuild/protobuf";
import { AuditService as AuditServiceDesc, type AuditEventSchema } from "../../api/gen/secrets/v1/audit_pb.js";
import type { AuditEvent, AuditService } from "../../audit/audit-service.js";
import { principalOf } from "../interceptors/call-state.js";
import type { ServiceImpl } from "../grpc-adapter.js";

/**
 * AuditService handlers: translate proto ↔ domain and nothing more. Authorization,
 * validation and storage live in the use case; errors are mapped by status.ts.
 */
export function auditHandlers(service: AuditService): ServiceImpl<typeof AuditServiceDesc> {
  return {
    async listAuditEvents(req, ctx) {
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
