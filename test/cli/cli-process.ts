import { spawn } from "node:child_process";
import { join } from "node:path";
import { PROJECT_ROOT } from "../support/fixtures.js";

/**
 * The `secrets` CLI from the build (`node dist/cli/main.js`) as a child process,
 * with an environment free of the test process's SECRETS_* variables.
 */

export const CLI_MAIN = join(PROJECT_ROOT, "dist", "cli", "main.js");

export interface CliResult {
  code: number | null;
  stdout: string;
  stderr: string;
}

export interface CliRun {
  /** Given in SECRETS_* and other variables (they override `env` of the runner). */
  env?: Record<string, string>;
  /** Written to stdin, which is then closed. */
  input?: string;
}

/** A runner whose every call carries `env` (e.g. SECRETS_ADDR and SECRETS_TOKEN). */
export function cliRunner(env: Record<string, string>, cwd: string = PROJECT_ROOT): (args: string[], run?: CliRun) => Promise<CliResult> {
  return (args, run = {}) => runCli(args, { env: { ...env, ...run.env }, input: run.input ?? "" }, cwd);
}

function runCli(args: string[], run: Required<CliRun>, cwd: string): Promise<CliResult> {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SECRETS_")));
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_MAIN, ...args], { cwd, env: { ...clean, ...run.env }, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString("utf8")));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr }));
    child.stdin.end(run.input);
  });
}
