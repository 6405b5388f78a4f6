import { spawn } from "node:child_process";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, expect } from "vitest";
import { redactSecrets, type SecretsClient } from "@secrets-service/client";
import { PROJECT_ROOT, startTestService, type TestService, type TestServiceOptions } from "../support/fixtures.js";

/**
 * The `secrets` CLI from the build (`node dist/cli/main.js`) as a child process,
 * the way a user runs it, and the check that its output holds none of a test's
 * marker strings (tokens, values) in any form.
 */

export const CLI_MAIN = join(PROJECT_ROOT, "dist", "cli", "main.js");

/** What one CLI run printed, as text and as the bytes written. */
export interface CliResult {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
  bytes: Buffer;
}

export interface CliRunOptions {
  cwd: string;
  /** Added to the test process's environment, from which every SECRETS_* variable is removed first. */
  env?: Record<string, string>;
  input?: string | Buffer;
}

/** The test process's environment without any SECRETS_* variable, plus `env`. */
export function cliEnv(env: Record<string, string> = {}): NodeJS.ProcessEnv {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SECRETS_")));
  return { ...clean, ...env };
}

/** Runs the CLI with `args` and resolves when it has exited and closed its output. */
export function runCli(args: readonly string[], options: CliRunOptions): Promise<CliResult> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [CLI_MAIN, ...args], { cwd: options.cwd, env: cliEnv(options.env), stdio: ["pipe", "pipe", "pipe"] });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => err.push(d));
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const stdout = Buffer.concat(out);
      const stderr = Buffer.concat(err);
      resolve({ code, signal, stdout: stdout.toString("utf8"), stderr: stderr.toString("utf8"), bytes: Buffer.concat([stdout, stderr]) });
    });
    child.stdin.on("error", () => undefined); // a CLI that exits before reading its input
    child.stdin.end(options.input ?? "");
  });
}

/**
 * Fails when any marker appears in the run's output: as bytes anywhere in stdout or
 * stderr, or encoded (URL, JSON, hex, base64) as the SDK's redactor finds them.
 */
export function expectNoMarkers(result: CliResult, markers: readonly string[], what = "output"): void {
  for (const marker of markers) {
    expect(result.bytes.includes(Buffer.from(marker, "utf8")), `${what} holds a marker`).toBe(false);
  }
  const text = result.bytes.toString("latin1") + result.bytes.toString("utf8");
  const named = Object.fromEntries(markers.map((m, i) => [`marker${i}`, m]));
  expect(redactSecrets(text, named), `${what} holds an encoded marker`).toBe(text);
}

/** A service and a scratch directory for one test file's CLI runs. */
export interface CliFixture {
  svc: TestService;
  /** The CLI's working directory. */
  work: string;
  /** A developer holding `secrets` (created through the SDK), its client, token and CLI. */
  developer(id: string, secrets?: Record<string, string>): Promise<CliDeveloper>;
}

export interface CliDeveloper {
  client: SecretsClient;
  token: string;
  cli(args: string[], input?: string | Buffer): Promise<CliResult>;
}

/**
 * Starts the fixture before the file's tests (beforeAll) and removes it after them (afterAll);
 * `options` go to the service (a clock to move, the lifecycle job run by hand).
 */
export function useCliFixture(prefix: string, options: TestServiceOptions = {}): CliFixture {
  const fixture = {
    async developer(id: string, secrets: Record<string, string> = {}): Promise<CliDeveloper> {
      const client = await fixture.svc.connectClient(id);
      for (const [name, value] of Object.entries(secrets)) await client.secrets.create({ name, value });
      const token = await fixture.svc.token(id);
      const env = { SECRETS_ADDR: fixture.svc.address, SECRETS_TOKEN: token };
      return { client, token, cli: (args, input) => runCli(args, { cwd: fixture.work, env, input }) };
    },
  } as CliFixture;
  beforeAll(async () => {
    fixture.work = mkdtempSync(join(tmpdir(), `secrets-cli-${prefix}-`));
    fixture.svc = await startTestService({}, options);
  });
  afterAll(async () => {
    await fixture.svc?.stop();
    if (fixture.work) rmSync(fixture.work, { recursive: true, force: true });
  });
  return fixture;
}

