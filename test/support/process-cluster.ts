import { randomBytes } from "node:crypto";
import type { Scope } from "../../src/auth/principal.js";
import { mintHs256Token } from "../../src/auth/token-issuer.js";
import { KeyService } from "../../src/api/gen/secrets/v1/keys_pb.js";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { createTestClient, secretsClient, type TestClient } from "./grpc-client.js";
import { startServerProcess, type ServerProcess } from "./server-process.js";

/** A master key entry `id:base64` for tests. */
export function masterKey(id: string): string {
  return `${id}:${randomBytes(32).toString("base64")}`;
}

/** A server process in production mode with its clients, started from the build. */
export interface Replica {
  process: ServerProcess;
  secrets: TestClient<typeof SecretService>;
  keys: TestClient<typeof KeyService>;
  replicaId: string;
  stop(signal?: NodeJS.Signals): Promise<number | string>;
}

/** Servers sharing one database and one JWT secret, with tokens for any subject. */
export interface ProcessCluster {
  jwtSecret: string;
  start(keyring: string[], env?: Record<string, string>): Promise<Replica>;
  token(subject: string, scopes: Scope[]): Promise<string>;
  stopAll(): Promise<void>;
}

export function processCluster(databaseUrl: string): ProcessCluster {
  const jwtSecret = randomBytes(32).toString("base64url");
  const replicas: Replica[] = [];
  return {
    jwtSecret,
    async start(keyring, env = {}) {
      const process = startServerProcess({
        DATABASE_URL: databaseUrl,
        SECRETS_GRPC_ADDR: "127.0.0.1:0",
        SECRETS_MASTER_KEYS: keyring.join(","),
        SECRETS_JWT_SECRET: jwtSecret,
        SECRETS_LOG_LEVEL: "info",
        ...env,
      });
      let match: RegExpMatchArray;
      try {
        match = await process.waitFor(/"port":(\d+)[^\n]*"replicaId":"([^"]+)"[^\n]*"msg":"serving"/);
      } catch (e) {
        // Never leave a server behind that never said it was serving.
        if (process.child.exitCode === null) process.kill("SIGKILL");
        throw e;
      }
      const [, port, replicaId] = match;
      const address = `127.0.0.1:${port}`;
      const replica: Replica = {
        process,
        secrets: secretsClient(address),
        keys: createTestClient(KeyService, address),
        replicaId: replicaId as string,
        async stop(signal = "SIGTERM") {
          replica.secrets.close();
          replica.keys.close();
          if (process.child.exitCode === null) process.kill(signal);
          return process.exited;
        },
      };
      replicas.push(replica);
      return replica;
    },
    token(subject, scopes) {
      return mintHs256Token(new TextEncoder().encode(jwtSecret), { subject, scopes, ttlSeconds: 3_600 });
    },
    async stopAll() {
      await Promise.all(replicas.map((r) => r.stop("SIGKILL")));
    },
  };
}
