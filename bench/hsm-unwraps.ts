import { spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import { existsSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { createHsmMasterKey } from "../src/cli/commands/key-commands.js";
import { KeyBytes } from "../src/crypto/key-bytes.js";
import { createLocalKeyProvider, type KeyProvider } from "../src/crypto/key-provider.js";
import { keyClient } from "./rewrap.js";

/**
 * The "data-key unwraps through the HSM" phase: how many data keys per second the PKCS#11 provider
 * unwraps through a SoftHSM2 token (what a DEK cache miss costs with master keys in an HSM), at one
 * call in flight and at as many as the provider has sessions, against the local provider in the same
 * run. In-process, no server: it measures the provider, not the RPC around it. SoftHSM2 computes in
 * software on this machine's cores; a network HSM adds its round trip to each unwrap.
 */
export const HSM_PHASE = "data-key unwraps through the HSM (SoftHSM2)";

const SOFTHSM_MODULE = "/usr/lib/softhsm/libsofthsm2.so";

/** Unwraps per second at one number of calls in flight, for both providers. */
export interface HsmUnwrapRate {
  inFlight: number;
  hsmPerSecond: number;
  localPerSecond: number;
}

export type HsmUnwrapReport = { skipped: string } | { sessions: number; rates: HsmUnwrapRate[] };

/** A SoftHSM2 token in a temporary directory with one master key, and the settings that select it. */
export interface BenchToken {
  /** SECRETS_PKCS11_* for a server (master key id `h1`); SOFTHSM2_CONF is set in this process's environment. */
  env: Record<string, string>;
  label: string;
  pin: string;
  keyLabel: string;
  /** Removes the token and restores SOFTHSM2_CONF. */
  close(): void;
}

/**
 * Creates the token (or says why not: SoftHSM2 is not installed). Sets SOFTHSM2_CONF for this process
 * and the servers it starts: SoftHSM2 reads it when a process first initializes the module.
 */
export async function createBenchToken(): Promise<BenchToken | { skipped: string }> {
  if (!existsSync(SOFTHSM_MODULE) || spawnSync("softhsm2-util", ["--version"]).status !== 0) {
    return { skipped: "SoftHSM2 is not installed (apt-get install -y softhsm2)" };
  }
  const dir = mkdtempSync(join(tmpdir(), "bench-softhsm-"));
  const previousConf = process.env["SOFTHSM2_CONF"];
  const close = () => {
    if (previousConf === undefined) delete process.env["SOFTHSM2_CONF"];
    else process.env["SOFTHSM2_CONF"] = previousConf;
    rmSync(dir, { recursive: true, force: true });
  };
  try {
    mkdirSync(join(dir, "tokens"));
    const conf = join(dir, "softhsm2.conf");
    writeFileSync(conf, `directories.tokendir = ${join(dir, "tokens")}\nlog.level = ERROR\n`);
    process.env["SOFTHSM2_CONF"] = conf;
    const label = "bench";
    const pin = randomBytes(8).toString("hex");
    const init = spawnSync("softhsm2-util", ["--init-token", "--free", "--label", label, "--pin", pin, "--so-pin", randomBytes(8).toString("hex")]);
    if (init.status !== 0) {
      close();
      return { skipped: `softhsm2-util --init-token failed (exit ${init.status})` };
    }
    const keyLabel = "bench-mk";
    await createHsmMasterKey({ modulePath: SOFTHSM_MODULE, tokenLabel: label, pin, label: keyLabel });
    return {
      env: { SECRETS_PKCS11_MODULE: SOFTHSM_MODULE, SECRETS_PKCS11_TOKEN_LABEL: label, SECRETS_PKCS11_PIN: pin, SECRETS_PKCS11_KEYS: `h1:${keyLabel}` },
      label,
      pin,
      keyLabel,
      close,
    };
  } catch (e) {
    close();
    throw e;
  }
}

/**
 * Measures for `seconds` per provider and concurrency, on `token` or a token of its own; skipped
 * (with the reason) where SoftHSM2 is not installed.
 */
export async function measureHsmUnwraps(options: { seconds: number; sessions?: number; token?: BenchToken }): Promise<HsmUnwrapReport> {
  const token = options.token ?? (await createBenchToken());
  if ("skipped" in token) return token;
  const sessions = options.sessions ?? 4;
  const providers: KeyProvider[] = [];
  try {
    // Loaded here, after SOFTHSM2_CONF is set: the module reads it when it is first initialized.
    const { createPkcs11KeyProvider } = await import("../src/crypto/pkcs11-provider.js");
    const hsm = createPkcs11KeyProvider({
      modulePath: SOFTHSM_MODULE,
      token: { label: token.label },
      pin: KeyBytes.from(Buffer.from(token.pin)),
      keys: new Map([["h1", token.keyLabel]]),
      sessions,
    });
    providers.push(hsm);
    const local = createLocalKeyProvider(new Map([["h1", KeyBytes.random()]]));
    providers.push(local);
    const rates: HsmUnwrapRate[] = [];
    for (const inFlight of [1, sessions]) {
      rates.push({
        inFlight,
        hsmPerSecond: await unwrapsPerSecond(hsm, inFlight, options.seconds),
        localPerSecond: await unwrapsPerSecond(local, inFlight, options.seconds),
      });
    }
    return { sessions, rates };
  } finally {
    for (const provider of providers) provider.destroy();
    if (options.token === undefined) token.close();
  }
}

/**
 * `--hsm`: makes the token's key (`h1`) the active master key through RotateMasterKey, and waits
 * until every data key is rewrapped under it, so that the phases after it run on data keys the HSM
 * wraps: their DEK cache misses unwrap through it, their hits do not.
 */
export async function activateHsmKey(address: string, operatorToken: string, log: (line: string) => void): Promise<void> {
  const keys = keyClient(address);
  try {
    const rotated = await keys.call("rotateMasterKey", { keyId: "h1" }, operatorToken, 60_000);
    log(`--hsm: master key h1 (SoftHSM2) is active; ${rotated.dataKeysToRewrap} data keys to rewrap`);
    const deadline = performance.now() + 600_000;
    while ((await keys.call("getKeyStatus", {}, operatorToken, 10_000)).dataKeysToRewrap > 0n) {
      if (performance.now() > deadline) throw new Error("--hsm: the rewrap under h1 did not finish in 10 minutes");
      await new Promise((r) => setTimeout(r, 500));
    }
    log("--hsm: every data key is wrapped under h1");
  } finally {
    keys.close();
  }
}

/** Unwraps of one wrapped data key, `inFlight` at a time for `seconds` (after a short warm-up). */
async function unwrapsPerSecond(provider: KeyProvider, inFlight: number, seconds: number): Promise<number> {
  const context = { developerId: "bench-dev", dekVersion: 1 };
  const dek = KeyBytes.random();
  const wrapped = await provider.wrap("h1", dek, context);
  const run = async (ms: number): Promise<number> => {
    const until = performance.now() + ms;
    let done = 0;
    await Promise.all(
      Array.from({ length: inFlight }, async () => {
        while (performance.now() < until) {
          const key = await provider.unwrap("h1", wrapped, context);
          if (!key.equals(dek)) throw new Error("an unwrap returned another key");
          key.zeroize();
          done += 1;
        }
      }),
    );
    return done;
  };
  await run(Math.min(200, seconds * 100));
  const started = performance.now();
  const done = await run(seconds * 1000);
  return done / ((performance.now() - started) / 1000);
}

/** The phase as lines for the bench's report. */
export function describeHsmUnwraps(report: HsmUnwrapReport): string[] {
  if ("skipped" in report) return [`${HSM_PHASE}: skipped, ${report.skipped}`];
  return [
    `${HSM_PHASE} (in-process, ${report.sessions} sessions):`,
    ...report.rates.map(
      (r) =>
        `  ${r.inFlight} in flight: ${r.hsmPerSecond.toFixed(0)} unwraps/s through the HSM, ${r.localPerSecond.toFixed(0)}/s with the key in memory (${(r.hsmPerSecond / r.localPerSecond).toFixed(2)}×)`,
    ),
  ];
}
