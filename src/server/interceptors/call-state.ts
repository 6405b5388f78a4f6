import { randomUUID } from "node:crypto";
import type * as grpc from "@grpc/grpc-js";
import type { Principal } from "../../auth/principal.js";

/**
 * What the call interceptor learns about a call, from its request id on, and how a
 * handler reads it: by the call's request Metadata object, which grpc-js hands from
 * the interceptor to the handler unchanged. Nothing a client sends can set or reach
 * an entry.
 */

/** What the interceptor learned about a call, read by handlers through `callStateOf`. */
export interface CallState {
  /** A fresh UUID per call: in the x-request-id trailer, the log line, the status details and the audit event. */
  readonly requestId: string;
  /** The full gRPC path, `/package.Service/Method`. */
  readonly method: string;
  readonly startedAt: bigint;
  principal: Principal | undefined;
  /** Extra safe fields for this call's log line (AppError.logFields). */
  logFields: Readonly<Record<string, unknown>> | undefined;
  /** The decoded request message (the adapter's malformed marker when it did not decode); undefined until it arrives. */
  request: unknown;
  /** Set once the call's audit event has been handed to the audit log (queued, or refused and the call ended). */
  audited: boolean;
  /** The mTLS client identity, when the call came over mutual TLS. */
  identity: string | undefined;
  /** The peer address, read from the call once when first needed. */
  peer: string | undefined;
  /** Set once the call has its log line and metric (by its status, or by a cancellation). */
  finished: boolean;
}

const states = new WeakMap<grpc.Metadata, CallState>();

/** The state of a new call to `method`: its request id and start time. */
export function newCallState(method: string): CallState {
  return {
    requestId: randomUUID(),
    method,
    startedAt: process.hrtime.bigint(),
    principal: undefined,
    logFields: undefined,
    request: undefined,
    audited: false,
    identity: undefined,
    peer: undefined,
    finished: false,
  };
}

/** Makes `state` the state of the call whose request metadata this is. */
export function bindCallState(metadata: grpc.Metadata, state: CallState): void {
  states.set(metadata, state);
}

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

/** The call's peer address, asked of grpc-js at most once per call. */
export function peerOf(state: CallState, call: { getPeer(): string }): string {
  return (state.peer ??= call.getPeer());
}
