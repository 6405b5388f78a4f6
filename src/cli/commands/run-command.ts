import { spawn } from "node:child_process";
import { constants } from "node:os";
import type { Command } from "commander";
import { CliError, EXIT } from "../cli-error.js";
import { isProtectedEnvName, PROTECTED_ENV_NAMES } from "../env-denylist.js";
import { unsettableMessage, unsettableNames } from "../env-file.js";
import { note } from "../output.js";
import { collect, namesFrom } from "../parse-args.js";
import { listNames, resolveAll } from "../secret-names.js";
import { rememberSensitive } from "../sensitive.js";
import type { Session } from "../session.js";

/**
 * `secrets run -- COMMAND ARGS…`: runs a command with secrets as environment
 * variables (NAME=value), the named ones or every one the token can list.
 *
 * Invariants: the child's environment holds no `SECRETS_*` variable (not the
 * token, not the address), whatever the parent had; the child's exit status is
 * the CLI's (128 + signal number when a signal ended it); SIGINT, SIGTERM and
 * SIGHUP sent to the CLI are passed on to the child, which decides when to stop;
 * a secret named in PROTECTED_ENV_NAMES is refused (unless `--allow-override`
 * names it), and so is a value no environment variable can hold: either way the
 * command is not started, and the error names the secret, never its value.
 */

const FORWARDED: readonly NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];
const RESERVED_PREFIX = "SECRETS_";

const HELP_AFTER = `
Secrets never override these variables, which decide which program runs and what
it loads first (a trailing * matches any rest of the name), unless
--allow-override NAME is given for that secret:
  ${wrap(PROTECTED_ENV_NAMES, 78)}`;

interface RunOptions {
  name?: string[];
  allowOverride?: string[];
}

export function registerRunCommand(program: Command, session: Session): void {
  program
    .command("run")
    .description("run a command with secrets as environment variables, without any SECRETS_* variable")
    .argument("<command...>", "the command and its arguments, after --")
    .option("-n, --name <names>", "the secrets to pass (comma-separated, repeatable; default: every secret the token can list)", collect)
    .option("--allow-override <name>", "let this secret set a protected variable (listed below; repeatable)", collect)
    .usage("[--name a,b] [--allow-override NAME] -- COMMAND [ARGS...]")
    .addHelpText("after", HELP_AFTER)
    .action(async (argv: string[], opts: RunOptions, command: Command) => {
      const [file, ...args] = argv;
      if (!file) throw new CliError("no command given: secrets run [--name a,b] -- COMMAND [ARGS...]");
      const client = session.client(command);
      let names: string[];
      if (opts.name) {
        names = namesFrom(opts.name, "--name");
        const reserved = names.filter((n) => n.startsWith(RESERVED_PREFIX));
        if (reserved.length > 0) throw new CliError(`${reserved.join(", ")}: SECRETS_* variables are never passed to the command`);
      } else {
        const listed = await listNames(client);
        names = listed.filter((n) => !n.startsWith(RESERVED_PREFIX));
        if (names.length < listed.length) note(`secrets: not passing ${listed.length - names.length} secret(s) named SECRETS_*`);
      }
      refuseProtected(names, new Set(opts.allowOverride ?? []));
      const values = await resolveAll(client, names);
      session.close(); // nothing else is sent; the child may run for a long time
      refuseUnsettable(values);

      const env: NodeJS.ProcessEnv = {};
      for (const [key, value] of Object.entries(process.env)) if (!key.startsWith(RESERVED_PREFIX)) env[key] = value;
      for (const [name, value] of values) env[name] = value;
      process.exitCode = await runChild(file, args, env);
    });
}

/** Fails, naming them, when secrets would set protected variables not allowed by `--allow-override`. */
function refuseProtected(names: readonly string[], allowed: ReadonlySet<string>): void {
  const refused = names.filter((n) => isProtectedEnvName(n) && !allowed.has(n));
  if (refused.length === 0) return;
  throw new CliError(
    `refusing to run: secret(s) ${refused.join(", ")} would override protected environment variables ` +
      "(see secrets run --help); pass --allow-override NAME for each one you mean, or --name to pick other secrets",
    EXIT.usage,
  );
}

/** Fails, naming them, when values cannot be environment variables; remembers every value first. */
function refuseUnsettable(values: ReadonlyMap<string, string>): void {
  for (const [name, value] of values) rememberSensitive(name, value);
  const bad = unsettableNames(values);
  if (bad.length > 0) throw new CliError(`refusing to run: ${unsettableMessage(bad)}`, EXIT.usage);
}

/** `items` joined by spaces, broken into lines of at most `width` characters. */
function wrap(items: readonly string[], width: number): string {
  const lines: string[] = [];
  for (const item of items) {
    const last = lines.length - 1;
    if (last >= 0 && (lines[last] as string).length + 1 + item.length <= width - 2) lines[last] += ` ${item}`;
    else lines.push(item);
  }
  return lines.join("\n  ");
}

/** Spawns the command, forwards signals, and resolves with the exit status to pass on. */
function runChild(file: string, args: string[], env: NodeJS.ProcessEnv): Promise<number> {
  return new Promise((resolve, reject) => {
    const child = spawn(file, args, { stdio: "inherit", env });
    const forward = (signal: NodeJS.Signals) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    };
    for (const signal of FORWARDED) process.on(signal, forward);
    const stopForwarding = () => {
      for (const signal of FORWARDED) process.off(signal, forward);
    };
    child.once("error", (e: NodeJS.ErrnoException) => {
      stopForwarding();
      const exitCode = e.code === "ENOENT" ? 127 : 126;
      reject(new CliError(`cannot run ${file}: ${e.code === "ENOENT" ? "command not found" : (e.code ?? "error")}`, exitCode));
    });
    child.once("exit", (code, signal) => {
      stopForwarding();
      resolve(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0));
    });
  });
}
