import { constants } from "node:os";
import { InvalidArgumentError, Option, type Command } from "commander";
import type { SecretsClient } from "@secrets-service/client";
import { CliError, EXIT } from "../cli-error.js";
import { isProtectedEnvName, PROTECTED_ENV_NAMES } from "../env-denylist.js";
import { unsettableMessage, unsettableNames } from "../env-file.js";
import { note } from "../output.js";
import { collect, namesFrom } from "../parse-args.js";
import { listNames, resolveAll } from "../secret-names.js";
import { durationSeconds } from "./duration.js";
import { startChild } from "./child.js";
import { runWatched, type ChangeAction } from "./run-watch.js";
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
 *
 * With --watch the command is followed by a watch of the secrets it was given
 * (run-watch.ts): on a change it gets a signal, or is restarted with the new values.
 */

const RESERVED_PREFIX = "SECRETS_";

const HELP_AFTER = `
Secrets never override these variables, which decide which program runs and what
it loads first (a trailing * matches any rest of the name), unless
--allow-override NAME is given for that secret:
  ${wrap(PROTECTED_ENV_NAMES, 78)}`;

interface RunOptions {
  name?: string[];
  allowOverride?: string[];
  watch?: boolean;
  onChange: ChangeAction;
  signal?: NodeJS.Signals;
  killTimeout: number;
}

export function registerRunCommand(program: Command, session: Session): void {
  program
    .command("run")
    .description("run a command with secrets as environment variables, without any SECRETS_* variable")
    .argument("<command...>", "the command and its arguments, after --")
    .option("-n, --name <names>", "the secrets to pass (comma-separated, repeatable; default: every secret the token can list)", collect)
    .option("--allow-override <name>", "let this secret set a protected variable (listed below; repeatable)", collect)
    .option("--watch", "watch the secrets passed, and act on a change (see --on-change)")
    .addOption(new Option("--on-change <action>", "with --watch: send the command a signal, or restart it with the new values").choices(["signal", "restart"]).default("signal"))
    .option("--signal <signal>", "the signal sent on a change (default SIGHUP), or that stops the command for a restart (default SIGTERM)", signalName)
    .option("--kill-timeout <duration>", "restart: how long the command may take to exit before SIGKILL (seconds, or 30s, 1m)", seconds, 10)
    .usage("[--name a,b] [--allow-override NAME] [--watch [--on-change signal|restart]] -- COMMAND [ARGS...]")
    .addHelpText("after", HELP_AFTER)
    .action(async (argv: string[], opts: RunOptions, command: Command) => {
      const [file, ...args] = argv;
      if (!file) throw new CliError("no command given: secrets run [--name a,b] -- COMMAND [ARGS...]");
      const watchOptionGiven = ["onChange", "signal", "killTimeout"].some((o) => command.getOptionValueSource(o) === "cli");
      if (!opts.watch && watchOptionGiven) throw new CliError("--on-change, --signal and --kill-timeout go with --watch");
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
      const environment = () => environmentOf(client, names);
      if (opts.watch) {
        const stopSignal = opts.signal ?? (opts.onChange === "restart" ? "SIGTERM" : "SIGHUP");
        process.exitCode = await runWatched({ client, names, environment, command: { file, args }, action: opts.onChange, signal: stopSignal, killTimeoutMs: opts.killTimeout * 1000 });
        return;
      }
      const env = await environment();
      session.close(); // nothing else is sent; the child may run for a long time
      process.exitCode = await startChild(file, args, env).exited;
    });
}

/** The child's environment: this one's without SECRETS_* variables, and the current values of `names`. */
async function environmentOf(client: SecretsClient, names: readonly string[]): Promise<NodeJS.ProcessEnv> {
  const values = await resolveAll(client, names);
  refuseUnsettable(values);
  const env: NodeJS.ProcessEnv = {};
  for (const [key, value] of Object.entries(process.env)) if (!key.startsWith(RESERVED_PREFIX)) env[key] = value;
  for (const [name, value] of values) env[name] = value;
  return env;
}

/** A signal's name, e.g. SIGHUP or HUP. */
function signalName(text: string): NodeJS.Signals {
  const name = (text.startsWith("SIG") ? text : `SIG${text}`).toUpperCase();
  if (!(name in constants.signals)) throw new InvalidArgumentError("expected a signal name, e.g. SIGHUP or SIGUSR1");
  return name as NodeJS.Signals;
}

/** A duration in seconds (durationSeconds' forms). */
function seconds(text: string): number {
  const n = durationSeconds(text);
  if (n === undefined) throw new InvalidArgumentError("expected seconds, or a number with s, m or h (30s, 1m)");
  return n;
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
