import { randomUUID } from "node:crypto";
import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { Principal } from "../../auth/principal.js";
import type { TokenVerifier } from "../../auth/token-verifier.js";
import type { CallObserver } from "../../observability/metrics.js";
import { auditSecretName, type AuditEventInput } from "../../audit/audit-event.js";
import type { AuditLog } from "../../audit/audit-log.js";
import { AppError } from "../../api/errors.js";
import { toStatus } from "../status.js";
import { clientIdentity } from "../tls.js";

/**
 * The server interceptor every call passes through, before its handler runs:
 * it gives the call a request id, authenticates the calls of the protected services
 * (a call without a valid bearer token is answered UNAUTHENTICATED and its handler
 * never runs), queues one audit event per authenticated call to an audited service
 * before the call's result leaves (a call whose event cannot be queued is answered
 * UNAVAILABLE, reason AUDIT_UNAVAILABLE), and writes one log line per call when its
 * status is sent.
 */

/** What the interceptor learned about a call, read by handlers through `callStateOf`. */
export interface CallState {
  readonly requestId: string;
  readonly method: string;
  readonly startedAt: bigint;
  principal: Principal | undefined;
  /** Extra safe fields for this call's log line (AppError.logFields). */
  logFields: Readonly<Record<string, unknown>> | undefined;
  /** What the call is about, for its audit event (set by the handler from the request). */
  subject: AuditSubject | undefined;
  /** Set once the call's audit event has been handed to the audit log (queued, or refused and the call ended). */
  audited: boolean;
  /** The mTLS client identity, when the call came over mutual TLS. */
  identity: string | undefined;
}

/** The secret names, version and target developer an audited call is about. */
export interface AuditSubject {
  names: readonly string[];
  version: number;
  /** The developer whose secrets or keys are touched, when not the caller (operator calls). */
  developerId?: string;
}

/** Handlers say what a call is about before doing it, so even a failure is audited with its subject. */
export function noteAuditSubject(metadata: grpc.Metadata, subject: AuditSubject): void {
  callStateOf(metadata).subject = subject;
}

// Keyed by the call's Metadata object, which grpc-js hands from the interceptor to
// the handler unchanged; nothing a client sends can set or reach an entry.
const states = new WeakMap<grpc.Metadata, CallState>();

/** The state of the call whose request metadata this is. */
export function callStateOf(metadata: grpc.Metadata): CallState {
  const state = states.get(metadata);
  if (!state) throw new Error("call did not pass through the call interceptor");
  return state;
}

/** The authenticated principal of a call to a protected service. */
export function principalOf(metadata: grpc.Metadata): Principal {
  const principal = callStateOf(metadata).principal;
  if (!principal) throw new Error("protected handler reached without a principal");
  return principal;
}

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
  /** Records one audit event per authenticated call to these path prefixes. */
  audit?: {
    log: AuditLog;
    auditedPrefixes: readonly string[];
    /** SECRETS_AUDIT_STRICT: these methods (full paths) send their response only once their event is committed. */
    strictPaths: ReadonlySet<string>;
  };
}

const BEARER_PREFIX = "Bearer ";
const BEARER = new RegExp(`^${BEARER_PREFIX}([A-Za-z0-9._~+/=-]+)$`);

