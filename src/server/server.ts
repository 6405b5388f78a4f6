import * as grpc from "@grpc/grpc-js";
import type { DescMethod } from "@bufbuild/protobuf";
import type { Logger } from "pino";
import type { TokenVerifier } from "../auth/token-verifier.js";
import type { CallObserver } from "../observability/metrics.js";
import { file_google_rpc_error_details } from "../api/gen/google/rpc/error_details_pb.js";
import { file_google_rpc_status } from "../api/gen/google/rpc/status_pb.js";
import { file_grpc_health_v1_health, Health } from "../api/gen/grpc/health/v1/health_pb.js";
import { AuditService as AuditServiceDesc, file_secrets_v1_audit } from "../api/gen/secrets/v1/audit_pb.js";
import { file_secrets_v1_keys, KeyService as KeyServiceDesc } from "../api/gen/secrets/v1/keys_pb.js";
import { file_secrets_v1_secrets, SecretService as SecretServiceDesc } from "../api/gen/secrets/v1/secrets_pb.js";
import type { AuditLog } from "../audit/audit-log.js";
import { auditPolicy } from "../audit/audit-policy.js";
import type { AuditService } from "../audit/audit-service.js";
import type { KeyLifecycle } from "../keys/key-lifecycle.js";
import { auditHandlers } from "./handlers/audit-handlers.js";
import { AppError } from "../api/errors.js";
import type { SecretService } from "../secrets/secret-service.js";
import { createCallInterceptor } from "./interceptors/call-interceptor.js";
import { callStateOf } from "./interceptors/call-state.js";
import { serviceDefinition, serviceHandlers, type CallContext } from "./grpc-adapter.js";
import { createHealthStatus, ServingStatus, type HealthStatus } from "./health.js";
import { addReflection } from "./reflection.js";
import { keyHandlers } from "./handlers/key-handlers.js";
import { secretHandlers } from "./handlers/secret-handlers.js";
import { toStatus } from "./status.js";
import type { CallLogPolicy } from "./interceptors/call-log.js";

/** gRPC messages up to 8 MiB each way (docs/configuration.md, Limits). */
export const MAX_MESSAGE_BYTES = 8 * 1024 * 1024;

export interface GrpcServerDeps {
  secrets: SecretService;
  keys: KeyLifecycle;
  auditService: AuditService;
  auditLog: AuditLog;
  /** SECRETS_AUDIT_STRICT: value reads answer only once their audit event is committed. */
  auditStrict: boolean;
  verifier: TokenVerifier;
  log: Logger;
  credentials?: grpc.ServerCredentials;
  /** Set when mTLS is on (SECRETS_TLS_CLIENT_CA): who may use the operator scope. */
  operatorIdentities?: ReadonlySet<string>;
  onCallEnd?: CallObserver;
  /** Which calls get a log line (SECRETS_LOG_CALLS; default all). */
  logCalls?: CallLogPolicy;
}

/** The running transport: the grpc-js server, its health, and a graceful stop. */
export interface GrpcServer {
  readonly port: number;
  readonly health: HealthStatus;
  /** Health NOT_SERVING, stop accepting, let in-flight calls finish, force after `graceMs`. */
  shutdown(graceMs: number): Promise<void>;
}

/** Builds the grpc-js server with every service, reflection and health, and binds `address`. */
export async function startGrpcServer(address: string, deps: GrpcServerDeps): Promise<GrpcServer> {
  const { log } = deps;
  const server = new grpc.Server({
    "grpc.max_receive_message_length": MAX_MESSAGE_BYTES,
    "grpc.max_send_message_length": MAX_MESSAGE_BYTES,
    // An HTTP/2 ping every minute on every connection: a client that vanished without
    // closing (a killed pod, a dropped network) loses its connection, and its watches
    // close, within 80 s.
    "grpc.keepalive_time_ms": 60_000,
    "grpc.keepalive_timeout_ms": 20_000,
    interceptors: [
      createCallInterceptor({
        verifier: deps.verifier,
        log,
        protectedPrefixes: [`/${SecretServiceDesc.typeName}/`, `/${KeyServiceDesc.typeName}/`, `/${AuditServiceDesc.typeName}/`],
        ...(deps.operatorIdentities ? { operatorIdentities: deps.operatorIdentities } : {}),
        audit: { log: deps.auditLog, policy: auditPolicy, strict: deps.auditStrict },
        ...(deps.onCallEnd ? { onCallEnd: deps.onCallEnd } : {}),
        ...(deps.logCalls ? { logCalls: deps.logCalls } : {}),
      }),
    ],
  });

  const errorStatus = (error: unknown, ctx: CallContext, method: DescMethod) => {
    const state = callStateOf(ctx.metadata);
    const { requestId } = state;
    if (error instanceof AppError) state.logFields = error.logFields;
    if (!(error instanceof AppError) || error.kind === "internal") {
      const event = error instanceof AppError && error.reason === "INTEGRITY_FAILURE" ? "integrity failure" : "internal error";
      log.error({ err: error, requestId, method: method.name }, event);
    }
    return toStatus(error, requestId);
  };

  const health = createHealthStatus([SecretServiceDesc.typeName, KeyServiceDesc.typeName, AuditServiceDesc.typeName]);
  server.addService(serviceDefinition(SecretServiceDesc), serviceHandlers(SecretServiceDesc, secretHandlers(deps.secrets), errorStatus));
  server.addService(serviceDefinition(KeyServiceDesc), serviceHandlers(KeyServiceDesc, keyHandlers(deps.keys), errorStatus));
  server.addService(serviceDefinition(AuditServiceDesc), serviceHandlers(AuditServiceDesc, auditHandlers(deps.auditService), errorStatus));
  server.addService(serviceDefinition(Health), serviceHandlers(Health, health.impl, errorStatus));
  // The error detail types are reflected too, so buf curl / grpcurl decode ErrorInfo.
  addReflection(server, [
    file_secrets_v1_secrets,
    file_secrets_v1_keys,
    file_secrets_v1_audit,
    file_grpc_health_v1_health,
    file_google_rpc_status,
    file_google_rpc_error_details,
  ]);

  const credentials = deps.credentials ?? grpc.ServerCredentials.createInsecure();
  const port = await new Promise<number>((resolve, reject) =>
    server.bindAsync(address, credentials, (err, p) => (err ? reject(err) : resolve(p))),
  );

  return {
    port,
    health,
    async shutdown(graceMs) {
      health.setAll(ServingStatus.NOT_SERVING);
      health.close();
      await new Promise<void>((resolve) => {
        const force = setTimeout(() => {
          log.warn({ graceMs }, "in-flight calls did not finish in time; forcing shutdown");
          server.forceShutdown();
          resolve();
        }, graceMs);
        force.unref();
        server.tryShutdown(() => {
          clearTimeout(force);
          resolve();
        });
      });
    },
  };
}
