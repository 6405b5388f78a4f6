import * as grpc from "@grpc/grpc-js";
import type { Logger } from "pino";
import type { CallObserver } from "../../observability/metrics.js";
import { peerOf, type CallState } from "./call-state.js";

/**
 * What every finished call gets, whichever way its status leaves (its handler, a
 * refused token, a refused audit event): the x-request-id trailer, one metrics
 * observation and one log line. Returns the trailers to send with the status.
 */
export type FinishCall = (
  call: { getPeer(): string },
  state: CallState,
  status: { code: grpc.status; metadata?: grpc.Metadata | null | undefined },
) => grpc.Metadata;

/** Which calls get a log line (SECRETS_LOG_CALLS); a call that fails always does. */
export type CallLogPolicy = { kind: "all" } | { kind: "errors" } | { kind: "sample"; every: number };

export function createCallLog(log: Logger, onCallEnd: CallObserver | undefined, policy: CallLogPolicy = { kind: "all" }): FinishCall {
  // The per-call line has a fixed set of fields built here (method, code, duration,
  // developer, request id, peer, identity, a rejected name's length and hash): it can
  // hold no value, so it skips the redaction pass, a measurable share of a call's CPU.
  const callLog = log.child({}, { redact: { paths: [] } });
  let okCalls = 0;
  /** Whether a call that ended OK gets its line. */
  const logsOk =
    policy.kind === "all" ? () => true : policy.kind === "errors" ? () => false : () => (okCalls = (okCalls + 1) % policy.every) === 0;
  return (call, state, status) => {
    state.finished = true;
    const metadata = status.metadata ?? new grpc.Metadata();
    metadata.set("x-request-id", state.requestId);
    const durationMs = Number(process.hrtime.bigint() - state.startedAt) / 1e6;
    onCallEnd?.(state.method, grpc.status[status.code], durationMs / 1000);
    if (status.code === grpc.status.OK && !logsOk()) return metadata;
    const line = {
      method: state.method,
      code: grpc.status[status.code],
      durationMs: Math.round(durationMs * 1000) / 1000,
      developer: state.principal?.developerId,
      requestId: state.requestId,
      peer: peerOf(state, call),
      identity: state.identity,
      ...state.logFields,
    };
    if (status.code === grpc.status.INTERNAL || status.code === grpc.status.UNKNOWN) callLog.error(line, "call failed");
    else callLog.info(line, "call");
    return metadata;
  };
}
