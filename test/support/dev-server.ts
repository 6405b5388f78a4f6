import { cpSync, mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { SecretsClient, type SecretsClientOptions } from "@secrets-service/client";
import { ensurePgliteTemplate } from "./pglite-template.js";
import { startServerProcess, type ServerProcess } from "./server-process.js";

/**
 * A new dev-mode data directory whose embedded database starts from the migrated
 * template (an initdb costs several seconds). The caller removes it.
 */
export async function newDevDataDir(): Promise<string> {
  const dataDir = mkdtempSync(join(tmpdir(), "secrets-dev-"));
  cpSync(await ensurePgliteTemplate(), join(dataDir, "pglite"), { recursive: true });
  return dataDir;
}

/**
 * The service as its own process from the build, in dev mode, on a private data
 * directory (newDevDataDir). It can be stopped and started again on the same data
 * directory and port, which is what the SDK's retry tests and the CLI's `token`
 * command need.
 */
export interface DevServer {
  readonly dataDir: string;
  /** `127.0.0.1:<port>`; the same across restarts. */
  readonly address: string;
  readonly port: number;
  /** The developer token the server printed at its first start. */
  readonly token: string;
  /** The running process (replaced by `start`). */
  readonly process: ServerProcess;
  /** An SDK client with the developer token, closed by `dispose`. */
  connectClient(options?: Partial<SecretsClientOptions>): SecretsClient;
  /** SIGTERM, then wait for exit 0. */
  stop(): Promise<void>;
  /** Starts again on the same data directory and port. */
  start(): Promise<void>;
  /** Closes the clients, kills whatever still runs and removes the data directory. */
  dispose(): Promise<void>;
}

export async function startDevServer(): Promise<DevServer> {
  const dataDir = await newDevDataDir();

  const launch = async (port: number): Promise<{ proc: ServerProcess; port: number }> => {
    const proc = startServerProcess({ SECRETS_DATA_DIR: dataDir, SECRETS_GRPC_ADDR: `127.0.0.1:${port}`, SECRETS_LOG_LEVEL: "warn" });
    try {
      const [, printed] = await proc.waitFor(/http:\/\/127\.0\.0\.1:(\d+)\//);
      return { proc, port: Number(printed) };
    } catch (e) {
      proc.kill("SIGKILL");
      // The service logs start-up failures as JSON on stdout.
      throw new Error(`${(e as Error).message}\nstdout: ${proc.stdout().slice(-2000)}`);
    }
  };

  let first: { proc: ServerProcess; port: number };
  try {
    first = await launch(0);
  } catch (e) {
    rmSync(dataDir, { recursive: true, force: true });
    throw e;
  }
  let { proc } = first;
  const { port } = first;
  const token = proc.stdout().match(/Bearer ([A-Za-z0-9._-]+)/)?.[1];
  if (!token) throw new Error("dev server printed no token");
  const address = `127.0.0.1:${port}`;
  const clients: SecretsClient[] = [];

  return {
    dataDir,
    address,
    port,
    token,
    get process() {
      return proc;
    },
    connectClient(options = {}) {
      const client = new SecretsClient({ address, token, ...options });
      clients.push(client);
      return client;
    },
    async stop() {
      proc.kill("SIGTERM");
      const code = await proc.exited;
      if (code !== 0) throw new Error(`dev server exited with ${code}: ${proc.stderr().slice(-1000)}`);
    },
    async start() {
      ({ proc } = await launch(port));
    },
    async dispose() {
      for (const c of clients.splice(0)) c.close();
      if (proc.child.exitCode === null && proc.child.signalCode === null) {
        proc.kill("SIGCONT");
        proc.kill("SIGKILL");
        await proc.exited;
      }
      rmSync(dataDir, { recursive: true, force: true });
    },
  };
}
