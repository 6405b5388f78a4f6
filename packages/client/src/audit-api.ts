import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { AuditService, type AuditEvent as ProtoAuditEvent } from "./gen/secrets/v1/audit_pb.js";
import type { CallOptions } from "./types.js";
import { countOf, dateOf } from "./convert.js";
import { pages, type UnaryCall } from "./unary-call.js";

/**
 * `secrets.v1.AuditService` as an async iterable: `client.audit.list`. Scope
 * `secrets:read` for one's own trail, `secrets:operator` for another developer's
 * (`developerId`). Listing only reads, so each page is retried on UNAVAILABLE.
 */

/** One audit event: who did what to which secret, and how it ended. Never a value. */
export interface AuditEvent {
  /** Increasing across the table. */
  readonly id: number;
  readonly time: Date;
  /** The developer whose secrets or keys the call touched. */
  readonly developerId: string;
  /** The caller's token `sub` and `jti`, and its mTLS identity if any. */
  readonly callerSubject: string;
  readonly callerTokenId: string;
  readonly callerIdentity: string;
  /** The RPC name, e.g. "AccessSecret". */
  readonly action: string;
  readonly secretName: string;
  readonly version: number;
  /** "OK" or a gRPC status name. */
  readonly outcome: string;
  readonly requestId: string;
  readonly peer: string;
  /** The writer (replica) that recorded it, its place in that writer's chain, and the chained hash. */
  readonly writerId: string;
  readonly writerSequence: number;
  readonly hash: string;
}

/** What `list` filters on; every field is optional. */
export interface ListAuditEventsOptions {
  /** Another developer's trail (operator); default the caller's. */
  developerId?: string;
  /** Only events about this secret name. */
  secretName?: string;
  /** Only this action (the RPC name, e.g. "AccessSecret"). */
  action?: string;
  /** Only this outcome: "OK" or a status name such as "NOT_FOUND". */
  outcome?: string;
  /** Only events at or after this time. */
  startTime?: Date;
  /** Only events before this time. */
  endTime?: Date;
  /** Events fetched per call (the server's default is 50, its maximum 500). */
  pageSize?: number;
}

/** The calls of AuditService. */
export interface AuditApi {
  /** Matching events, newest first, fetching page after page as the iteration goes. */
  list(filter?: ListAuditEventsOptions, options?: CallOptions): AsyncIterable<AuditEvent>;
}

/** AuditService over `call`. */
export function createAuditApi(call: UnaryCall): AuditApi {
  const m = AuditService.method;
  return {
    list(filter = {}, options) {
      return pages(async (pageToken) => {
        const r = await call(
          m.listAuditEvents,
          {
            pageToken,
            pageSize: filter.pageSize ?? 0,
            developerId: filter.developerId ?? "",
            secretName: filter.secretName ?? "",
            action: filter.action ?? "",
            outcome: filter.outcome ?? "",
            startTime: filter.startTime ? timestampFromDate(filter.startTime) : undefined,
            endTime: filter.endTime ? timestampFromDate(filter.endTime) : undefined,
          },
          true,
          options,
        );
        return { items: r.events.map(eventOf), next: r.nextPageToken };
      });
    },
  };
}

function eventOf(e: ProtoAuditEvent): AuditEvent {
  return {
    id: countOf(e.id),
    time: dateOf(e.time),
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
    writerSequence: countOf(e.writerSequence),
    hash: e.hash,
  };
}
