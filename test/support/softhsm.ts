/**
 * A real SoftHSM2 token for tests, in a temporary directory.
 *
 * SoftHSM reads SOFTHSM2_CONF once, when a process first initializes the module, so every token of
 * one test process lives in one directory made here (removed after the file's tests); a test file
 * creates the tokens it needs before it starts a provider (tokens created later may not be seen by
 * the running module).
 *
 * Suites using it run under `describeWithSoftHsm`: skipped where SoftHSM2 is not installed, except
 * in CI (`CI=true`, .ci/run installs it), where a missing SoftHSM2 fails them instead.
 */
import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, describe, it } from "vitest";
import pkcs11js from "pkcs11js";
import { createHsmMasterKey } from "../../src/cli/commands/key-commands.js";

/** Debian's SoftHSM2 module. */
export const SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so";

/** Whether SoftHSM2's module and softhsm2-util are installed here. */
export function softHsmInstalled(): boolean {
  return existsSync(SOFTHSM_MODULE) && spawnSync("softhsm2-util", ["--version"]).status === 0;
}

/** `describe` for suites that need SoftHSM2 (see the opening comment). */
export function describeWithSoftHsm(name: string, fn: () => void): void {
  if (softHsmInstalled()) describe(name, fn);
  else if (process.env["CI"] !== "true") describe.skip(name, fn);
  else {
    // One failing test in place of the suite, so that CI's totals count it as failed, not skipped.
    describe(name, () => {
      it("has SoftHSM2 installed (CI=true requires it; .ci/run installs it)", () => {
        throw new Error("SoftHSM2 is not installed: apt-get install -y softhsm2");
      });
    });
  }
}

let tokenDir: string | undefined;

// Registered on the root suite of every test file that imports this module: the tokens go with the file.
afterAll(() => {
  if (tokenDir !== undefined) rmSync(tokenDir, { recursive: true, force: true });
});

/** This process's token directory and config, made on first use and removed at exit. */
function softHsmConfig(): string {
  if (tokenDir === undefined) {
    if (!softHsmInstalled()) throw new Error("SoftHSM2 is not installed (apt-get install -y softhsm2); CI=true requires it");
    const dir = mkdtempSync(join(tmpdir(), "softhsm-"));
    mkdirSync(join(dir, "tokens"));
    writeFileSync(join(dir, "softhsm2.conf"), `directories.tokendir = ${join(dir, "tokens")}\nobjectstore.backend = file\nlog.level = ERROR\n`);
    process.env["SOFTHSM2_CONF"] = join(dir, "softhsm2.conf");
    tokenDir = dir;
  }
  return process.env["SOFTHSM2_CONF"] as string;
}

/** A token: its label, its user PIN (random, never printed) and the env settings that select it. */
export interface SoftHsmToken {
  label: string;
  pin: string;
  /** SECRETS_PKCS11_* for a service using this token with `keys` (master key id → key label). */
  env(keys: Record<string, string>): Record<string, string>;
  /** Creates an AES-256, sensitive, non-extractable key labelled `label` (what `secrets keys hsm-init` does). */
  createKey(label: string): Promise<void>;
}

/** Initializes a fresh token labelled `label` in this process's token directory. */
export function createSoftHsmToken(label: string): SoftHsmToken {
  const conf = softHsmConfig();
  const pin = randomBytes(8).toString("hex");
  const soPin = randomBytes(8).toString("hex");
  const r = spawnSync("softhsm2-util", ["--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", soPin], {
    env: { ...process.env, SOFTHSM2_CONF: conf },
    encoding: "utf8",
  });
  if (r.status !== 0) throw new Error(`softhsm2-util --init-token failed (exit ${r.status}): ${r.stderr.trim()}`);
  return {
    label,
    pin,
    env: (keys) => ({
      SECRETS_PKCS11_MODULE: SOFTHSM_MODULE,
      SECRETS_PKCS11_TOKEN_LABEL: label,
      SECRETS_PKCS11_PIN: pin,
      SECRETS_PKCS11_KEYS: Object.entries(keys)
        .map(([id, keyLabel]) => `${id}:${keyLabel}`)
        .join(","),
    }),
    createKey: (keyLabel) => createHsmMasterKey({ modulePath: SOFTHSM_MODULE, tokenLabel: label, pin, label: keyLabel }),
  };
}

/**
 * A second handle on the module loaded in this process: what a test uses to act on the token behind
 * a running provider's back (close every session, read attributes). The module is shared process
 * state, so this never finalizes it.
 */
export function moduleHandle(): pkcs11js.PKCS11 {
  softHsmConfig();
  const lib = new pkcs11js.PKCS11();
  lib.load(SOFTHSM_MODULE);
  try {
    lib.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (e) {
    if (!(e instanceof pkcs11js.Pkcs11Error && e.code === pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED)) throw e;
  }
  return lib;
}

/** The slot of the token labelled `label`. */
export function slotOf(lib: pkcs11js.PKCS11, label: string): Buffer {
  const slot = lib.C_GetSlotList(true).find((s) => lib.C_GetTokenInfo(s).label.trimEnd() === label);
  if (slot === undefined) throw new Error(`no token labelled ${label}`);
  return slot;
}
