import { Option, type Command } from "commander";
import type { JsonObject, Rotation, Secret, SecretVersion } from "@secrets-service/client";
import { CliError } from "../cli-error.js";
import { confirm } from "../confirm.js";
import { formatEnvLine } from "../env-file.js";
import { formatRecord, formatTable, formatTime, note, printJson, printLine, truncate } from "../output.js";
import { jsonObject, namesFrom, nonNegativeInt, positiveInt } from "../parse-args.js";
import { hasValueFlag, readValue, VALUE_HELP, type ValueFlags } from "../read-value.js";
import type { Session } from "../session.js";
import { formatDuration, pointInTime } from "./duration.js";
import { createLifecycle, lifecycleOptions, updateLifecycle, type LifecycleFlags } from "./lifecycle-options.js";

/**
 * The commands that map one to one onto SecretService calls: create, get, list,
 * update, delete, restore, access, versions, destroy-version, resolve. Of these only
 * `access` and `resolve` print values.
 */
export function registerSecretCommands(program: Command, session: Session): void {
  const valueOptions = (command: Command) =>
    command
      .option("--value-file <path>", VALUE_HELP.valueFile)
      .option("--value <value>", VALUE_HELP.value)
      .option("--keep-newline", VALUE_HELP.keepNewline);

  const createCommand = valueOptions(
    program
      .command("create")
      .description("create a secret at version 1; the value is read from stdin unless --value-file is given")
      .argument("<name>", "the secret's name")
      .option("--description <text>", "what the secret is for")
      .option("--metadata <json>", "a JSON object of attributes, e.g. '{\"env\":\"prod\"}'", jsonObject),
  );
  lifecycleOptions(createCommand, false).action(async (name: string, opts: ValueFlags & LifecycleFlags & { description?: string; metadata?: JsonObject }, command: Command) => {
    const lifecycle = createLifecycle(opts);
    const client = session.client(command);
    const value = await readValue(opts, `value for ${name}`);
    const secret = await client.secrets.create({ name, value, description: opts.description ?? "", metadata: opts.metadata ?? {}, ...lifecycle });
    if (session.options(command).json) printJson(secretJson(secret));
    else printLine(`created ${secret.name} (version ${secret.version})`);
  });

  program
    .command("get")
    .description("show a secret's attributes (never its value)")
    .argument("<name>", "the secret's name")
    .action(async (name: string, _opts: unknown, command: Command) => {
      const secret = await session.client(command).secrets.get(name);
      if (session.options(command).json) printJson(secretJson(secret));
      else printLine(formatSecret(secret));
    });

  program
    .command("list")
    .description("list secrets by name (never their values)")
    .option("--prefix <prefix>", "only names that start with this (literally)")
    .option("--filter <json>", "only secrets whose metadata contains this JSON object", jsonObject)
    .option("--deleted", "list the secrets in the recovery bin instead, with their ids and purge times")
    .option("--expires-before <time>", "only secrets that expire before this time: ISO 8601 or a duration from now (7d)", (text: string) => pointInTime(text, "ahead"))
    .option("--rotation-due", "only secrets whose rotation is due")
    .action(async (opts: { prefix?: string; filter?: JsonObject; deleted?: boolean; expiresBefore?: Date; rotationDue?: boolean }, command: Command) => {
      const client = session.client(command);
      const secrets: Secret[] = [];
      const filter = {
        namePrefix: opts.prefix ?? "",
        pageSize: 500,
        ...(opts.filter ? { metadataFilter: opts.filter } : {}),
        ...(opts.deleted ? { deleted: true } : {}),
        ...(opts.expiresBefore ? { expiresBefore: opts.expiresBefore } : {}),
        ...(opts.rotationDue ? { rotationDue: true } : {}),
      };
      for await (const s of client.secrets.list(filter)) secrets.push(s);
      if (session.options(command).json) return printJson(secrets.map(secretJson));
      if (secrets.length === 0) return note(opts.deleted ? "no secrets in the recovery bin" : "no secrets");
      printLine(opts.deleted ? binTable(secrets) : secretTable(secrets));
    });

  const updateCommand = valueOptions(
    program
      .command("update")
      .description(
        "change a secret: a new value (from stdin when no other change is given) makes a new version; description, metadata, expiry and rotation are replaced whole",
      )
      .argument("<name>", "the secret's name")
      .option("--description <text>", "replace the description")
      .option("--metadata <json>", "replace the metadata ('{}' clears it)", jsonObject)
      .option("--expected-version <n>", "fail unless this is the current version", positiveInt),
  );
  lifecycleOptions(updateCommand, true).action(
    async (
      name: string,
      opts: ValueFlags & LifecycleFlags & { description?: string; metadata?: JsonObject; expectedVersion?: number },
      command: Command,
    ) => {
      const lifecycle = updateLifecycle(opts);
      const client = session.client(command);
      const changesAttributes = opts.description !== undefined || opts.metadata !== undefined || Object.keys(lifecycle).length > 0;
      const value = hasValueFlag(opts) || !changesAttributes ? await readValue(opts, `new value for ${name}`) : undefined;
      const secret = await client.secrets.update(name, {
        ...(value !== undefined ? { value } : {}),
        ...(opts.description !== undefined ? { description: opts.description } : {}),
        ...(opts.metadata !== undefined ? { metadata: opts.metadata } : {}),
        ...(opts.expectedVersion !== undefined ? { expectedVersion: opts.expectedVersion } : {}),
        ...lifecycle,
      });
      if (session.options(command).json) printJson(secretJson(secret));
      else printLine(`updated ${secret.name} (version ${secret.version})`);
    },
  );

  program
    .command("delete")
    .description("move a secret and every version of it to the recovery bin (restore brings it back), or with --force erase it for good")
    .argument("<name>", "the secret's name")
    .option("--expected-version <n>", "fail unless this is the current version", positiveInt)
    .addOption(new Option("--force", "skip the recovery bin: erase the secret at once, for good (for a leaked value)").conflicts("recoveryDays"))
    .option("--recovery-days <n>", "days in the recovery bin before the purge, 1 to 365 (default: the service's)", positiveInt)
    .option("-y, --yes", "do not ask for confirmation at a terminal")
    .action(async (name: string, opts: { expectedVersion?: number; force?: boolean; recoveryDays?: number; yes?: boolean }, command: Command) => {
      const client = session.client(command);
      const question = opts.force
        ? `delete ${name} and all its versions for good? This cannot be undone.`
        : `move ${name} and all its versions to the recovery bin?`;
      if (!opts.yes && !(await confirm(question))) throw new CliError("not deleted", 1);
      await client.secrets.delete(name, {
        ...(opts.expectedVersion !== undefined ? { expectedVersion: opts.expectedVersion } : {}),
        ...(opts.force ? { force: true } : {}),
        ...(opts.recoveryDays !== undefined ? { recoveryWindowDays: opts.recoveryDays } : {}),
      });
      if (session.options(command).json) return printJson({ name, deleted: true, recoverable: !opts.force });
      if (opts.force) return printLine(`deleted ${name} for good: it skipped the recovery bin and cannot be restored`);
      const window = opts.recoveryDays !== undefined ? `for ${opts.recoveryDays} day(s)` : "for the service's recovery window";
      printLine(`deleted ${name}: it is in the recovery bin ${window}; secrets restore ${name} brings it back`);
    });

  program
    .command("restore")
    .description("bring a secret back from the recovery bin with all its versions: by name (the most recently deleted) or --id")
    .argument("[name]", "the secret's name")
    .option("--id <id>", "the deleted secret's id (secrets list --deleted shows it)")
    .action(async (name: string | undefined, opts: { id?: string }, command: Command) => {
      if ((name === undefined) === (opts.id === undefined)) throw new CliError("restore takes exactly one of NAME and --id ID");
      const client = session.client(command);
      const secret = await client.secrets.restore(opts.id !== undefined ? { id: opts.id } : { name: name as string });
      if (session.options(command).json) printJson(secretJson(secret));
      else printLine(`restored ${secret.name} (version ${secret.version})`);
    });

  program
    .command("access")
    .description("print a secret's value (the current version unless --version is given)")
    .argument("<name>", "the secret's name")
    .option("--version <n>", "a version number (0: the current one)", nonNegativeInt)
    .action(async (name: string, opts: { version?: number }, command: Command) => {
      const accessed = await session.client(command).secrets.access(name, { version: opts.version ?? 0 });
      if (session.options(command).json) return printJson(accessed);
      // Exactly the value on a pipe; a newline after it at a terminal, so the prompt starts on its own line.
      process.stdout.write(process.stdout.isTTY ? `${accessed.value}\n` : accessed.value);
    });

  program
    .command("versions")
    .description("list a secret's versions, newest first (never their values)")
    .argument("<name>", "the secret's name")
    .action(async (name: string, _opts: unknown, command: Command) => {
      const versions: SecretVersion[] = [];
      for await (const v of session.client(command).secrets.versions(name, { pageSize: 500 })) versions.push(v);
      if (session.options(command).json) return printJson(versions.map(versionJson));
      printLine(
        formatTable(
          ["VERSION", "STATE", "CREATED", "CREATED BY"],
          versions.map((v) => [String(v.version), v.state, formatTime(v.createdAt), v.createdBy]),
        ),
      );
    });

  program
    .command("destroy-version")
    .description("remove an old version's value for good (for a leaked value); the current version cannot be destroyed")
    .argument("<name>", "the secret's name")
    .argument("<version>", "the version to destroy", positiveInt)
    .option("-y, --yes", "do not ask for confirmation at a terminal")
    .action(async (name: string, version: number, opts: { yes?: boolean }, command: Command) => {
      const client = session.client(command);
      if (!opts.yes && !(await confirm(`destroy version ${version} of ${name}? This cannot be undone.`))) {
        throw new CliError("not destroyed", 1);
      }
      const destroyed = await client.secrets.destroyVersion(name, version);
      if (session.options(command).json) printJson(versionJson(destroyed));
      else printLine(`destroyed version ${destroyed.version} of ${name}`);
    });

  program
    .command("resolve")
    .description("print the current values of 1 to 100 secrets as NAME=value lines (or JSON with --json)")
    .argument("<names...>", "secret names (or comma-separated lists of them)")
    .addOption(new Option("--format <format>", "output format").choices(["env", "json"]).default("env"))
    .action(async (names: string[], opts: { format: "env" | "json" }, command: Command) => {
      const wanted = namesFrom(names, "names");
      const values = await session.client(command).secrets.resolve(wanted);
      if (session.options(command).json || opts.format === "json") return printJson(values);
      for (const name of wanted) {
        const value = values[name];
        if (value !== undefined) printLine(formatEnvLine(name, value));
      }
    });
}

