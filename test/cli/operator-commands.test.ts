import { randomBytes } from "node:crypto";
import { appendFileSync, mkdtempSync, readFileSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT, startDevServer, type DevServer } from "../support/fixtures.js";
import { cliRunner, runAtTerminal, type CliResult } from "./cli-process.js";

// The operator's commands as an operator meets them: `node dist/cli/main.js` against
// a dev-mode server process whose keyring holds k1 and k2, with an operator token
// minted by `secrets token --scope operator`. Secret values are markers that must
// never show in what these commands print.

const VALUES = ["MARKER_VALUE_ONE_4f1c", "MARKER_VALUE_TWO_9a2e"];
const NO_STACK = /\n\s+at /;

let server: DevServer;
let cli: ReturnType<typeof cliRunner>;
let operator = "";
let alice = "";

/** The JWT payload of `token` (the CLI minted it; the test only reads its claims). */
function claims(token: string): { sub: string; scope: string } {
  return JSON.parse(Buffer.from(token.split(".")[1] ?? "", "base64url").toString("utf8")) as { sub: string; scope: string };
}

/** Runs the CLI as the operator. */
const ops = (args: string[], input?: string) => cli(args, { env: { SECRETS_TOKEN: operator }, ...(input !== undefined ? { input } : {}) });

/** Asserts a run printed neither a marker value nor a stack trace. */
function expectClean(r: CliResult): void {
  for (const v of VALUES) expect(r.stdout + r.stderr).not.toContain(v);
  expect(r.stderr).not.toMatch(NO_STACK);
}

/** Runs `args` until stdout matches `pattern` (background key work), or fails after 30 s. */
async function until(args: string[], pattern: RegExp): Promise<CliResult> {
  const deadline = Date.now() + 30_000;
  for (;;) {
    const r = await ops(args);
    if (pattern.test(r.stdout) || Date.now() > deadline) return r;
    await new Promise((resolve) => setTimeout(resolve, 500));
  }
}

beforeAll(async () => {
  server = await startDevServer();
  // A second master key in the dev keyring, read at start, so that rotate-master has a key to move to.
  await server.stop();
  appendFileSync(join(server.dataDir, "master-keys"), `k2:${randomBytes(32).toString("base64")}\n`);
  await server.start();
  cli = cliRunner({ SECRETS_ADDR: server.address, SECRETS_DATA_DIR: server.dataDir });
  operator = (await cli(["token", "--developer", "ops", "--scope", "operator"])).stdout.trim();
  alice = (await cli(["token", "--developer", "alice"])).stdout.trim();
  for (const [i, name] of ["alice_one", "alice_two"].entries()) {
    const created = await cli(["create", name], { env: { SECRETS_TOKEN: alice }, input: VALUES[i] as string });
    expect(created.code, created.stderr).toBe(0);
  }
  expect((await cli(["access", "alice_one"], { env: { SECRETS_TOKEN: alice } })).stdout).toBe(VALUES[0]);
});

afterAll(async () => {
  await server?.dispose();
});

