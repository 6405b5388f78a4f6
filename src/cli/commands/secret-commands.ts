import { Option, type Command } from "commander";
import type { JsonObject, Secret, SecretVersion } from "@secrets-service/client";
import { CliError } from "../cli-error.js";
import { confirm } from "../confirm.js";
import { formatEnvLine } from "../env-file.js";
import { formatRecord, formatTable, formatTime, note, printJson, printLine, truncate } from "../output.js";
import { jsonObject, namesFrom, nonNegativeInt, positiveInt } from "../parse-args.js";
import { hasValueFlag, readValue, VALUE_HELP, type ValueFlags } from "../read-value.js";
import type { Session } from "../session.js";

/**
 * The commands that map one to one onto SecretService calls: create, get, list,
 * update, delete, access, versions, destroy-version, resolve. Of these only
 * `access` and `resolve` print values.
 */
export function registerSecretCommands(program: Command, session: Session): void {
  const valueOptions = (command: Command) =>
    command
      .option("--value-file <path>", VALUE_HELP.valueFile)
      .option("--value <value>", VALUE_HELP.value)
      .option("--keep-newline", VALUE_HELP.keepNewline);

  valueOptions(
    program
      .command("create")
      .description("create a secret at version 1; the value is read from stdin unless --value-file is given")
      .argument("<name>", "the secret's name")
      .option("--description <text>", "what the secret is for")
      .option("--metadata <json>", "a JSON object of attributes, e.g. '{\"env\":\"prod\"}'", jsonObject),
  ).action(async (name: string, opts: ValueFlags & { description?: string; metadata?: JsonObject }, command: Command) => {
    const client = session.client(command);
    const value = await readValue(opts, `value for ${name}`);
    const secret = await client.secrets.create({ name, value, description: opts.description ?? "", metadata: opts.metadata ?? {} });
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
    .action(async (opts: { prefix?: string; filter?: JsonObject }, command: Command) => {
      const client = session.client(command);
      const secrets: Secret[] = [];
      for await (const s of client.secrets.list({ namePrefix: opts.prefix ?? "", pageSize: 500, ...(opts.filter ? { metadataFilter: opts.filter } : {}) })) {
        secrets.push(s);
      }
      if (session.options(command).json) return printJson(secrets.map(secretJson));
      if (secrets.length === 0) return note("no secrets");
      printLine(
        formatTable(
          ["NAME", "VERSION", "UPDATED", "DESCRIPTION"],
          secrets.map((s) => [s.name, String(s.version), formatTime(s.updatedAt), truncate(s.description, 60)]),
        ),
      );
    });

  valueOptions(
    program
      .command("update")
      .description(
        "change a secret: a new value (from stdin when no other change is given) makes a new version; description and metadata are replaced whole",
      )
      .argument("<name>", "the secret's name")
      .option("--description <text>", "replace the description")
      .option("--metadata <json>", "replace the metadata ('{}' clears it)", jsonObject)
      .option("--expected-version <n>", "fail unless this is the current version", positiveInt),
  ).action(
    async (
      name: string,
      opts: ValueFlags & { description?: string; metadata?: JsonObject; expectedVersion?: number },
      command: Command,
    ) => {
      const client = session.client(command);
      const changesAttributes = opts.description !== undefined || opts.metadata !== undefined;
      const value = hasValueFlag(opts) || !changesAttributes ? await readValue(opts, `new value for ${name}`) : undefined;
      const secret = await client.secrets.update(name, {
        ...(value !== undefined ? { value } : {}),
        ...(opts.description !== undefined ? { description: opts.description } : {}),
        ...(opts.metadata !== undefined ? { metadata: opts.metadata } : {}),
        ...(opts.expectedVersion !== undefined ? { expectedVersion: opts.expectedVersion } : {}),
      });
      if (session.options(command).json) printJson(secretJson(secret));
      else printLine(`updated ${secret.name} (version ${secret.version})`);
    },
  );

  program
    .command("delete")
    .description("delete a secret and every version of it")
    .argument("<name>", "the secret's name")
    .option("--expected-version <n>", "fail unless this is the current version", positiveInt)
    .option("-y, --yes", "do not ask for confirmation at a terminal")
    .action(async (name: string, opts: { expectedVersion?: number; yes?: boolean }, command: Command) => {
      const client = session.client(command);
      if (!opts.yes && !(await confirm(`delete ${name} and all its versions?`))) throw new CliError("not deleted", 1);
      await client.secrets.delete(name, opts.expectedVersion !== undefined ? { expectedVersion: opts.expectedVersion } : {});
      if (session.options(command).json) printJson({ name, deleted: true });
      else printLine(`deleted ${name}`);
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

/** A Secret for `--json`: dates as ISO strings. */
export function secretJson(s: Secret): Record<string, unknown> {
  return { ...s, createdAt: s.createdAt.toISOString(), updatedAt: s.updatedAt.toISOString() };
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
    ["id", s.id],
    ["created", `${formatTime(s.createdAt)} by ${s.createdBy}`],
    ["updated", `${formatTime(s.updatedAt)} by ${s.updatedBy}`],
  ]);
}