/** A Secret for `--json`: dates as ISO strings; expiry, rotation and bin times only when set. */
export function secretJson(s: Secret): Record<string, unknown> {
  const { rotation, expireTime, deleteTime, purgeTime, ...rest } = s;
  return {
    ...rest,
    createdAt: s.createdAt.toISOString(),
    updatedAt: s.updatedAt.toISOString(),
    ...(expireTime ? { expireTime: expireTime.toISOString() } : {}),
    ...(rotation
      ? {
          rotation: {
            nextRotationTime: rotation.nextRotationTime.toISOString(),
            periodSeconds: rotation.periodSeconds,
            ...(rotation.dueTime ? { dueTime: rotation.dueTime.toISOString() } : {}),
          },
        }
      : {}),
    ...(deleteTime ? { deleteTime: deleteTime.toISOString() } : {}),
    ...(purgeTime ? { purgeTime: purgeTime.toISOString() } : {}),
  };
}

/** A table column: its header and its cell for one secret. */
type Column = readonly [string, (s: Secret) => string];

/** Live secrets as a table; the EXPIRES and ROTATION columns only when a secret listed has one. */
function secretTable(secrets: readonly Secret[]): string {
  const columns: Column[] = [
    ["NAME", (s) => s.name],
    ["VERSION", (s) => String(s.version)],
    ["UPDATED", (s) => formatTime(s.updatedAt)],
    ...(secrets.some((s) => s.expireTime) ? [["EXPIRES", (s: Secret) => timeOrDash(s.expireTime)] as const] : []),
    ...(secrets.some((s) => s.rotation) ? [["ROTATION", (s: Secret) => (s.rotation ? formatRotation(s.rotation) : "-")] as const] : []),
    ["DESCRIPTION", (s) => truncate(s.description, 60)],
  ];
  return formatTable(
    columns.map(([header]) => header),
    secrets.map((s) => columns.map(([, cell]) => cell(s))),
  );
}

