import { tokenProblem } from "@secrets-service/client";
import type { Command } from "commander";
import { CliError, EXIT } from "./cli-error.js";
import { rememberSensitive } from "./sensitive.js";

/**
 * The bearer token as the CLI reads it from SECRETS_TOKEN or --token: trimmed of
 * surrounding whitespace (a token file, or `$(cat file)` in some shells, keeps its
 * trailing newline), and refused with a message that does not repeat it when it
 * holds a character no bearer token can (the SDK's rule, tokenProblem), which
 * grpc-js might otherwise reject with the token in its message.
 */

/** Commands that never send the token, so a stale SECRETS_TOKEN does not stop them. */
const TOKENLESS_COMMANDS: ReadonlySet<string> = new Set(["token"]);

/**
 * Remembers every token the process may have been given (before commander parses
 * anything, so that even a usage error cannot print one).
 */
export function rememberTokens(argv: readonly string[], env: NodeJS.ProcessEnv): void {
  const fromEnv = env["SECRETS_TOKEN"];
  if (fromEnv !== undefined) rememberSensitive("token", fromEnv);
  argv.forEach((arg, i) => {
    if (arg === "--token" && argv[i + 1] !== undefined) rememberSensitive("token", argv[i + 1] as string);
    else if (arg.startsWith("--token=")) rememberSensitive("token", arg.slice("--token=".length));
  });
}

/**
 * Registers a hook on `program` that trims the token option before any action runs
 * (so the session builds its client from the trimmed token) and checks it.
 */
export function normalizeTokenOption(program: Command): void {
  program.hook("preAction", (_program, action) => {
    const raw: unknown = program.getOptionValue("token");
    if (typeof raw !== "string") return;
    rememberSensitive("token", raw);
    const token = raw.trim();
    program.setOptionValueWithSource("token", token === "" ? undefined : token, program.getOptionValueSource("token") ?? "env");
    const problem = token === "" || TOKENLESS_COMMANDS.has(action.name()) ? undefined : tokenProblem(token);
    if (problem !== undefined) throw new CliError(`SECRETS_TOKEN or --token: ${problem}`, EXIT.usage);
  });
}
