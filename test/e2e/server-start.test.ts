import { execFile } from "node:child_process";
import { existsSync, mkdtempSync, rmSync } from "node:fs";
import { createServer, type Server } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT, startDevServer, startServerProcess, type DevServer, type ServerProcess } from "../support/fixtures.js";

// Starting the service as its own process from the build: the dev banner's CLI line
// works as printed, and a start-up that cannot succeed (address or data directory
// taken) is refused with one line on stderr, exit 2, before anything is created.

const run = promisify(execFile);
const CLI = join(PROJECT_ROOT, "dist", "cli", "main.js");

let dev: DevServer;
let scratch: string;
let holder: Server;
let heldPort = 0;
const procs: ServerProcess[] = [];

function start(env: Record<string, string>): ServerProcess {
  const p = startServerProcess(env);
  procs.push(p);
  return p;
}

beforeAll(async () => {
  scratch = mkdtempSync(join(tmpdir(), "secrets-start-"));
  dev = await startDevServer();
  // A port taken by something else, as another server would hold it.
  holder = createServer();
  await new Promise<void>((resolve) => holder.listen(0, "127.0.0.1", resolve));
  heldPort = (holder.address() as { port: number }).port;
});

afterAll(async () => {
  for (const p of procs) if (p.child.exitCode === null) p.kill("SIGKILL");
  await new Promise((resolve) => holder?.close(resolve));
  await dev?.dispose();
  rmSync(scratch, { recursive: true, force: true });
});

describe("the dev banner", () => {
  it("prints an export line for the CLI that, pasted into a shell, reaches this server", async () => {
    const line = dev.process.stdout().split("\n").find((l) => l.trim().startsWith("export SECRETS_ADDR="));
    expect(line?.trim()).toBe(`export SECRETS_ADDR=${dev.address} SECRETS_TOKEN=${dev.token}`);
    const shell = `${line}\nprintf banner_value | node '${CLI}' create banner_check && node '${CLI}' list --json`;
    const env = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SECRETS_")));
    const { stdout } = await run("bash", ["-c", shell], { cwd: scratch, env, timeout: 30_000 });
    expect(stdout).toMatch(/^created banner_check \(version 1\)\n/);
    expect(stdout).not.toContain("banner_value");
  });
});

describe("start-up refusals", () => {
  /** Asserts exactly `line` on stderr, nothing on stdout (no JSON log, no stack), and exit 2. */
  async function expectRefused(p: ServerProcess, line: RegExp): Promise<void> {
    expect(await p.exited).toBe(2);
    expect(p.stderr()).toMatch(line);
    expect(p.stderr().split("\n").filter(Boolean)).toHaveLength(1);
    expect(p.stdout()).toBe("");
  }

  it("a port in use, in dev mode: one line naming the fix, and no data directory created", async () => {
    const dataDir = join(scratch, "never-created");
    const p = start({ SECRETS_DATA_DIR: dataDir, SECRETS_GRPC_ADDR: `127.0.0.1:${heldPort}` });
    await expectRefused(p, new RegExp(`^secrets: 127\\.0\\.0\\.1:${heldPort} is in use; stop the other server or set SECRETS_GRPC_ADDR\\n$`));
    expect(existsSync(dataDir)).toBe(false);
  });

  it("a port in use, in production mode: refused before the database is contacted", async () => {
    const p = start({
      DATABASE_URL: "postgres://postgres@127.0.0.1:1/never_reached",
      SECRETS_MASTER_KEYS: `k1:${Buffer.alloc(32, 7).toString("base64")}`,
      SECRETS_JWT_SECRET: "j".repeat(40),
      SECRETS_GRPC_ADDR: `127.0.0.1:${heldPort}`,
    });
    await expectRefused(p, new RegExp(`^secrets: 127\\.0\\.0\\.1:${heldPort} is in use; stop the other server or set SECRETS_GRPC_ADDR\\n$`));
  });

  it("a data directory in use by another server: one line naming the holder and the fix", async () => {
    const p = start({ SECRETS_DATA_DIR: dev.dataDir, SECRETS_GRPC_ADDR: "127.0.0.1:0" });
    const holderPid = dev.process.child.pid;
    await expectRefused(
      p,
      new RegExp(`^secrets: data directory \\S+ is in use by process ${holderPid}; stop that server or set SECRETS_DATA_DIR to another directory\\n$`),
    );
    // The first server is unaffected.
    const { stdout } = await run(process.execPath, [CLI, "list", "--json"], {
      env: { ...process.env, SECRETS_ADDR: dev.address, SECRETS_TOKEN: dev.token },
    });
    expect(JSON.parse(stdout)).toBeInstanceOf(Array);
  });
});
