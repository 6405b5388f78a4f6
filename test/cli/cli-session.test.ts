import { spawn } from "node:child_process";
import { mkdtempSync, rmSync, statSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT, startDevServer, type DevServer } from "../support/fixtures.js";

// The `secrets` CLI as a user meets it: `node dist/cli/main.js` as a child process
// against a dev-mode server process, through a whole session, then error cases.
// Outputs and exit codes are asserted; values appear only where they should.

const MAIN = join(PROJECT_ROOT, "dist", "cli", "main.js");
const NO_STACK = /\n\s+at /;

let server: DevServer;
let token = "";
let work: string;

interface Result {
  code: number | null;
  signal: NodeJS.Signals | null;
  stdout: string;
  stderr: string;
}

/** The environment of the test process without any SECRETS_* variable, plus `env`. */
function baseEnv(env: Record<string, string>): NodeJS.ProcessEnv {
  const clean = Object.fromEntries(Object.entries(process.env).filter(([k]) => !k.startsWith("SECRETS_")));
  return { ...clean, ...env };
}

/** Runs the CLI with `args`, optional stdin, and SECRETS_ADDR / SECRETS_TOKEN set unless overridden. */
function cli(args: string[], options: { input?: string; env?: Record<string, string> } = {}): Promise<Result> {
  return new Promise((resolve, reject) => {
    const child = spawn(process.execPath, [MAIN, ...args], {
      cwd: work,
      env: baseEnv({ SECRETS_ADDR: server.address, SECRETS_TOKEN: token, ...options.env }),
      stdio: ["pipe", "pipe", "pipe"],
    });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString("utf8")));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString("utf8")));
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code, signal, stdout, stderr }));
    child.stdin.end(options.input ?? "");
  });
}

function file(name: string, text: string): string {
  const path = join(work, name);
  writeFileSync(path, text);
  return path;
}

beforeAll(async () => {
  work = mkdtempSync(join(tmpdir(), "secrets-cli-"));
  server = await startDevServer();
  token = server.token;
});

afterAll(async () => {
  await server?.dispose();
  if (work) rmSync(work, { recursive: true, force: true });
});

/** 50 entries in every .env form; `invalidAt` indexes get names that break the rule. */
function envFile(invalidAt: ReadonlySet<number> = new Set()): { text: string; expected: Record<string, string>; invalidLines: number[] } {
  const lines = ["# fifty secrets for the import test", ""];
  const expected: Record<string, string> = {};
  const invalidLines: number[] = [];
  const badNames = ["9_starts_with_digit", "has-dash", `n${"x".repeat(128)}`];
  for (let i = 0; i < 50; i++) {
    const valid = `IMPORTED_${String(i).padStart(2, "0")}`;
    const name = invalidAt.has(i) ? (badNames[invalidAt.size > 0 ? [...invalidAt].indexOf(i) % badNames.length : 0] as string) : valid;
    if (invalidAt.has(i)) invalidLines.push(lines.length + 1);
    const value = `value ${i} #${Math.random().toString(36).slice(2)}`;
    switch (i % 4) {
      case 0:
        lines.push(`export ${name}="${value.replace(/"/g, '\\"')}"`);
        break;
      case 1:
        lines.push(`${name}='${value}'`);
        break;
      case 2:
        lines.push(`${name} = "${value}"   # a comment after the value`);
        break;
      default:
        lines.push(`${name}=plain_${i}   # unquoted, with a comment`);
        expected[name] = `plain_${i}`;
        continue;
    }
    expected[name] = value;
  }
  return { text: `${lines.join("\n")}\n`, expected, invalidLines };
}

