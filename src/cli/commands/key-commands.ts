import type { Command } from "commander";
import { SecretsError, type KeyStatus } from "@secrets-service/client";
import { CliError, EXIT } from "../cli-error.js";
import { formatTable, formatTime, note, printJson, printLine } from "../output.js";
import type { Session } from "../session.js";
import { requireTypedBack } from "./type-back.js";

/**
 * `secrets keys status | rotate-master | rotate-developer | shred`: KeyService for
 * operators (and, for status and rotate-developer on one's own key, `secrets:keys`).
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
