import { readFileSync } from "node:fs";
import type { Command } from "commander";
import { SecretsError, type KeyStatus } from "@secrets-service/client";
import { CliError, EXIT } from "../cli-error.js";
import { formatTable, formatTime, note, printJson, printLine } from "../output.js";
import type { Session } from "../session.js";
import { requireTypedBack } from "./type-back.js";

/**
 * `secrets keys status | rotate-master | rotate-developer | shred`: KeyService for
 * operators (and, for status and rotate-developer on one's own key, `secrets:keys`);
 * `secrets keys hsm-init` creates a master key in a PKCS#11 token, without the server.
 * Results print as `field: value` lines named as in keys.proto, every field
 * included even when zero, so a runbook can wait for `data_keys_to_rewrap: 0`.
 */
export function registerKeyCommands(program: Command, session: Session): void {
  const keys = program.command("keys").description("key status, rotation and crypto-shredding (KeyService)");

  keys
    .command("status")
    .description("the key hierarchy: active master key, data keys, rewrap and re-encryption progress, live replicas")
    .option("--developer <id>", "one developer's data keys (default: everything for an operator, your own for secrets:keys)")
    .action(async (opts: { developer?: string }, command: Command) => {
      const status = await session.client(command).keys.status(opts.developer ? { developerId: opts.developer } : {});
      if (session.options(command).json) return printJson(status);
      printLine(formatStatus(status));
    });

  keys
    .command("rotate-master")
    .description("activate a master key that every live replica holds; data keys are rewrapped under it in the background (operator)")
    .argument("<key-id>", "the id of a master key in every replica's keyring, e.g. k2")
    .action(async (keyId: string, _opts: unknown, command: Command) => {
      const r = await session.client(command).keys.rotateMasterKey(keyId);
      if (session.options(command).json) return printJson(r);
      printLine(fieldLines([["active_master_key_id", r.activeKeyId], ["previous_key_id", r.previousKeyId], ["data_keys_to_rewrap", r.dataKeysToRewrap]]));
      note("data keys are rewrapped in the background: done when `secrets keys status` prints data_keys_to_rewrap: 0");
    });

  keys
    .command("rotate-developer")
    .description("a new data key version for a developer; their values are re-encrypted in the background")
    .option("--developer <id>", "the developer (operator); default: yourself (secrets:keys)")
    .action(async (opts: { developer?: string }, command: Command) => {
      const r = await session.client(command).keys.rotateDeveloperKey(opts.developer ? { developerId: opts.developer } : {});
      if (session.options(command).json) return printJson(r);
      printLine(
        fieldLines([
          ["developer_id", r.developerId],
          ["new_version", r.newVersion],
          ["previous_version", r.previousVersion],
          ["versions_to_reencrypt", r.versionsToReencrypt],
        ]),
      );
      note(`values are re-encrypted in the background: done when \`secrets keys status --developer ${r.developerId}\` prints versions_to_reencrypt: 0`);
    });

  keys
    .command("shred")
    .description("delete a developer's secrets and data keys for good (operator); asks for the id to be typed back at a terminal")
    .argument("<developer-id>", "the developer to shred")
    .option("-y, --yes", "do not ask (required when stdin is not a terminal)")
    .action(async (developerId: string, opts: { yes?: boolean }, command: Command) => {
      const client = session.client(command);
      await requireTypedBack(`shredding developer ${developerId}`, developerId, opts.yes);
      let r;
      try {
        r = await client.keys.shredDeveloper({ developerId, confirmDeveloperId: developerId });
      } catch (e) {
        // The service answers NOT_FOUND after the same evictions; say plainly that there was nothing to shred.
        if (e instanceof SecretsError && e.reason === "DEVELOPER_NOT_FOUND") {
          throw new CliError(`nothing existed for developer ${developerId}: no secrets or data keys were stored, so nothing was shredded`, EXIT.service);
        }
        throw e;
      }
      if (r.cacheCleanupFailed) note("warning: the cache clean-up failed (see the server log); the entries left hold ciphertexts nobody can open, and expire");
      if (session.options(command).json) return printJson(r);
      printLine(
        fieldLines([
          ["developer_id", r.developerId],
          ["secrets_deleted", r.secretsDeleted],
          ["versions_deleted", r.versionsDeleted],
          ["data_keys_deleted", r.dataKeysDeleted],
          ["cache_entries_deleted", r.cacheEntriesDeleted],
          ["replicas_evicted", r.replicasEvicted],
        ]),
      );
    });

  keys
    .command("hsm-init")
    .description("create an AES-256 master key in a PKCS#11 token: sensitive, never extractable (talks to the module, not the server)")
    .requiredOption("--label <label>", "the new key's label, which SECRETS_PKCS11_KEYS names (id:label)")
    .option("--module <path>", "the PKCS#11 module (default: SECRETS_PKCS11_MODULE)")
    .option("--token-label <label>", "the token's label (default: SECRETS_PKCS11_TOKEN_LABEL)")
    .action(async (opts: { label: string; module?: string; tokenLabel?: string }, command: Command) => {
      const modulePath = opts.module ?? process.env["SECRETS_PKCS11_MODULE"];
      const tokenLabel = opts.tokenLabel ?? process.env["SECRETS_PKCS11_TOKEN_LABEL"];
      if (!modulePath) throw new CliError("set --module or SECRETS_PKCS11_MODULE to the PKCS#11 module's path");
      if (!tokenLabel) throw new CliError("set --token-label or SECRETS_PKCS11_TOKEN_LABEL to the token's label");
      await createHsmMasterKey({ modulePath, tokenLabel, pin: pinFromEnvironment(), label: opts.label });
      if (session.options(command).json) return printJson({ tokenLabel, label: opts.label, keyType: "AES-256", sensitive: true, extractable: false });
      printLine(fieldLines([["token_label", tokenLabel], ["label", opts.label], ["key_type", "AES-256"], ["sensitive", "true"], ["extractable", "false"]]));
    });
}