export function createCallInterceptor(deps: CallInterceptorDeps): grpc.ServerInterceptor {
  const { verifier, log } = deps;
  // The per-call line has a fixed set of fields built here (method, code, duration,
  // developer, request id, peer, a rejected name's length and hash): it can hold no
  // value, so it skips the redaction pass, which was several percent of a call's CPU.
  const callLog = log.child({}, { redact: { paths: [] } });

  /**
   * The bearer token of a call; throws the AppError its absence or form deserves.
   * A token the verifier already knows needs no check of its form: it passed it
   * before it was verified (`known`), and the pattern is checked only otherwise.
   */
  function bearerToken(metadata: grpc.Metadata): { token: string; known: Principal | undefined } {
    const values = metadata.get("authorization");
    if (values.length === 0) throw new AppError("TOKEN_MISSING", "missing authorization: Bearer token");
    const header = values.length === 1 ? values[0] : undefined;
    if (typeof header === "string" && header.startsWith(BEARER_PREFIX)) {
      const token = header.slice(BEARER_PREFIX.length);
      const known = verifier.verified?.(token);
      if (known !== undefined) return { token, known };
    }
    const match = typeof header === "string" ? BEARER.exec(header) : null;
    if (!match?.[1]) throw new AppError("TOKEN_INVALID", "authorization must be one 'Bearer <token>' header");
    return { token: match[1], known: undefined };
  }

  return (methodDescriptor, call) => {
    const method = methodDescriptor.path;
    const needsToken = deps.protectedPrefixes.some((p) => method.startsWith(p));
    const state: CallState = {
      requestId: randomUUID(),
      method,
      startedAt: process.hrtime.bigint(),
      principal: undefined,
      logFields: undefined,
      subject: undefined,
      audited: false,
      identity: undefined,
    };
    let peer: string | undefined;
    const peerOf = () => (peer ??= call.getPeer());
    const audit = deps.audit && deps.audit.auditedPrefixes.some((p) => method.startsWith(p)) ? deps.audit : undefined;
    /**
     * What every finished call gets, whichever way its status leaves: the request id
     * trailer, a metrics observation and its log line. Returns the trailers to send.
     */
    const finish = (status: { code: grpc.status; metadata?: grpc.Metadata | null | undefined }): grpc.Metadata => {
      const metadata = status.metadata ?? new grpc.Metadata();
      metadata.set("x-request-id", state.requestId);
      const durationMs = Number(process.hrtime.bigint() - state.startedAt) / 1e6;
      deps.onCallEnd?.(method, grpc.status[status.code], durationMs / 1000);
      const line = {
        method,
        code: grpc.status[status.code],
        durationMs: Math.round(durationMs * 1000) / 1000,
        developer: state.principal?.developerId,
        requestId: state.requestId,
        peer: peerOf(),
        identity: state.identity,
        ...state.logFields,
      };
      if (status.code === grpc.status.INTERNAL || status.code === grpc.status.UNKNOWN) callLog.error(line, "call failed");
      else callLog.info(line, "call");
      return metadata;
    };
    const event = (outcome: string): AuditEventInput | undefined => {
      const p = state.principal;
      if (!p) return undefined; // unauthenticated: no developer to attribute, the log line records it
      return {
        time: new Date(),
        developerId: state.subject?.developerId ?? p.developerId,
        callerSubject: p.developerId,
        callerTokenId: p.tokenId ?? "",
        callerIdentity: state.identity ?? "",
        action: method.slice(method.lastIndexOf("/") + 1),
        secretName: auditSecretName(state.subject?.names ?? []),
        version: state.subject?.version ?? 0,
        outcome,
        requestId: state.requestId,
        peer: peerOf(),
      };
    };

    return new grpc.ServerInterceptingCall(call, {
      start(next) {
        next({
          onReceiveMetadata(metadata, nextMetadata) {
            states.set(metadata, state);
            state.identity = clientIdentity(call.getAuthContext().sslPeerCertificate);
            if (!needsToken) return nextMetadata(metadata);
            const admit = (principal: Principal) => {
              state.principal = withOperatorRule(principal, state.identity, deps.operatorIdentities);
              // A log that refuses every event would refuse this call's too, after its
              // handler ran: a write would be made and go unaudited. Refuse it before.
              if (audit?.log.closed === true) {
                const status = auditUnavailable(state.requestId);
                return call.sendStatus({ ...status, metadata: finish(status) });
              }
              nextMetadata(metadata);
            };
            const refuse = (error: unknown) => {
              // Sent straight to the transport (the call never reaches a handler), so
              // it is finished here: a refused token leaves its log line and metric too.
              const status = interceptorStatus(error, state, log);
              call.sendStatus({ ...status, metadata: finish(status) });
            };
            let bearer: { token: string; known: Principal | undefined };
            try {
              bearer = bearerToken(metadata);
            } catch (error) {
              return refuse(error);
            }
            // A token verified before goes through at once; only a new one waits for verification.
            if (bearer.known !== undefined) return admit(bearer.known);
            verifier.verify(bearer.token).then(admit, refuse);
          },
        });
      },
      // Audited services are unary: a response message means the call succeeded, and
      // its event is queued before the message leaves. A call that ends without one
      // (an error) queues its event when its status is sent. Either way, an event that
      // cannot be queued ends the call UNAVAILABLE / AUDIT_UNAVAILABLE: never answered unaudited.
      sendMessage(message, next) {
        const e = audit && !state.audited ? event("OK") : undefined;
        if (!audit || !e) return next(message);
        state.audited = true;
        // The message is withheld and the status goes straight to the transport: the
        // handler's own status follows only the message, so it is never sent.
        const withhold = (error: unknown, what: string) => {
          log.error({ err: error, requestId: state.requestId, method }, `audit event could not be ${what}; response withheld`);
          const status = auditUnavailable(state.requestId);
          call.sendStatus({ ...status, metadata: finish(status) });
        };
        if (audit.strictPaths.has(method)) {
          audit.log.recordDurable(e).then(
            () => next(message),
            (error: unknown) => withhold(error, "committed"),
          );
          return;
        }
        let queued: boolean;
        try {
          // Queued at once when the developer's queue has room: the usual case, with no promise.
          queued = audit.log.tryRecord(e);
        } catch (error) {
          return withhold(error, "queued");
        }
        if (queued) return next(message);
        // Awaiting the queue applies the audit log's per-developer back-pressure to this call.
        audit.log.record(e).then(
          () => next(message),
          (error: unknown) => withhold(error, "queued"),
        );
      },
      sendStatus(status, next) {
        const e = audit && !state.audited ? event(grpc.status[status.code]) : undefined;
        if (!audit || !e) return next({ ...status, metadata: finish(status) });
        state.audited = true;
        const send = () => next({ ...status, metadata: finish(status) });
        // The call's own status (and its trailers) gives way to AUDIT_UNAVAILABLE; the log
        // keeps its code, never its message or metadata.
        const refuse = (error: unknown) => {
          log.error(
            { err: error, requestId: state.requestId, method, code: grpc.status[status.code] },
            "audit event could not be queued; status replaced",
          );
          const refused = auditUnavailable(state.requestId);
          next({ ...refused, metadata: finish(refused) });
        };
        try {
          if (audit.log.tryRecord(e)) return send();
        } catch (error) {
          return refuse(error);
        }
        audit.log.record(e).then(send, refuse);
      },
    });
  };
}

/**
 * With mTLS on, secrets:operator needs both the scope in the token and a client
 * certificate whose identity is listed; otherwise the scope is dropped for this call.
 */
function withOperatorRule(p: Principal, identity: string | undefined, allowed: ReadonlySet<string> | undefined): Principal {
  if (!allowed || !p.scopes.has("secrets:operator")) return p;
  if (identity !== undefined && allowed.has(identity)) return p;
  const scopes = new Set(p.scopes);
  scopes.delete("secrets:operator");
  return { ...p, scopes };
}

/** The status of a call whose audit event could not be queued or committed. */
function auditUnavailable(requestId: string): grpc.StatusObject {
  return toStatus(new AppError("AUDIT_UNAVAILABLE", "the call's audit event could not be recorded; its result is withheld"), requestId);
}

function interceptorStatus(error: unknown, state: CallState, log: Logger): grpc.StatusObject {
  if (error instanceof AppError) state.logFields = error.logFields;
  else log.error({ err: error, requestId: state.requestId }, "authentication failed unexpectedly");
  return toStatus(error, state.requestId);
}
