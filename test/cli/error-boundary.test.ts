import { randomBytes } from "node:crypto";
import { writeFileSync } from "node:fs";
import { join } from "node:path";
import { beforeAll, describe, expect, it } from "vitest";
import { CliError, failureText } from "../../src/cli/cli-error.js";
import { rememberSensitive } from "../../src/cli/sensitive.js";
import { expectNoMarkers, runCli, useCliFixture, type CliResult } from "./cli-process.js";

// The CLI's error boundary, driven as a user meets it: `node dist/cli/main.js`
// against a real service, through every failure path the CLI can reach, with a
// marker token and marker values. Each failure is one `secrets: ` line and an exit
// code, and no byte of stdout or stderr holds a marker, with or without
// SECRETS_DEBUG=1.

const fixture = useCliFixture("errors");
let token: string;

/** Each failure is checked as printed normally and with SECRETS_DEBUG=1. */
const DEBUG_MODES: Record<string, string>[] = [{}, { SECRETS_DEBUG: "1" }];

const marker = (kind: string) => `MARK${kind}${randomBytes(12).toString("hex")}`;

const VALUE_MARKER = marker("VALUE");
const NUL_VALUE = `${marker("NULVALUE")}\0after-the-nul`;
const FAKE_TOKEN = `eyJhbGciOiJIUzI1NiJ9.${marker("TOKEN")}.c2ln`;

function cli(args: string[], env: Record<string, string> = {}, input?: string | Buffer): Promise<CliResult> {
  return runCli(args, { cwd: fixture.work, env: { SECRETS_ADDR: fixture.svc.address, SECRETS_TOKEN: token, ...env }, input });
}

function file(name: string, content: string | Buffer): string {
  const path = join(fixture.work, name);
  writeFileSync(path, content);
  return path;
}

/** One `secrets: …` line on stderr, the exit code, nothing on stdout, no marker anywhere. */
function expectFailure(result: CliResult, code: number, pattern: RegExp, markers: string[]): void {
  expect(result.code, result.stderr).toBe(code);
  expect(result.stdout).toBe("");
  expect(result.stderr).toMatch(/^secrets: [^\n]*\n$/);
  expect(result.stderr).toMatch(pattern);
  expectNoMarkers(result, markers);
}

beforeAll(async () => {
  token = await fixture.svc.token("boundary-dev");
});