describe("a whole session", () => {
  it("token, create from stdin, list, update, versions, old version, import (invalid, then valid), export, run, delete", { timeout: 180_000 }, async () => {
    // token: minted from the dev server's data directory.
    const minted = await cli(["token", "--data-dir", server.dataDir], { env: { SECRETS_TOKEN: "" } });
    expect(minted.code, minted.stderr).toBe(0);
    expect(minted.stdout.trim()).toMatch(/^[\w-]+\.[\w-]+\.[\w-]+$/);
    token = minted.stdout.trim();
    // SECRETS_DATA_DIR works as the default too.
    const fromEnv = await cli(["token", "--json"], { env: { SECRETS_DATA_DIR: server.dataDir } });
    expect(JSON.parse(fromEnv.stdout)).toMatchObject({ developer: "dev", scopes: ["secrets:read", "secrets:access", "secrets:write", "secrets:keys"] });

    // create, reading the value from stdin (its trailing newline dropped).
    const created = await cli(["create", "stripe_key", "--description", "Stripe test key", "--metadata", '{"env":"test"}'], { input: "sk_test_first\n" });
    expect(created).toMatchObject({ code: 0, stdout: "created stripe_key (version 1)\n", stderr: "" });

    const listed = await cli(["list"]);
    expect(listed.code).toBe(0);
    expect(listed.stdout).toMatch(/^NAME\s+VERSION\s+UPDATED\s+DESCRIPTION\nstripe_key\s+1\s+\S+ \S+\s+Stripe test key\n$/);
    expect(listed.stdout).not.toContain("sk_test_first");
    const listedJson = JSON.parse((await cli(["list", "--json"])).stdout) as { name: string; metadata: unknown; version: number }[];
    expect(listedJson).toEqual([expect.objectContaining({ name: "stripe_key", metadata: { env: "test" }, version: 1 })]);

    // update from stdin: a new version.
    const updated = await cli(["update", "stripe_key"], { input: "sk_test_second" });
    expect(updated).toMatchObject({ code: 0, stdout: "updated stripe_key (version 2)\n" });
    const described = await cli(["update", "stripe_key", "--description", "rotated"]);
    expect(described).toMatchObject({ code: 0, stdout: "updated stripe_key (version 2)\n" });

    const versions = await cli(["versions", "stripe_key"]);
    expect(versions.code).toBe(0);
    expect(versions.stdout.split("\n").filter(Boolean).map((l) => l.split(/\s+/).slice(0, 2))).toEqual([
      ["VERSION", "STATE"],
      ["2", "enabled"],
      ["1", "enabled"],
    ]);
    expect(versions.stdout).not.toMatch(/sk_test/);

    // access: the old version, exactly (no newline on a pipe); and the current one as JSON.
    expect(await cli(["access", "stripe_key", "--version", "1"])).toMatchObject({ code: 0, stdout: "sk_test_first", stderr: "" });
    expect(JSON.parse((await cli(["access", "stripe_key", "--json"])).stdout)).toEqual({ name: "stripe_key", version: 2, value: "sk_test_second" });

    // import: 50 entries, three with invalid names: each reported by line, no value printed, nothing written.
    const bad = envFile(new Set([5, 17, 42]));
    const rejected = await cli(["import", file("bad.env", bad.text)]);
    expect(rejected.code).toBe(2);
    expect(rejected.stdout).toBe("");
    expect(rejected.stderr).toContain("3 problem(s); nothing was written");
    for (const line of bad.invalidLines) expect(rejected.stderr).toContain(`line ${line}: invalid name`);
    for (const value of Object.values(bad.expected)) expect(rejected.stderr).not.toContain(value);
    expect(rejected.stderr).not.toContain("has-dash");
    expect(rejected.stderr).not.toMatch(NO_STACK);
    expect(JSON.parse((await cli(["list", "--json"])).stdout)).toHaveLength(1);

    // import: the valid file.
    const good = envFile();
    const imported = await cli(["import", file("good.env", good.text)]);
    expect(imported.code, imported.stderr).toBe(0);
    expect(imported.stdout).toBe(`imported ${join(work, "good.env")}: 50 created, 0 updated\n`);
    for (const value of Object.values(good.expected)) expect(imported.stdout + imported.stderr).not.toContain(value);
    expect(JSON.parse((await cli(["list", "--json"])).stdout)).toHaveLength(51);

    // Importing again: existing names fail by default (nothing written), or are skipped or updated.
    const again = await cli(["import", join(work, "good.env")]);
    expect(again.code).toBe(1);
    expect(again.stderr).toBe("secrets: 50 name(s) already exist; nothing was written: use --overwrite (or --on-conflict skip)\n");
    const partial = file("partial.json", JSON.stringify({ IMPORTED_00: "changed-0", NEW_FROM_JSON: "fresh" }, null, 2));
    const mixed = await cli(["import", partial, "--on-conflict", "update", "--json"]);
    expect(mixed.code, mixed.stderr).toBe(0);
    expect(JSON.parse(mixed.stdout)).toEqual({ created: ["NEW_FROM_JSON"], updated: ["IMPORTED_00"], skipped: [], skippedEmpty: [] });
    good.expected["IMPORTED_00"] = "changed-0";
    const skipped = await cli(["import", partial, "--on-conflict", "skip"]);
    expect(skipped.stdout).toContain("0 created, 0 updated, 2 skipped (already exist)");

    // export: .env and JSON, each reading back to every value.
    const everything = { ...good.expected, NEW_FROM_JSON: "fresh", stripe_key: "sk_test_second" };
    const exportedJson = await cli(["export", "--format", "json"]);
    expect(exportedJson.code).toBe(0);
    expect(JSON.parse(exportedJson.stdout)).toEqual(everything);
    const exportedEnv = await cli(["export", "--format", "env"]);
    expect(exportedEnv.code).toBe(0);
    expect(exportedEnv.stdout.trim().split("\n")).toHaveLength(52);
    // The .env export imports back unchanged (dry run: nothing to create, all 52 would be updated).
    const roundTrip = await cli(["import", file("exported.env", exportedEnv.stdout), "--on-conflict", "update", "--dry-run", "--json"]);
    expect(JSON.parse(roundTrip.stdout)).toMatchObject({ dryRun: true, created: [] });
    expect(JSON.parse(roundTrip.stdout).updated).toHaveLength(52);
    const { parseEnvFile } = await import("../../src/cli/env-file.js");
    const parsed = Object.fromEntries(parseEnvFile(exportedEnv.stdout).entries.map((e) => [e.name, e.value]));
    expect(parsed).toEqual(everything);
    const toFile = await cli(["export", "--output", join(work, "out.env")]);
    expect(toFile).toMatchObject({ code: 0, stdout: "" });
    expect(statSync(join(work, "out.env")).mode & 0o777).toBe(0o600);

    // run: one variable printed by the child; no SECRETS_* variable reaches it, though the CLI had several.
    const script = "console.log(process.env.IMPORTED_03); console.log(JSON.stringify(Object.keys(process.env).filter((k) => k.startsWith('SECRETS_')))); console.log(String(process.env.SECRETS_TOKEN))";
    const ran = await cli(["run", "--name", "IMPORTED_03,stripe_key", "--", process.execPath, "-e", script], { env: { SECRETS_EXTRA: "x" } });
    expect(ran.code, ran.stderr).toBe(0);
    expect(ran.stdout).toBe("plain_3\n[]\nundefined\n");
    const allNames = await cli(["run", "--", process.execPath, "-e", "console.log(process.env.NEW_FROM_JSON, process.env.stripe_key)"]);
    expect(allNames.stdout).toBe("fresh sk_test_second\n");
    expect((await cli(["run", "--name", "stripe_key", "--", process.execPath, "-e", "process.exit(7)"])).code).toBe(7);

    // destroy an old version, then delete.
    expect(await cli(["destroy-version", "stripe_key", "1", "--yes"])).toMatchObject({ code: 0, stdout: "destroyed version 1 of stripe_key\n" });
    const destroyed = await cli(["access", "stripe_key", "--version", "1"]);
    expect(destroyed).toMatchObject({ code: 1, stdout: "", stderr: "secrets: FAILED_PRECONDITION (VERSION_DESTROYED): this version was destroyed\n" });
    expect(await cli(["delete", "stripe_key"])).toMatchObject({ code: 0, stdout: expect.stringMatching(/^deleted stripe_key: it is in the recovery bin /) });
    const gone = await cli(["get", "stripe_key"]);
    expect(gone).toMatchObject({ code: 1, stdout: "", stderr: "secrets: NOT_FOUND (SECRET_NOT_FOUND): secret not found\n" });
  });
});