/** The token's user PIN, from SECRETS_PKCS11_PIN or the file SECRETS_PKCS11_PIN_FILE names; never a flag, which `ps` would show. */
function pinFromEnvironment(): string {
  const inline = process.env["SECRETS_PKCS11_PIN"];
  const file = process.env["SECRETS_PKCS11_PIN_FILE"];
  if (inline && file) throw new CliError("set only one of SECRETS_PKCS11_PIN and SECRETS_PKCS11_PIN_FILE");
  if (inline) return inline;
  if (!file) throw new CliError("set SECRETS_PKCS11_PIN or SECRETS_PKCS11_PIN_FILE to the token's user PIN");
  try {
    return readFileSync(file, "utf8").trim();
  } catch {
    throw new CliError("SECRETS_PKCS11_PIN_FILE cannot be read");
  }
}

/**
 * Creates an AES-256 secret key labelled `label` in the token: a token object, private, sensitive,
 * never extractable, allowed to encrypt and decrypt only (what the server's PKCS#11 provider
 * checks at start). Refuses a label already taken, so a key is never shadowed. Loads the module
 * itself; exported for the tests, which make their master keys with it.
 */
export async function createHsmMasterKey(o: { modulePath: string; tokenLabel: string; pin: string; label: string }): Promise<void> {
  // The labels SECRETS_PKCS11_KEYS accepts (src/app/config.ts): a key with any other label could not be configured.
  if (!/^[A-Za-z0-9._-]{1,64}$/.test(o.label)) throw new CliError("--label must be 1 to 64 of A-Z a-z 0-9 . _ -");
  const { default: pkcs11js } = await import("pkcs11js");
  const code = (e: unknown) => (e instanceof pkcs11js.Pkcs11Error ? e.code : undefined);
  const lib = new pkcs11js.PKCS11();
  try {
    lib.load(o.modulePath);
  } catch {
    throw new CliError("the PKCS#11 module cannot be loaded: check --module / SECRETS_PKCS11_MODULE");
  }
  let initializedHere = true;
  try {
    lib.C_Initialize({ flags: pkcs11js.CKF_OS_LOCKING_OK });
  } catch (e) {
    // Already initialized by this process (the tests' server): leave finalizing to it.
    if (code(e) !== pkcs11js.CKR_CRYPTOKI_ALREADY_INITIALIZED) throw e;
    initializedHere = false;
  }
  try {
    const slots = lib.C_GetSlotList(true).filter((s) => lib.C_GetTokenInfo(s).label.trimEnd() === o.tokenLabel);
    if (slots.length !== 1) throw new CliError(`${slots.length === 0 ? "no" : "more than one"} token is labelled as --token-label / SECRETS_PKCS11_TOKEN_LABEL says`);
    const session = lib.C_OpenSession(slots[0] as Buffer, pkcs11js.CKF_SERIAL_SESSION | pkcs11js.CKF_RW_SESSION);
    try {
      try {
        lib.C_Login(session, pkcs11js.CKU_USER, o.pin);
      } catch (e) {
        if (code(e) === pkcs11js.CKR_PIN_INCORRECT) throw new CliError("SECRETS_PKCS11_PIN is not the token's user PIN (CKR_PIN_INCORRECT)");
        if (code(e) !== pkcs11js.CKR_USER_ALREADY_LOGGED_IN) throw e;
      }
      const label = { type: pkcs11js.CKA_LABEL, value: o.label };
      lib.C_FindObjectsInit(session, [{ type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY }, label]);
      const taken = lib.C_FindObjects(session, 1).length > 0;
      lib.C_FindObjectsFinal(session);
      if (taken) throw new CliError(`a key labelled "${o.label}" already exists in the token: choose another label`);
      lib.C_GenerateKey(session, { mechanism: pkcs11js.CKM_AES_KEY_GEN }, [
        { type: pkcs11js.CKA_CLASS, value: pkcs11js.CKO_SECRET_KEY },
        { type: pkcs11js.CKA_KEY_TYPE, value: pkcs11js.CKK_AES },
        { type: pkcs11js.CKA_VALUE_LEN, value: 32 },
        label,
        { type: pkcs11js.CKA_TOKEN, value: true },
        { type: pkcs11js.CKA_PRIVATE, value: true },
        { type: pkcs11js.CKA_SENSITIVE, value: true },
        { type: pkcs11js.CKA_EXTRACTABLE, value: false },
        { type: pkcs11js.CKA_ENCRYPT, value: true },
        { type: pkcs11js.CKA_DECRYPT, value: true },
        { type: pkcs11js.CKA_WRAP, value: false },
        { type: pkcs11js.CKA_UNWRAP, value: false },
        { type: pkcs11js.CKA_SIGN, value: false },
        { type: pkcs11js.CKA_VERIFY, value: false },
        { type: pkcs11js.CKA_DERIVE, value: false },
      ]);
    } finally {
      lib.C_CloseSession(session);
    }
  } finally {
    if (initializedHere) lib.C_Finalize();
  }
}