describe("tokens as they come from files and flags", () => {
  it("trims a token with a trailing newline, or spaces around it, and uses it", async () => {
    expect((await cli(["create", "TRIMMED_ONE"], {}, VALUE_MARKER)).code).toBe(0);
    for (const given of [`${token}\n`, `  ${token}\r\n`]) {
      const listed = await cli(["list", "--json"], { SECRETS_TOKEN: given });
      expect(listed.code, listed.stderr).toBe(0);
      expect(JSON.parse(listed.stdout)).toEqual([expect.objectContaining({ name: "TRIMMED_ONE" })]);
      expectNoMarkers(listed, [token, VALUE_MARKER]);
    }
    const flag = await cli(["get", "TRIMMED_ONE", "--token", ` ${token}\n`], { SECRETS_TOKEN: "" });
    expect(flag.code, flag.stderr).toBe(0);
    expectNoMarkers(flag, [token, VALUE_MARKER]);
  });

  it("refuses a token with an inner control character without printing it, debug or not", async () => {
    const broken = `${token.slice(0, 20)}\u0001${token.slice(20)}`;
    for (const debug of DEBUG_MODES) {
      const result = await cli(["list"], { SECRETS_TOKEN: broken, ...debug });
      expectFailure(result, 2, /^secrets: SECRETS_TOKEN or --token: the token holds characters a header cannot carry/, [token, token.slice(21), FAKE_TOKEN]);
      const flag = await cli(["list", "--token", `${FAKE_TOKEN}\u0007`], { SECRETS_TOKEN: "", ...debug });
      expectFailure(flag, 2, /a header cannot carry \(a line break, control or non-ASCII character\)/, [FAKE_TOKEN]);
    }
  });

  it("refuses a token with an inner space, or given with its 'Bearer ' prefix, as the SDK and the service would", async () => {
    const spaced = await cli(["list"], { SECRETS_TOKEN: `${token.slice(0, 20)} ${token.slice(20)}` });
    expectFailure(spaced, 2, /the token holds characters a bearer token cannot \(a space/, [token.slice(21), token.slice(0, 20)]);
    const prefixed = await cli(["list"], { SECRETS_TOKEN: `Bearer ${token}` });
    expectFailure(prefixed, 2, /the token starts with 'Bearer ': give the token alone/, [token]);
  });

  it("a forged token with a trailing newline is UNAUTHENTICATED, not an unexpected error", async () => {
    for (const debug of DEBUG_MODES) {
      expectFailure(await cli(["list"], { SECRETS_TOKEN: `${FAKE_TOKEN}\n`, ...debug }), 1, /^secrets: UNAUTHENTICATED \(TOKEN_INVALID\)/, [FAKE_TOKEN]);
    }
  });
});

describe("every failure is one line without the token or a value", () => {
  it("unreachable address, NOT_FOUND, usage errors", async () => {
    for (const debug of DEBUG_MODES) {
      const unreachable = await cli(["get", "anything", "--timeout", "3000"], { SECRETS_ADDR: "127.0.0.1:1", ...debug });
      expectFailure(unreachable, 3, /^secrets: UNAVAILABLE: cannot reach 127\.0\.0\.1:1: .*; is it running\?/, [token]);
      expectFailure(await cli(["get", "NO_SUCH_SECRET"], debug), 1, /^secrets: NOT_FOUND \(SECRET_NOT_FOUND\)/, [token]);
      expectFailure(await cli(["access", "NO_SUCH_SECRET"], debug), 1, /NOT_FOUND/, [token]);
      const usage = await cli(["list", "--token", FAKE_TOKEN, "--no-such-flag"], debug);
      expect(usage.code).toBe(2);
      expectNoMarkers(usage, [FAKE_TOKEN, token]);
    }
  });

  it("a value with a NUL byte: run and export refuse it by name; a too-large value is refused", async () => {
    const created = await cli(["create", "NUL_HOLDER", "--value-file", file("nul.bin", NUL_VALUE)]);
    expect(created.code, created.stderr).toBe(0);
    const markers = [token, NUL_VALUE.slice(0, 20)];
    for (const debug of DEBUG_MODES) {
      for (const args of [["run", "--name", "NUL_HOLDER", "--"], ["run", "--"]]) {
        const ran = await cli([...args, "sh", "-c", "echo RAN-THE-COMMAND"], debug);
        expectFailure(ran, 2, /^secrets: refusing to run: the value of NUL_HOLDER holds a NUL byte/, markers);
      }
      const exported = await cli(["export", "--prefix", "NUL_"], debug);
      expectFailure(exported, 2, /cannot export as dotenv, nothing was written: the value of NUL_HOLDER holds a NUL byte/, markers);
    }
    const big = await cli(["create", "TOO_BIG"], {}, `${VALUE_MARKER}${"x".repeat(70_000)}`);
    expectFailure(big, 2, /^secrets: value is \d+ bytes, more than 65536\n$/, [VALUE_MARKER]);
  });

  it("bad import files: problems by line, never a value", async () => {
    const dotenv = [
      `GOOD=${VALUE_MARKER}-good`,
      `bad-name='${VALUE_MARKER}-badname'`,
      `no equals sign ${VALUE_MARKER}`,
      "EMPTY=",
      `UNCLOSED='${VALUE_MARKER}-unclosed`,
    ].join("\n");
    const json = `{\n  "OK": "${VALUE_MARKER}-json",\n  "bad-${VALUE_MARKER}": "x",\n  broken ${VALUE_MARKER}\n}`;
    for (const [name, content] of [["bad.env", dotenv], ["bad.json", json], ["latin1.env", Buffer.from(`A=${VALUE_MARKER}\xff`, "latin1")]] as const) {
      const result = await cli(["import", file(name, content)]);
      expect(result.code, result.stderr).toBe(2);
      expect(result.stderr).toMatch(/^secrets: \S+ (has \d+ problem\(s\); nothing was written|is not valid UTF-8; nothing was written)/);
      expectNoMarkers(result, [VALUE_MARKER, token]);
    }
    const listed = await cli(["list", "--json"]);
    expect((JSON.parse(listed.stdout) as { name: string }[]).map((s) => s.name)).not.toContain("GOOD");
  });
});

describe("unexpected errors", () => {
  it("print a fixed line; with debug, details with the token and values redacted", () => {
    const secretToken = marker("UNEXPECTEDTOKEN");
    const secretValue = marker("UNEXPECTEDVALUE");
    rememberSensitive("token", secretToken);
    rememberSensitive("api_key", secretValue);
    const error = new Error(`Metadata string value "Bearer ${secretToken}" contains illegal characters; value ${secretValue}`);
    const plain = failureText(error, false);
    expect(plain).toEqual({ text: "secrets: unexpected error (SECRETS_DEBUG=1 shows details, with the token and values redacted)\n", exitCode: 1 });
    const debug = failureText(error, true).text;
    expect(debug).toContain('Metadata string value "Bearer [REDACTED:token]" contains illegal characters; value [REDACTED:api_key]');
    expect(debug).toMatch(/\n\s+at /);
    expect(debug).not.toContain(secretToken);
    expect(debug).not.toContain(secretValue);
    // The one-line message is a safety net too, for text the CLI passes on from elsewhere.
    expect(failureText(new CliError(`cannot use ${secretToken}`), false).text).toBe("secrets: cannot use [REDACTED:token]\n");
  });
});