describe("errors and edges", () => {
  it("fails with one line and a distinct exit code, never a stack trace", { timeout: 60_000 }, async () => {
    const noToken = await cli(["list"], { env: { SECRETS_TOKEN: "" } });
    expect(noToken.code).toBe(2);
    expect(noToken.stderr).toMatch(/^secrets: no token: set SECRETS_TOKEN/);

    const unreachable = await cli(["get", "x", "--timeout", "3000"], { env: { SECRETS_ADDR: "127.0.0.1:1" } });
    expect(unreachable.code).toBe(3);
    expect(unreachable.stderr).toMatch(/^secrets: UNAVAILABLE: cannot reach 127\.0\.0\.1:1: .*; is it running\? .*\n$/);

    const usage = await cli(["list", "--no-such-flag"]);
    expect(usage.code).toBe(2);
    expect(usage.stderr).toMatch(/^secrets: unknown option '--no-such-flag'/);

    const invalid = await cli(["get", "not-a-name"]);
    expect(invalid.code).toBe(1);
    expect(invalid.stderr).toMatch(/^secrets: INVALID_ARGUMENT \(INVALID_NAME\): /);

    const forged = await cli(["list"], { env: { SECRETS_TOKEN: "eyJhbGciOiJIUzI1NiJ9.e30.c2ln" } });
    expect(forged.code).toBe(1);
    expect(forged.stderr).toMatch(/^secrets: UNAUTHENTICATED \(TOKEN_INVALID\): .*SECRETS_TOKEN/);

    const readOnly = (await cli(["token", "--data-dir", server.dataDir, "--scope", "read"])).stdout.trim();
    const denied = await cli(["access", "anything"], { env: { SECRETS_TOKEN: readOnly } });
    expect(denied).toMatchObject({ code: 1, stdout: "" });
    expect(denied.stderr).toMatch(/^secrets: PERMISSION_DENIED \(SCOPE_MISSING\): /);

    const emptyValue = await cli(["create", "empty_one"], { input: "\n" });
    expect(emptyValue).toMatchObject({ code: 2, stderr: "secrets: value is empty\n" });

    for (const r of [noToken, unreachable, usage, invalid, forged, denied, emptyValue]) {
      expect(r.stderr).not.toMatch(NO_STACK);
      expect(r.stderr.trim().split("\n").length, r.stderr).toBeLessThanOrEqual(2);
    }
  });

  // The operator scope, minted only on request and with a warning: test/cli/operator-commands.test.ts.
  it("token: dev mode only, scopes and allowlists as asked", async () => {
    const notDev = await cli(["token", "--data-dir", work]);
    expect(notDev.code).toBe(2);
    expect(notDev.stderr).toMatch(/^secrets: no dev-mode JWT secret at .*jwt-secret: `secrets token` works only with the data directory of a dev-mode server/);

    const badScope = await cli(["token", "--data-dir", server.dataDir, "--scope", "admin"]);
    expect(badScope.code).toBe(2);

    const limited = await cli(["token", "--data-dir", server.dataDir, "--developer", "tok-dev", "--scope", "read,write", "--secrets", "only_one", "--ttl", "5m", "--json"]);
    const info = JSON.parse(limited.stdout) as { token: string; scopes: string[]; secrets: string[]; expiresAt: string };
    expect(info.scopes).toEqual(["secrets:read", "secrets:write"]);
    expect(info.secrets).toEqual(["only_one"]);
    expect(Date.parse(info.expiresAt) - Date.now()).toBeLessThanOrEqual(300_000);
    const outside = await cli(["create", "another_one"], { input: "v", env: { SECRETS_TOKEN: info.token } });
    expect(outside.stderr).toMatch(/NOT_ALLOWLISTED/);
    const inside = await cli(["create", "only_one"], { input: "v", env: { SECRETS_TOKEN: info.token } });
    expect(inside).toMatchObject({ code: 0, stdout: "created only_one (version 1)\n" });
  });

  it("import stops at the first failed write and reports exactly what was written", async () => {
    // A token allowed to write two of the three names: the third create is refused midway.
    const limited = (await cli(["token", "--data-dir", server.dataDir, "--developer", "midway", "--secrets", "FIRST_ONE,SECOND_ONE"])).stdout.trim();
    const source = file("midway.env", "FIRST_ONE=value-one\nSECOND_ONE=value-two\nTHIRD_ONE=value-three\nFOURTH_ONE=value-four\n");
    const result = await cli(["import", source], { env: { SECRETS_TOKEN: limited } });
    expect(result.code).toBe(1);
    expect(result.stdout).toBe("");
    expect(result.stderr).toContain("import stopped at line 3 (THIRD_ONE): PERMISSION_DENIED (NOT_ALLOWLISTED)");
    expect(result.stderr).toContain("THIRD_ONE was not written");
    expect(result.stderr).toContain("before line 3: 2 created, 0 updated");
    expect(result.stderr).toContain("not attempted: 1 entry after line 3");
    expect(result.stderr).not.toMatch(/value-/);
    expect(result.stderr).not.toMatch(NO_STACK);

    const midwayAll = (await cli(["token", "--data-dir", server.dataDir, "--developer", "midway"])).stdout.trim();
    const names = (JSON.parse((await cli(["list", "--json"], { env: { SECRETS_TOKEN: midwayAll } })).stdout) as { name: string }[]).map((s) => s.name);
    expect(names).toEqual(["FIRST_ONE", "SECOND_ONE"]);
  });

  it("imports a JSON object with line numbers for its problems", async () => {
    const json = file("bad.json", '{\n  "GOOD_ONE": "a value",\n  "bad-name": "b",\n  "NUMBER": 5,\n  "EMPTY": ""\n}\n');
    const result = await cli(["import", json]);
    expect(result.code).toBe(2);
    expect(result.stderr).toContain("line 3: invalid name");
    expect(result.stderr).toContain("line 4: NUMBER: value must be a string");
    expect(result.stderr).toContain("line 5: EMPTY: value is empty");
    expect(result.stderr).not.toContain("a value");
    const broken = await cli(["import", file("broken.json", '{\n  "A": "secret-in-broken-json",\n  oops\n}')]);
    expect(broken.code).toBe(2);
    expect(broken.stderr).toMatch(/line 3: not valid JSON/);
    expect(broken.stderr).not.toContain("secret-in-broken-json");
  });

  it("run forwards SIGTERM to the command and passes its exit status through", { timeout: 60_000 }, async () => {
    expect((await cli(["create", "SIGNAL_TEST"], { input: "v" })).code).toBe(0);
    const script = "process.on('SIGTERM', () => { console.log('child got SIGTERM'); process.exit(42); }); console.log('ready'); setInterval(() => {}, 1000);";
    const child = spawn(process.execPath, [MAIN, "run", "--name", "SIGNAL_TEST", "--", process.execPath, "-e", script], {
      cwd: work,
      env: baseEnv({ SECRETS_ADDR: server.address, SECRETS_TOKEN: token }),
      stdio: ["ignore", "pipe", "pipe"],
    });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString("utf8")));
    const exited = new Promise<number | null>((resolve) => child.on("close", (code) => resolve(code)));
    for (let i = 0; i < 200 && !out.includes("ready"); i++) await new Promise((r) => setTimeout(r, 50));
    expect(out).toContain("ready");
    child.kill("SIGTERM");
    expect(await exited).toBe(42);
    expect(out).toContain("child got SIGTERM");

    const missing = await cli(["run", "--", "no-such-command-anywhere"]);
    expect(missing).toMatchObject({ code: 127, stderr: "secrets: cannot run no-such-command-anywhere: command not found\n" });
  });

  it("says in the help why --value is discouraged", async () => {
    const help = await cli(["create", "--help"]);
    expect(help.code).toBe(0);
    expect(help.stdout.replace(/\s+/g, " ")).toContain("--value <value> the value itself: DISCOURAGED, it shows in the process list (ps)");
    const withFlag = await cli(["create", "flag_value", "--value", "from-flag"]);
    expect(withFlag.code).toBe(0);
    expect(withFlag.stdout).not.toContain("from-flag");
  });
});