/** `name: value` lines; an empty string prints as `-` so that every line has a value. */
function fieldLines(fields: readonly (readonly [string, string | number])[]): string {
  return fields.map(([name, value]) => `${name}: ${value === "" ? "-" : value}`).join("\n");
}

function formatStatus(s: KeyStatus): string {
  const perMaster = Object.entries(s.dataKeysPerMasterKey).map(([id, n]) => `${id}=${n}`);
  const lines = [
    fieldLines([
      ["active_master_key_id", s.activeMasterKeyId],
      ["data_keys_to_rewrap", s.dataKeysToRewrap],
      ["versions_to_reencrypt", s.versionsToReencrypt],
      ["data_keys_per_master_key", perMaster.join(" ")],
      ["master_keys", s.masterKeys.map((k) => `${k.keyId}=${k.provider}`).join(" ")],
      ["replicas", s.replicas.length],
    ]),
  ];
  if (s.replicas.length > 0) {
    lines.push(indent(formatTable(["ID", "KEYS", "HEARTBEAT"], s.replicas.map((p) => [p.id, p.keyIds.join(","), formatTime(p.lastHeartbeat)]))));
  }
  lines.push(fieldLines([["data_keys", s.dataKeys.length]]));
  if (s.dataKeys.length > 0) {
    const header = ["DEVELOPER", "VERSION", "STATE", "MASTER KEY", "ENCRYPTIONS", "SECRET VERSIONS", "CREATED"];
    const rows = s.dataKeys.map((k) => [
      k.developerId,
      String(k.version),
      k.state,
      k.masterKeyId === "" ? "-" : k.masterKeyId,
      String(k.encryptionCount),
      String(k.secretVersions),
      formatTime(k.createdAt),
    ]);
    lines.push(indent(formatTable(header, rows)));
  }
  return lines.join("\n");
}

function indent(text: string): string {
  return text.replace(/^/gm, "  ");
}