describe("version and operator tokens", () => {
  it("--version prints the package's version, and only as the first argument", async () => {
    const { version } = JSON.parse(readFileSync(join(PROJECT_ROOT, "package.json"), "utf8")) as { version: string };
    expect(await cli(["--version"])).toMatchObject({ code: 0, stdout: `${version}\n`, stderr: "" });
    expect(await cli(["-V"])).toMatchObject({ code: 0, stdout: `${version}\n`, stderr: "" });
    // After a subcommand, --version is still that command's own option.
    expect(await cli(["access", "alice_one", "--version", "1"], { env: { SECRETS_TOKEN: alice } })).toMatchObject({ code: 0, stdout: VALUES[0], stderr: "" });
  });

  it("token --scope operator mints the scope with a warning on stderr; other tokens stay without it", async () => {
    const minted = await cli(["token", "--scope", "operator", "--developer", "ops2"]);
    expect(minted.code).toBe(0);
    expect(claims(minted.stdout.trim())).toMatchObject({ sub: "ops2", scope: "secrets:operator" });
    expect(minted.stderr).toMatch(/^warning: an operator token can read every developer's audit trail and rotate and shred keys/);
    expect(minted.stderr).not.toContain(minted.stdout.trim());

    const plain = await cli(["token"]);
    expect(plain.stderr).toBe("");
    expect(claims(plain.stdout.trim()).scope.split(" ")).toEqual(["secrets:read", "secrets:access", "secrets:write", "secrets:keys"]);

    // Still dev mode only: no dev server's jwt-secret, no token of any scope.
    const empty = mkdtempSync(join(tmpdir(), "secrets-not-dev-"));
    try {
      const refused = await cli(["token", "--scope", "operator", "--data-dir", empty]);
      expect(refused).toMatchObject({ code: 2, stdout: "" });
      expect(refused.stderr).toMatch(/no dev-mode JWT secret/);
    } finally {
      rmSync(empty, { recursive: true, force: true });
    }
  });
});

describe("keys", () => {
  it("status prints every field, zero counts included, as text and JSON", async () => {
    const status = await ops(["keys", "status"]);
    expect(status.code, status.stderr).toBe(0);
    expect(status.stdout).toMatch(/^active_master_key_id: k1$/m);
    expect(status.stdout).toMatch(/^data_keys_to_rewrap: 0$/m);
    expect(status.stdout).toMatch(/^versions_to_reencrypt: 0$/m);
    expect(status.stdout).toMatch(/^data_keys_per_master_key: .*k1=\d+/m);
    expect(status.stdout).toMatch(/^master_keys: k1=env k2=env$/m);
    expect(status.stdout).toMatch(/^replicas: 1\n {2}ID\s+KEYS\s+HEARTBEAT\n {2}\S+\s+k1,k2\s/m);
    expectClean(status);

    const json = JSON.parse((await ops(["keys", "status", "--json"])).stdout) as Record<string, unknown>;
    expect(json).toMatchObject({ activeMasterKeyId: "k1", dataKeysToRewrap: 0, versionsToReencrypt: 0 });

    // A developer's own status (secrets:keys): their data keys, no master key.
    const own = await cli(["keys", "status"], { env: { SECRETS_TOKEN: alice } });
    expect(own.code, own.stderr).toBe(0);
    expect(own.stdout).toMatch(/^active_master_key_id: -$/m);
    expect(own.stdout).toMatch(/^ {2}alice\s+\d+\s+active\s+k1\s+\d+\s+2\s/m);
  });

  it("rotate-master answers with the new key, and status reaches data_keys_to_rewrap: 0", { timeout: 90_000 }, async () => {
    const notOperator = await cli(["keys", "rotate-master", "k2"], { env: { SECRETS_TOKEN: alice } });
    expect(notOperator.code).toBe(1);
    expect(notOperator.stderr).toMatch(/^secrets: PERMISSION_DENIED/);
    const unknown = await ops(["keys", "rotate-master", "k9"]);
    expect(unknown.code).toBe(1);
    expect(unknown.stderr).toMatch(/FAILED_PRECONDITION \(KEY_STATE\)/);

    const rotated = await ops(["keys", "rotate-master", "k2"]);
    expect(rotated.code, rotated.stderr).toBe(0);
    expect(rotated.stdout).toMatch(/^active_master_key_id: k2\nprevious_key_id: k1\ndata_keys_to_rewrap: \d+\n$/);
    expect(rotated.stderr).toMatch(/secrets keys status/);

    const done = await until(["keys", "status"], /^data_keys_to_rewrap: 0$/m);
    expect(done.stdout).toMatch(/^active_master_key_id: k2$/m);
    expect(done.stdout).toMatch(/^data_keys_to_rewrap: 0$/m);
  });

  it("rotate-developer makes a new data key version, re-encrypted in the background", { timeout: 90_000 }, async () => {
    const rotated = await ops(["keys", "rotate-developer", "--developer", "alice"]);
    expect(rotated.code, rotated.stderr).toBe(0);
    const [, next, previous] = /^developer_id: alice\nnew_version: (\d+)\nprevious_version: (\d+)\nversions_to_reencrypt: \d+\n$/.exec(rotated.stdout) ?? [];
    expect(Number(next)).toBeGreaterThan(Number(previous));

    const done = await until(["keys", "status", "--developer", "alice"], /^versions_to_reencrypt: 0$/m);
    expect(done.stdout).toMatch(/^versions_to_reencrypt: 0$/m);
    expect(done.stdout).toMatch(new RegExp(`^ {2}alice\\s+${next}\\s+active\\s+k2\\s+\\d+\\s+2\\s`, "m"));
    // The values survive the rotation.
    expect((await cli(["access", "alice_two"], { env: { SECRETS_TOKEN: alice } })).stdout).toBe(VALUES[1]);
  });
});

describe("audit list", () => {
  it("pages through a developer's trail with the RPC's filters, as a table or JSON, never with a value", { timeout: 90_000 }, async () => {
    const all = await ops(["audit", "list", "--developer", "alice", "--json"]);
    expect(all.code, all.stderr).toBe(0);
    const events = JSON.parse(all.stdout) as { action: string; secretName: string; developerId: string; callerSubject: string; outcome: string }[];
    expect(events.filter((e) => e.action === "CreateSecret").map((e) => e.secretName).sort()).toEqual(["alice_one", "alice_two"]);
    expect(events.every((e) => e.developerId === "alice")).toBe(true);
    // The operator's own rotation of alice's key is in alice's trail, with the operator as caller.
    expect(events).toContainEqual(expect.objectContaining({ action: "RotateDeveloperKey", callerSubject: "ops", outcome: "OK" }));
    expectClean(all);

    const filtered = JSON.parse((await ops(["audit", "list", "--developer", "alice", "--action", "AccessSecret", "--secret", "alice_two", "--outcome", "ok", "--json"])).stdout) as { action: string; secretName: string }[];
    expect(filtered.length).toBeGreaterThan(0);
    expect(filtered.every((e) => e.action === "AccessSecret" && e.secretName === "alice_two")).toBe(true);

    const table = await ops(["audit", "list", "--developer", "alice", "--limit", "2", "--since", "1h"]);
    expect(table.code, table.stderr).toBe(0);
    expect(table.stdout).toMatch(/^TIME\s+ACTION\s+SECRET\s+VERSION\s+OUTCOME\s+CALLER\s+REQUEST ID\n/);
    expect(table.stdout.trim().split("\n")).toHaveLength(3);
    expectClean(table);

    const before = await ops(["audit", "list", "--developer", "alice", "--until", "2000-01-01T00:00:00Z"]);
    expect(before).toMatchObject({ code: 0, stdout: "", stderr: "no audit events\n" });

    // Another developer's trail needs the operator scope.
    const denied = await cli(["audit", "list", "--developer", "ops"], { env: { SECRETS_TOKEN: alice } });
    expect(denied.code).toBe(1);
    expect(denied.stderr).toMatch(/^secrets: PERMISSION_DENIED/);

    const badTime = await ops(["audit", "list", "--since", "yesterday"]);
    expect(badTime.code).toBe(2);
    expect(badTime.stderr).toMatch(/--since/);
  });
});

/** The CLI at a terminal as the operator, typing `typed` once it asks for the id. */
const atTerminal = (args: string[], typed: string) =>
  runAtTerminal(args, { SECRETS_ADDR: server.address, SECRETS_TOKEN: operator }, { prompt: "to confirm: ", typed });

describe("keys shred", () => {
  const aliceSecrets = async () => JSON.parse((await cli(["list", "--json"], { env: { SECRETS_TOKEN: alice } })).stdout) as unknown[];

  it("needs --yes off a terminal and the id typed back at one; a mistyped id shreds nothing", { timeout: 90_000 }, async () => {
    const refused = await ops(["keys", "shred", "alice"]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toMatch(/^secrets: shredding developer alice cannot be undone: pass --yes/);
    const mistyped = await atTerminal(["keys", "shred", "alice"], "alicf\r");
    expect(mistyped.stdout).toMatch(/Type "alice" to confirm/);
    expect(mistyped.stdout).toMatch(/not confirmed/);
    expect(mistyped.code).toBe(1);
    expect(await aliceSecrets()).toHaveLength(2);
  });

  it("prints what was destroyed, then says plainly that nothing existed", { timeout: 90_000 }, async () => {
    const typed = await atTerminal(["keys", "shred", "alice"], "alice\r");
    expect(typed.code, typed.stdout).toBe(0);
    expect(typed.stdout).toMatch(/developer_id: alice\r?\nsecrets_deleted: 2\r?\nversions_deleted: 2\r?\ndata_keys_deleted: [1-9]\d*\r?\ncache_entries_deleted: \d+\r?\nreplicas_evicted: 1/);
    expect(await aliceSecrets()).toHaveLength(0);

    for (const developer of ["alice", "never_existed"]) {
      const again = await ops(["keys", "shred", developer, "--yes"]);
      expect(again).toMatchObject({ code: 1, stdout: "" });
      expect(again.stderr).toBe(`secrets: nothing existed for developer ${developer}: no secrets or data keys were stored, so nothing was shredded\n`);
    }
  });
});