/** A runner whose every call carries `env` (e.g. SECRETS_ADDR and SECRETS_TOKEN); `run.env` adds to it. */
export function cliRunner(
  env: Record<string, string>,
  cwd: string = PROJECT_ROOT,
): (args: string[], run?: { env?: Record<string, string>; input?: string }) => Promise<CliResult> {
  return (args, run = {}) => runCli(args, { cwd, env: { ...env, ...run.env }, input: run.input ?? "" });
}

/**
 * The CLI at a terminal (a pseudo-terminal from `script`), typing `answer.typed` once
 * `answer.prompt` is on the screen. Everything the CLI wrote arrives as stdout.
 */
export function runAtTerminal(
  args: readonly string[],
  env: Record<string, string>,
  answer: { prompt: string; typed: string },
): Promise<Pick<CliResult, "code" | "stdout" | "stderr">> {
  const command = [process.execPath, CLI_MAIN, ...args].map((a) => `'${a}'`).join(" ");
  return new Promise((resolve, reject) => {
    const child = spawn("script", ["-qefc", command, "/dev/null"], { env: cliEnv(env), stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let answered = false;
    child.stdout.on("data", (d: Buffer) => {
      stdout += d.toString("utf8");
      // Answer once the question is on the screen (readline may follow it with cursor codes).
      if (!answered && stdout.includes(answer.prompt)) {
        answered = true;
        child.stdin.write(answer.typed);
      }
    });
    child.on("error", reject);
    child.on("close", (code) => resolve({ code, stdout, stderr: "" }));
  });
}

/** A CLI run that lasts (`watch`, `run --watch`): its output so far, and a way to stop it. */
export interface RunningCli {
  readonly stdout: () => string;
  readonly stderr: () => string;
  /** Resolves once `check` holds for what the CLI has printed, polling; fails after `timeoutMs`. */
  until(check: (out: { stdout: string; stderr: string }) => boolean, timeoutMs?: number): Promise<void>;
  /** Sends `signal` and resolves with the whole run once the CLI has exited. */
  stop(signal?: NodeJS.Signals): Promise<CliResult>;
}

/** Starts the CLI with `args` and returns at once. */
export function startCli(args: readonly string[], options: CliRunOptions): RunningCli {
  const child = spawn(process.execPath, [CLI_MAIN, ...args], { cwd: options.cwd, env: cliEnv(options.env), stdio: ["ignore", "pipe", "pipe"] });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on("data", (d: Buffer) => out.push(d));
  child.stderr.on("data", (d: Buffer) => err.push(d));
  const closed = new Promise<CliResult>((resolve, reject) => {
    child.on("error", reject);
    child.on("close", (code, signal) => {
      const stdout = Buffer.concat(out);
      const stderr = Buffer.concat(err);
      resolve({ code, signal, stdout: stdout.toString("utf8"), stderr: stderr.toString("utf8"), bytes: Buffer.concat([stdout, stderr]) });
    });
  });
  const text = () => ({ stdout: Buffer.concat(out).toString("utf8"), stderr: Buffer.concat(err).toString("utf8") });
  return {
    stdout: () => text().stdout,
    stderr: () => text().stderr,
    async until(check, timeoutMs = 15_000) {
      const deadline = Date.now() + timeoutMs;
      while (!check(text())) {
        if (child.exitCode !== null || child.signalCode !== null) throw new Error(`the CLI exited early:\n${text().stderr}`);
        if (Date.now() > deadline) throw new Error(`the CLI did not print what was expected within ${timeoutMs} ms:\n${text().stderr}`);
        await new Promise((r) => setTimeout(r, 25));
      }
    },
    stop(signal = "SIGTERM") {
      child.kill(signal);
      return closed;
    },
  };
}
