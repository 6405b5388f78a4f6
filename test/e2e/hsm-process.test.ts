import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { randomBytes } from "node:crypto";
import { afterAll, beforeAll, expect, it } from "vitest";
import { runCli } from "../cli/cli-process.js";
import { startServerProcess, type ServerProcess } from "../support/fixtures.js";
import { createSoftHsmToken, describeWithSoftHsm, SOFTHSM_MODULE, type SoftHsmToken } from "../support/softhsm.js";

// The built `secrets keys hsm-init` and server against a SoftHSM2 token, as separate processes:
// the key the command creates is what the server accepts, and every refusal is one stderr line.

describeWithSoftHsm("HSM master keys, as processes (SoftHSM2)", () => {
  const suffix = randomBytes(3).toString("hex");
  let token: SoftHsmToken;
  let cwd: string;
  const procs: ServerProcess[] = [];

  beforeAll(() => {
    token = createSoftHsmToken(`proc-${suffix}`);
    cwd = mkdtempSync(join(tmpdir(), "secrets-hsm-proc-"));
  });
  afterAll(() => {
    for (const p of procs) if (p.child.exitCode === null) p.kill("SIGKILL");
    rmSync(cwd, { recursive: true, force: true });
  });

  const hsmInit = (label: string, env: Record<string, string> = {}) =>
    runCli(["keys", "hsm-init", "--label", label], {
      cwd,
      env: { SECRETS_PKCS11_MODULE: SOFTHSM_MODULE, SECRETS_PKCS11_TOKEN_LABEL: token.label, SECRETS_PKCS11_PIN: token.pin, ...env },
    });

  it("`secrets keys hsm-init` creates a non-extractable AES-256 key once; a taken or unusable label or a wrong PIN is one line, exit 2", async () => {
    const created = await hsmInit("mk-cli");
    expect(created.stderr).toBe("");
    expect(created.code).toBe(0);
    expect(created.stdout).toBe(`token_label: ${token.label}\nlabel: mk-cli\nkey_type: AES-256\nsensitive: true\nextractable: false\n`);

    const again = await hsmInit("mk-cli");
    expect(again.code).toBe(2);
    expect(again.stderr).toBe('secrets: a key labelled "mk-cli" already exists in the token: choose another label\n');

    const unusable = await hsmInit("mk:1");
    expect(unusable.code).toBe(2);
    expect(unusable.stderr).toBe("secrets: --label must be 1 to 64 of A-Z a-z 0-9 . _ -\n");

    const wrongPin = await hsmInit("mk-other", { SECRETS_PKCS11_PIN: "0000-wrong" });
    expect(wrongPin.code).toBe(2);
    expect(wrongPin.stderr).toBe("secrets: SECRETS_PKCS11_PIN is not the token's user PIN (CKR_PIN_INCORRECT)\n");
    expect(wrongPin.stdout + wrongPin.stderr).not.toContain("0000-wrong");
  });

  it("the server refuses to start with one stderr line, exit 2, before contacting the database", async () => {
    const base = {
      DATABASE_URL: "postgres://postgres@127.0.0.1:1/never_reached",
      SECRETS_JWT_SECRET: "j".repeat(40),
      SECRETS_GRPC_ADDR: "127.0.0.1:0",
      ...token.env({ h1: "mk-cli" }),
    };
    const refused = async (env: Record<string, string>): Promise<string> => {
      const p = startServerProcess({ ...base, ...env });
      procs.push(p);
      expect(await p.exited).toBe(2);
      expect(p.stdout()).toBe("");
      const lines = p.stderr().split("\n").filter(Boolean);
      expect(lines).toHaveLength(1);
      expect(p.stderr()).not.toContain(token.pin);
      return lines[0] as string;
    };
    expect(await refused({ SECRETS_PKCS11_PIN: "0000-wrong" })).toBe(
      "secrets: SECRETS_PKCS11_PIN is not the token's user PIN (CKR_PIN_INCORRECT): set the right PIN",
    );
    expect(await refused({ SECRETS_PKCS11_KEYS: "h1:mk-nowhere" })).toMatch(/^secrets: SECRETS_PKCS11_KEYS: master key "h1" \(label "mk-nowhere"\) is not in the token/);
    expect(await refused({ SECRETS_PKCS11_MODULE: "/nonexistent/libpkcs11.so" })).toMatch(/^secrets: SECRETS_PKCS11_MODULE cannot be loaded as a PKCS#11 module/);
    // With the right PIN and label the keys pass: what stops it now is the unreachable database.
    const p = startServerProcess(base);
    procs.push(p);
    expect(await p.exited).toBe(1);
    expect(p.stderr() + p.stdout()).not.toMatch(/SECRETS_PKCS11/);
  });
});
