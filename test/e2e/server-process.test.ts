import { execFile } from "node:child_process";
import { rmSync, statSync } from "node:fs";
import { join } from "node:path";
import { promisify } from "node:util";
import { status } from "@grpc/grpc-js";
import { afterAll, describe, expect, it } from "vitest";
import { newDevDataDir, PROJECT_ROOT, secretsClient, startServerProcess, type ServerProcess } from "../support/fixtures.js";

// The service as a newcomer and an operator meet it: a process started from the
// build, in dev mode and in production mode, stopped with SIGTERM.

const run = promisify(execFile);
const dirs: string[] = [];
const procs: ServerProcess[] = [];

/** A dev-mode data directory with the migrated database, removed after the file. */
async function devDataDir(): Promise<string> {
  const dir = await newDevDataDir();
  dirs.push(dir);
  return dir;
}

function start(env: Record<string, string>): ServerProcess {
  const p = startServerProcess(env);
  procs.push(p);
  return p;
}

afterAll(async () => {
  for (const p of procs) if (p.child.exitCode === null) p.kill("SIGKILL");
  for (const d of dirs) rmSync(d, { recursive: true, force: true });
});

describe("dev mode", () => {
  it("starts on loopback with generated 0600 key files, prints a token and a buf curl line that works as printed, and stops on SIGTERM with calls in flight", async () => {
    const dataDir = await devDataDir();
    const server = start({ SECRETS_DATA_DIR: dataDir, SECRETS_GRPC_ADDR: "127.0.0.1:0", SECRETS_LOG_LEVEL: "warn" });
    const [, port] = await server.waitFor(/http:\/\/127\.0\.0\.1:(\d+)\/secrets\.v1\.SecretService\/CreateSecret/);
    const out = server.stdout();
    expect(out).toContain("DEV MODE");

    for (const file of ["master-keys", "jwt-secret", "dev-token"]) {
      expect(statSync(join(dataDir, file)).mode & 0o777, file).toBe(0o600);
    }
    expect(statSync(dataDir).mode & 0o777).toBe(0o700);

    // The printed command, exactly as printed (continuation lines joined by the shell).
    const lines = out.split("\n");
    const first = lines.findIndex((l) => l.trim().startsWith("npx buf curl") && l.includes("authorization"));
    const command = lines.slice(first, first + 3).join("\n");
    const { stdout } = await run("bash", ["-c", command], { cwd: PROJECT_ROOT, timeout: 60_000 });
    const created = JSON.parse(stdout) as { secret: { name: string; version: number; createdBy: string } };
    expect(created.secret).toMatchObject({ name: "stripe_api_key", version: 1, createdBy: "dev" });

    // Calls in flight when SIGTERM arrives finish; the process exits 0.
    const token = out.match(/Bearer ([A-Za-z0-9._-]+)/)?.[1] as string;
    const client = secretsClient(`127.0.0.1:${port}`);
    try {
      let killed = false;
      let okAfterKill = 0;
      const calls = Array.from({ length: 60 }, (_, i) =>
        client.createSecret({ name: `inflight_${i}`, value: `v${i}` }, token).then((r) => {
          if (killed) okAfterKill += 1;
          return r;
        }),
      );
      await Promise.race(calls);
      server.kill("SIGTERM");
      killed = true;
      const results = await Promise.allSettled(calls);
      expect(okAfterKill, "no call was still in flight at SIGTERM").toBeGreaterThan(0);
      for (const r of results) {
        if (r.status === "rejected") expect((r.reason as { code: number }).code, "a call was cut off").toBe(status.UNAVAILABLE);
      }
      expect(await server.exited).toBe(0);
    } finally {
      client.close();
    }

    // A restart reads the same keys: the secret written before is still readable.
    const again = start({ SECRETS_DATA_DIR: dataDir, SECRETS_GRPC_ADDR: "127.0.0.1:0", SECRETS_LOG_LEVEL: "warn" });
    const [, port2] = await again.waitFor(/http:\/\/127\.0\.0\.1:(\d+)\//);
    const token2 = again.stdout().match(/Bearer ([A-Za-z0-9._-]+)/)?.[1] as string;
    const client2 = secretsClient(`127.0.0.1:${port2}`);
    try {
      expect((await client2.accessSecret({ name: "stripe_api_key" }, token2)).value).toBe("sk_test_123");
    } finally {
      client2.close();
    }
    again.kill("SIGTERM");
    expect(await again.exited).toBe(0);
  });

  it("refuses a non-loopback address", async () => {
    const server = start({ SECRETS_DATA_DIR: await devDataDir(), SECRETS_GRPC_ADDR: "0.0.0.0:0" });
    expect(await server.exited).toBe(2);
    expect(server.stderr()).toMatch(/SECRETS_GRPC_ADDR must be a loopback address in dev mode/);
  });

  it("refuses a second process on the same data directory", async () => {
    const dataDir = await devDataDir();
    const first = start({ SECRETS_DATA_DIR: dataDir, SECRETS_GRPC_ADDR: "127.0.0.1:0", SECRETS_LOG_LEVEL: "warn" });
    await first.waitFor(/Developer token/);
    const second = start({ SECRETS_DATA_DIR: dataDir, SECRETS_GRPC_ADDR: "127.0.0.1:0", SECRETS_LOG_LEVEL: "warn" });
    expect(await second.exited).not.toBe(0);
    expect(second.stdout() + second.stderr()).toMatch(/in use by process/);
    first.kill("SIGTERM");
    expect(await first.exited).toBe(0);
  });
});

describe("production mode", () => {
  const url = "postgres://postgres@127.0.0.1:1/never_reached";
  const jwt = "j".repeat(40);
  const key = `k1:${Buffer.alloc(32, 7).toString("base64")}`;

  it("stops start-up naming the missing master key variable, never a value", async () => {
    const server = start({ DATABASE_URL: url, SECRETS_JWT_SECRET: jwt });
    expect(await server.exited).toBe(2);
    expect(server.stderr()).toMatch(/SECRETS_MASTER_KEYS or SECRETS_MASTER_KEY_FILE is required/);
    expect(server.stderr()).not.toContain(jwt);
  });

  it("stops start-up naming the missing JWT variable", async () => {
    const server = start({ DATABASE_URL: url, SECRETS_MASTER_KEYS: key });
    expect(await server.exited).toBe(2);
    expect(server.stderr()).toMatch(/SECRETS_JWT_SECRET or SECRETS_JWT_PUBLIC_KEY is required/);
    expect(server.stderr()).not.toContain(key.slice(3));
  });

  it("stops start-up on a malformed keyring without printing it", async () => {
    const bad = `k1:${Buffer.alloc(16, 9).toString("base64")}`;
    const server = start({ DATABASE_URL: url, SECRETS_MASTER_KEYS: bad, SECRETS_JWT_SECRET: jwt });
    expect(await server.exited).toBe(2);
    expect(server.stderr()).toMatch(/SECRETS_MASTER_KEYS/);
    expect(server.stderr()).not.toContain(bad.slice(3));
  });

  it("refuses a non-loopback address without TLS unless SECRETS_ALLOW_PLAINTEXT=1", async () => {
    const server = start({ DATABASE_URL: url, SECRETS_MASTER_KEYS: key, SECRETS_JWT_SECRET: jwt, SECRETS_GRPC_ADDR: "0.0.0.0:0" });
    expect(await server.exited).toBe(2);
    expect(server.stderr()).toMatch(/SECRETS_ALLOW_PLAINTEXT/);
  });
});
