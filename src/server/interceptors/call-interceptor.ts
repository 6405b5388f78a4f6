import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { Principal } from "../../auth/principal.js";
import type { TokenVerifier } from "../../auth/token-verifier.js";
import type { CallObserver } from "../../observability/metrics.js";
import { AppError } from "../../api/errors.js";
import { toStatus } from "../status.js";
import { clientIdentity } from "../tls.js";
import { auditUnavailable, createAuditStep, type AuditedMethod, type AuditStepDeps } from "./audit-step.js";
import { createBearerAuth } from "./bearer-auth.js";
import { createCallLog, type CallLogPolicy } from "./call-log.js";
import { bindCallState, newCallState, type CallState } from "./call-state.js";
import { withOperatorRule } from "./operator-rule.js";

/**
 * The server interceptor every call passes through, before its handler runs. It
 * composes the steps of this folder, in this order:
 * 1. call-state: a request id and start time for the call, readable by its handler;
 * 2. bearer-auth: a call to a protected service needs a valid bearer token (without
 *    one it is answered UNAUTHENTICATED and its handler never runs);
 * 3. operator-rule: with mTLS on, the operator scope counts only from listed clients;
 * 4. audit-step: one audit event per authenticated call to an audited method, queued
 *    before the call's result leaves (else UNAVAILABLE / AUDIT_UNAVAILABLE), and with
 *    the audit log closed (or, for a strict call, a sink known down) such a call is
 *    refused before it runs;
 * 5. call-log: one log line and one metrics observation per call, when its status is sent or
 *    the client cancels it.
 * The steps are built once, with the interceptor; a call allocates its state and the
 * grpc-js listener and responder, nothing per step.
 */

export interface CallInterceptorDeps {
  verifier: TokenVerifier;
  log: Logger;
  /** Path prefixes (`/package.Service/`) whose calls need a bearer token. */
  protectedPrefixes: readonly string[];
  onCallEnd?: CallObserver;
  /**
   * With mTLS on: the client identities whose tokens may use secrets:operator
   * (SECRETS_OPERATOR_IDENTITIES). A token's operator scope from any other client
   * is dropped for the call. Undefined when mTLS is off.
   */
  operatorIdentities?: ReadonlySet<string>;
  /** Records one audit event per authenticated call to a method of the policy. */
  audit?: AuditStepDeps;
  /** Which calls get a log line (default all). */
  logCalls?: CallLogPolicy;
}

/** What the interceptor does for calls to one method, worked out at its first call. */
interface MethodPlan {
  readonly needsToken: boolean;
  readonly audited: AuditedMethod | undefined;
}

export function createCallInterceptor(deps: CallInterceptorDeps): grpc.ServerInterceptor {
  const { log } = deps;
  const authenticate = createBearerAuth(deps.verifier);
  const finish = createCallLog(log, deps.onCallEnd, deps.logCalls);
  const audit = deps.audit && createAuditStep(deps.audit, log, finish);
  // One entry per method path: grpc-js runs interceptors only for registered methods.
  const plans = new Map<string, MethodPlan>();

  function planOf(path: string): MethodPlan {
    let plan = plans.get(path);
    if (plan === undefined) {
      plan = { needsToken: deps.protectedPrefixes.some((p) => path.startsWith(p)), audited: audit?.methodOf(path) };
      plans.set(path, plan);
    }
    return plan;
  }

  /** An authenticated call goes on to its handler, unless its audit event could not be recorded. */
  function admit(
    call: grpc.ServerInterceptingCallInterface,
    state: CallState,
    plan: MethodPlan,
    principal: Principal,
    metadata: grpc.Metadata,
    nextMetadata: (metadata: grpc.Metadata) => void,
  ): void {
    state.principal = withOperatorRule(principal, state.identity, deps.operatorIdentities);
    // A log that refuses every event would refuse this call's too, after its handler
    // ran: a write would be made and go unaudited. Refuse it before. So too a strict
    // call while a sink is known down: its commit could not come before the sink is back.
    if (plan.audited !== undefined && audit?.refusesNow(plan.audited) === true) {
      const status = auditUnavailable(state.requestId);
      return call.sendStatus({ ...status, metadata: finish(call, state, status) });
    }
    // Handlers read the principal, never the token: it does not stay with the call,
    // which for a watch may last hours.
    metadata.remove("authorization");
    nextMetadata(metadata);
  }

  /**
   * A call refused authentication. Its status goes straight to the transport (the
   * call never reaches a handler), so it is finished here: it too leaves its log line
   * and metric.
   */
  function refuse(call: grpc.ServerInterceptingCallInterface, state: CallState, error: unknown): void {
    if (error instanceof AppError) state.logFields = error.logFields;
    else log.error({ err: error, requestId: state.requestId }, "authentication failed unexpectedly");
    const status = toStatus(error, state.requestId);
    call.sendStatus({ ...status, metadata: finish(call, state, status) });
  }

  return (methodDescriptor, call) => {
    const plan = planOf(methodDescriptor.path);
    const state = newCallState(methodDescriptor.path);
    return new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, nextMetadata) {
            bindCallState(metadata, state);
            state.identity = clientIdentity(call.getAuthContext().sslPeerCertificate);
            if (!plan.needsToken) return nextMetadata(metadata);
            let principal: Principal | Promise<Principal>;
            try {
              principal = authenticate(metadata);
            } catch (error) {
              return refuse(call, state, error);
            }
            // A token verified before goes through at once; only a new one waits for verification.
            if (!(principal instanceof Promise)) return admit(call, state, plan, principal, metadata, nextMetadata);
            principal.then(
              (p) => admit(call, state, plan, p, metadata, nextMetadata),
              (error: unknown) => refuse(call, state, error),
            );
          },
          // Kept for the audit step, which applies the audit policy to the decoded request.
          onReceiveMessage(message, nextMessage) {
            state.request = message;
            nextMessage(message);
          },
          // A call the client cancels (a watch it closes, a deadline) sends no status:
          // it gets its log line and metric here, as CANCELLED.
          onCancel() {
            if (!state.finished) finish(call, state, { code: grpc.status.CANCELLED });
          },
        });
      },
      sendMessage(message, next) {
        if (plan.audited === undefined || audit === undefined) return next(message);
        audit.sendMessage(call, state, plan.audited, message, next);
      },
      sendStatus(status, next) {
        if (plan.audited === undefined || audit === undefined) return next({ ...status, metadata: finish(call, state, status) });
        audit.sendStatus(call, state, plan.audited, status, next);
      },
    });
  };
}
