import { execFile, execFileSync } from "node:child_process";
import { chownSync, existsSync, mkdtempSync, readdirSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import pg from "pg";
import { freePort } from "./free-port.js";

/**
 * A private PostgreSQL server on a free loopback port, in its own temp directory,
 * for tests that stop and restart Postgres: the machine's shared instance is
 * never touched. Built with `initdb` + `pg_ctl` from /usr/lib/postgresql/<v>/bin
 * (or PG_BIN_DIR); trust authentication on 127.0.0.1 only, no Unix socket outside
 * its directory. initdb refuses to run as root, so as root every command runs as
 * the `postgres` OS user (runuser) on a directory that user owns.
 *
 * Fails (never skips) when the binaries are missing.
 */
export interface PrivatePostgres {
  readonly port: number;
  /** A URL on the maintenance database `postgres`. */
  readonly url: string;
  /** Create a fresh database and return its URL. */
  createDatabase(name: string): Promise<string>;
  /** `pg_ctl stop -m <mode>` and wait until it is down. */
  stop(mode?: "smart" | "fast" | "immediate"): Promise<void>;
  /** `pg_ctl start` on the same port and data, and wait until it accepts connections. */
  start(): Promise<void>;
  /** The server log so far (for failure messages). */
  log(): string;
  /** Stop it for good and remove its directory. */
  dispose(): Promise<void>;
}

const run = promisify(execFile);

/** The directory holding initdb and pg_ctl: PG_BIN_DIR, else the newest /usr/lib/postgresql/<v>/bin. */
export function postgresBinDir(): string {
  const fromEnv = process.env["PG_BIN_DIR"];
  if (fromEnv) return fromEnv;
  const root = "/usr/lib/postgresql";
  const versions = existsSync(root)
    ? readdirSync(root)
        .filter((v) => existsSync(join(root, v, "bin", "initdb")))
        .sort((a, b) => Number(b) - Number(a))
    : [];
  if (versions.length === 0) throw new Error(`no initdb under ${root}/*/bin (set PG_BIN_DIR to the directory holding initdb and pg_ctl)`);
  return join(root, versions[0] as string, "bin");
}

/** uid and gid of the `postgres` OS user, from the passwd database. */
function postgresUser(): { uid: number; gid: number } {
  const uid = Number(execFileSync("id", ["-u", "postgres"], { encoding: "utf8" }).trim());
  const gid = Number(execFileSync("id", ["-g", "postgres"], { encoding: "utf8" }).trim());
  if (!Number.isInteger(uid) || !Number.isInteger(gid)) throw new Error("cannot find the postgres OS user");
  return { uid, gid };
}

export async function startPrivatePostgres(): Promise<PrivatePostgres> {
  const bin = postgresBinDir();
  const asRoot = process.getuid?.() === 0;
  const dir = mkdtempSync(join(tmpdir(), "secrets-pg-"));
  const data = join(dir, "data");
  const logFile = join(dir, "server.log");
  if (asRoot) {
    const { uid, gid } = postgresUser();
    chownSync(dir, uid, gid);
  }
  /** Run a Postgres binary, as the postgres OS user when we are root. */
  const pgCommand = async (tool: string, args: string[], timeoutMs = 60_000) => {
    const [file, argv] = asRoot ? ["runuser", ["-u", "postgres", "--", join(bin, tool), ...args]] : [join(bin, tool), args];
    try {
      await run(file, argv, { timeout: timeoutMs, cwd: dir });
    } catch (e) {
      const err = e as { stderr?: string; stdout?: string; message: string };
      throw new Error(`${tool} ${args[0] ?? ""} failed: ${err.message}\n${err.stderr ?? ""}${err.stdout ?? ""}\n${readLog()}`);
    }
  };
  const readLog = () => (existsSync(logFile) ? readFileSync(logFile, "utf8").slice(-4000) : "");

  const port = await freePort();
  await pgCommand("initdb", ["-D", data, "-A", "trust", "-U", "postgres", "-E", "UTF8", "--no-sync", "--no-instructions"]);
  // fsync off: this server's data need only survive a clean (fast) shutdown, which checkpoints.
  const options = `-p ${port} -k ${dir} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200`;
  let running = false;

  const start = async () => {
    await pgCommand("pg_ctl", ["start", "-D", data, "-l", logFile, "-w", "-t", "60", "-o", options], 70_000);
    running = true;
  };
  const stop = async (mode: "smart" | "fast" | "immediate" = "fast") => {
    if (!running) return;
    await pgCommand("pg_ctl", ["stop", "-D", data, "-m", mode, "-w", "-t", "60"], 70_000);
    running = false;
  };
  // A test process that dies without afterAll must not leave a server behind.
  const onExit = () => {
    if (!running) return;
    try {
      const args = ["stop", "-D", data, "-m", "immediate", "-w", "-t", "10"];
      if (asRoot) execFileSync("runuser", ["-u", "postgres", "--", join(bin, "pg_ctl"), ...args], { stdio: "ignore" });
      else execFileSync(join(bin, "pg_ctl"), args, { stdio: "ignore" });
    } catch {
      // best effort
    }
  };
  process.once("exit", onExit);

  try {
    await start();
  } catch (e) {
    rmSync(dir, { recursive: true, force: true });
    throw e;
  }
  const url = `postgres://postgres@127.0.0.1:${port}/postgres`;
  return {
    port,
    url,
    async createDatabase(name) {
      if (!/^[a-z_][a-z0-9_]*$/.test(name)) throw new Error(`bad database name ${name}`);
      const client = new pg.Client({ connectionString: url, connectionTimeoutMillis: 5_000 });
      await client.connect();
      try {
        await client.query(`CREATE DATABASE ${name}`);
      } finally {
        await client.end();
      }
      return `postgres://postgres@127.0.0.1:${port}/${name}`;
    },
    stop,
    start,
    log: readLog,
    async dispose() {
      try {
        await stop("immediate");
      } finally {
        process.removeListener("exit", onExit);
        rmSync(dir, { recursive: true, force: true });
      }
    },
  };
}
