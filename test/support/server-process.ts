import { spawn, type ChildProcess } from "node:child_process";
import { existsSync } from "node:fs";
import { dirname, join } from "node:path";
import { fileURLToPath } from "node:url";

/** The project root, where `dist/` and `node_modules/.bin` live. */
export const PROJECT_ROOT = join(dirname(fileURLToPath(import.meta.url)), "..", "..");
const MAIN = join(PROJECT_ROOT, "dist", "main.js");

/** A server started as its own process from the build (`npm run build`, run by `pretest`). */
export interface ServerProcess {
  child: ChildProcess;
  stdout(): string;
  stderr(): string;
  /** Resolves with the exit code (or signal name) when the process ends. */
  exited: Promise<number | string>;
  /** Waits until stdout matches `pattern`, or fails after `timeoutMs`. */
  waitFor(pattern: RegExp, timeoutMs?: number): Promise<RegExpMatchArray>;
  kill(signal?: NodeJS.Signals): void;
}

export function startServerProcess(env: Record<string, string>): ServerProcess {
  if (!existsSync(MAIN)) throw new Error(`${MAIN} is missing: run npm run build (npm test does it first)`);
  // The test's own service settings stay out; the development check the suite turns on goes in.
  const clean = Object.fromEntries(
    Object.entries(process.env).filter(
      ([k]) => (!k.startsWith("SECRETS_") || k === "SECRETS_DB_SCOPE_CHECKS") && k !== "DATABASE_URL" && k !== "REDIS_URL",
    ),
  );
  const child = spawn(process.execPath, [MAIN], { cwd: PROJECT_ROOT, env: { ...clean, ...env }, stdio: ["ignore", "pipe", "pipe"] });
  let out = "";
  let err = "";
  child.stdout?.on("data", (d: Buffer) => (out += d.toString("utf8")));
  child.stderr?.on("data", (d: Buffer) => (err += d.toString("utf8")));
  const exited = new Promise<number | string>((resolve) => child.on("exit", (code, signal) => resolve(code ?? signal ?? -1)));
  return {
    child,
    stdout: () => out,
    stderr: () => err,
    exited,
    kill: (signal = "SIGTERM") => child.kill(signal),
    async waitFor(pattern, timeoutMs = 60_000) {
      const deadline = Date.now() + timeoutMs;
      for (;;) {
        const m = out.match(pattern);
        if (m) return m;
        if (child.exitCode !== null) throw new Error(`server exited (${child.exitCode}) before ${pattern}: ${err.slice(-2000)}${out.slice(-2000)}`);
        if (Date.now() > deadline) throw new Error(`timed out waiting for ${pattern}; stderr: ${err.slice(-2000)}; stdout: ${out.slice(-2000)}`);
        await new Promise((r) => setTimeout(r, 50));
      }
    },
  };
}
