/**
 * The fixtures end-to-end, fault and client tests start from, behind one import:
 *
 * - a test service: `startTestService(env, options)`, the whole service in this
 *   process on 127.0.0.1:0 over a fresh test database (Postgres when DATABASE_URL
 *   is set, else PGlite), with gRPC clients, tokens and its log;
 * - a replica cluster: `startReplicaCluster({ redis })`, server processes from the
 *   build sharing one Postgres database, one JWT secret and optionally one Redis;
 *   `processCluster(url)` for a database the test runs itself;
 * - a dev server: `startDevServer()`, one dev-mode process it can stop and restart;
 * - a client: `svc.secrets` / `svc.keys` / `svc.audit` (gRPC), `createTestClient`
 *   for other credentials, `svc.connectClient(developer)` and
 *   `dev.connectClient()` for the SDK. Every fixture closes the clients it made
 *   when it stops.
 */
export { startDevServer, newDevDataDir, type DevServer } from "./dev-server.js";
export { CallError, createTestClient, expectCallError, secretsClient, type TestClient } from "./grpc-client.js";
export { NO_RATE_LIMITS } from "./fault-env.js";
export { processCluster, startReplicaCluster, type ProcessCluster, type Replica, type ReplicaCluster } from "./replica-cluster.js";
export { PROJECT_ROOT, startServerProcess, type ServerProcess } from "./server-process.js";
export { taskFixturesDirectory } from "./task-fixtures.js";
export type { TcpProxy } from "./tcp-proxy.js";
export {
  LogCapture,
  masterKey,
  mintToken,
  newJwtSecret,
  startTestService,
  USER_SCOPES,
  type TestService,
  type TestServiceOptions,
} from "./test-service.js";