/** Secrets in the recovery bin: the id is what `restore --id` takes when a name was deleted more than once. */
function binTable(secrets: readonly Secret[]): string {
  return formatTable(
    ["NAME", "ID", "VERSION", "DELETED", "PURGE"],
    secrets.map((s) => [s.name, s.id, String(s.version), timeOrDash(s.deleteTime), timeOrDash(s.purgeTime)]),
  );
}

function timeOrDash(date: Date | undefined): string {
  return date ? formatTime(date) : "-";
}

/** "every 30d, next 2026-12-31 00:00:00Z", with ", due since …" while a rotation is due. */
function formatRotation({ periodSeconds, nextRotationTime, dueTime }: Rotation): string {
  const due = dueTime ? `, due since ${formatTime(dueTime)}` : "";
  return `every ${formatDuration(periodSeconds)}, next ${formatTime(nextRotationTime)}${due}`;
}

function versionJson(v: SecretVersion): Record<string, unknown> {
  return { ...v, createdAt: v.createdAt.toISOString() };
}

function formatSecret(s: Secret): string {
  return formatRecord([
    ["name", s.name],
    ["version", String(s.version)],
    ["description", s.description],
    ["metadata", JSON.stringify(s.metadata)],
    ["expires", s.expireTime ? formatTime(s.expireTime) : "never"],
    ["rotation", s.rotation ? formatRotation(s.rotation) : "none"],
    ["id", s.id],
    ["created", `${formatTime(s.createdAt)} by ${s.createdBy}`],
    ["updated", `${formatTime(s.updatedAt)} by ${s.updatedBy}`],
  ]);
}
