import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import { AppError } from "../../api/errors.js";
import { auditSecretName, type AuditEventInput } from "../../audit/audit-event.js";
import type { AuditLog } from "../../audit/audit-log.js";
import { NO_SUBJECT, type AuditPolicy, type AuditRule } from "../../audit/audit-policy.js";
import { isMalformed } from "../grpc-adapter.js";
import { toStatus } from "../status.js";
import type { FinishCall } from "./call-log.js";
import { peerOf, type CallState } from "./call-state.js";

/**
 * The audit step of the call interceptor (docs/design.md, Audit trail): one event per
 * authenticated call to a method the audit policy names, queued before the call's
 * result leaves. What the event is about comes from the policy, applied to the decoded
 * request; a request that did not decode is recorded with no subject. A call whose
 * event cannot be queued (or, for a strict method, committed) is answered UNAVAILABLE
 * / AUDIT_UNAVAILABLE: never answered unaudited. A strict method's call while the
 * database or a sink is known down is refused that way before it runs
 * (call-interceptor.ts), at once, rather than left waiting until its deadline.
 *
 * Audited services are unary: a response message means the call succeeded, and its
 * event is queued before the message leaves. A call that ends without one (an error)
 * queues its event when its status is sent.
 */

export interface AuditStepDeps {
  log: AuditLog;
  /** What each audited method records; a method not in it is not audited. */
  policy: AuditPolicy;
  /** SECRETS_AUDIT_STRICT: methods that return values answer only once their event is committed. */
  strict: boolean;
}

/** How one method is audited, fixed at its first call. */
export interface AuditedMethod {
  readonly rule: AuditRule;
  /** Its response waits for the commit of its event. */
  readonly durable: boolean;
}

/** A status as grpc-js passes it through interceptors (code, and details and metadata when set). */
export type CallStatus = Parameters<grpc.ServerInterceptingCallInterface["sendStatus"]>[0];
type SendMessage = (message: unknown) => void;
type SendStatus = (status: CallStatus) => void;

export interface AuditStep {
  /** How calls to `path` are audited; undefined when they are not. */
  methodOf(path: string): AuditedMethod | undefined;
  /**
   * A call to `method` that would be refused for want of its audit now: the log is
   * closed, or the method is strict and a sink is known down. Refused before it runs.
   */
  refusesNow(method: AuditedMethod): boolean;
  /** A response message of an audited call: sent once its event is queued, or replaced by AUDIT_UNAVAILABLE. */
  sendMessage(call: grpc.ServerInterceptingCallInterface, state: CallState, method: AuditedMethod, message: unknown, next: SendMessage): void;
  /** The status of an audited call: sent once its event (if not yet queued) is, or replaced by AUDIT_UNAVAILABLE. */
  sendStatus(call: grpc.ServerInterceptingCallInterface, state: CallState, method: AuditedMethod, status: CallStatus, next: SendStatus): void;
}

export function createAuditStep(deps: AuditStepDeps, log: Logger, finish: FinishCall): AuditStep {
  const audit = deps.log;

  /** The event of a call ending with `outcome`; undefined for an unauthenticated call (the log line records it). */
  function eventOf(call: grpc.ServerInterceptingCallInterface, state: CallState, rule: AuditRule, outcome: string): AuditEventInput | undefined {
    const p = state.principal;
    if (!p) return undefined;
    const request = state.request;
    const subject = request === undefined || isMalformed(request) ? NO_SUBJECT : rule.subject(request);
    return {
      time: new Date(),
      developerId: subject.developerId ?? p.developerId,
      callerSubject: p.developerId,
      callerTokenId: p.tokenId ?? "",
      callerIdentity: state.identity ?? "",
      action: rule.action,
      secretName: auditSecretName(subject.names),
      version: subject.version,
      outcome,
      requestId: state.requestId,
      peer: peerOf(state, call),
    };
  }

  return {
    methodOf(path) {
      const rule = deps.policy.get(path);
      return rule && { rule, durable: deps.strict && rule.returnsValues };
    },

    refusesNow(method) {
      return audit.closed || (method.durable && audit.down !== undefined);
    },

    sendMessage(call, state, method, message, next) {
      const e = state.audited ? undefined : eventOf(call, state, method.rule, "OK");
      if (!e) return next(message);
      state.audited = true;
      // The message is withheld and the status goes straight to the transport: the
      // handler's own status follows only the message, so it is never sent.
      const withhold = (error: unknown, what: string) => {
        log.error({ err: error, requestId: state.requestId, method: state.method }, `audit event could not be ${what}; response withheld`);
        const status = auditUnavailable(state.requestId);
        call.sendStatus({ ...status, metadata: finish(call, state, status) });
      };
      if (method.durable) {
        audit.recordDurable(e).then(
          () => next(message),
          (error: unknown) => withhold(error, "committed"),
        );
        return;
      }
      let queued: boolean;
      try {
        // Queued at once when the developer's queue has room: the usual case, with no promise.
        queued = audit.tryRecord(e);
      } catch (error) {
        return withhold(error, "queued");
      }
      if (queued) return next(message);
      // Awaiting the queue applies the audit log's per-developer back-pressure to this call.
      audit.record(e).then(
        () => next(message),
        (error: unknown) => withhold(error, "queued"),
      );
    },

    sendStatus(call, state, method, status, next) {
      const e = state.audited ? undefined : eventOf(call, state, method.rule, grpc.status[status.code]);
      if (!e) return next({ ...status, metadata: finish(call, state, status) });
      state.audited = true;
      const send = () => next({ ...status, metadata: finish(call, state, status) });
      // The call's own status (and its trailers) gives way to AUDIT_UNAVAILABLE; the log
      // keeps its code, never its message or metadata.
      const refuse = (error: unknown) => {
        log.error(
          { err: error, requestId: state.requestId, method: state.method, code: grpc.status[status.code] },
          "audit event could not be queued; status replaced",
        );
        const refused = auditUnavailable(state.requestId);
        next({ ...refused, metadata: finish(call, state, refused) });
      };
      try {
        if (audit.tryRecord(e)) return send();
      } catch (error) {
        return refuse(error);
      }
      audit.record(e).then(send, refuse);
    },
  };
}

/** The status of a call whose audit event could not be queued or committed, or whose audit log is closed. */
export function auditUnavailable(requestId: string): grpc.StatusObject {
  return toStatus(new AppError("AUDIT_UNAVAILABLE", "the call's audit event could not be recorded; its result is withheld"), requestId);
}
