import { readFileSync } from "node:fs";
import { Command, CommanderError, Option, type ParseOptionsResult } from "commander";
import { registerAuditCommands } from "./commands/audit-commands.js";
import { registerExportCommand } from "./commands/export-command.js";
import { registerImportCommand } from "./commands/import-command.js";
import { registerKeyCommands } from "./commands/key-commands.js";
import { registerRunCommand } from "./commands/run-command.js";
import { registerSecretCommands } from "./commands/secret-commands.js";
import { registerTokenCommand } from "./commands/token-command.js";
import { registerWatchCommand } from "./commands/watch-command.js";
import type { Session } from "./session.js";

/**
 * The `secrets` command line: global options, every command, and the help text
 * that says where the address, token and values come from.
 */

const HELP_AFTER = `
Address and token come from SECRETS_ADDR and SECRETS_TOKEN (or --addr and --token;
the flag is visible to other users in the process list). In dev mode:
  export SECRETS_TOKEN=$(secrets token)

Values are read from stdin or --value-file. --value works but is discouraged: the
value shows in the process list (ps) and in your shell history. Only access,
resolve and export print values.

Operators (a token with the secrets:operator scope; in dev mode
secrets token --scope operator): audit list, keys status, keys rotate-master,
keys rotate-developer, keys shred.

Exit codes: 0 done; 1 the service refused the request (the reason is printed),
or keys shred found nothing stored for the developer; 2 bad usage or invalid
input (nothing was sent); 3 the service was unreachable or did not answer in
time. run exits with the command's own status. secrets --version prints the version.`;

/** The package's version, from the package.json two levels up (of src/cli or dist/cli alike). */
function packageVersion(): string {
  const pkg = JSON.parse(readFileSync(new URL("../../package.json", import.meta.url), "utf8")) as { version: string };
  return pkg.version;
}

/**
 * The root command. `secrets --version` (or `-V`) prints the package's version, and
 * only as the first argument: after a subcommand, `--version` is that command's own
 * (`secrets access NAME --version 1`), which commander's `.version()` would take
 * wherever it stands, as it does every root option.
 */
class SecretsProgram extends Command {
  override parseOptions(args: string[]): ParseOptionsResult {
    if (this.parent === null && (args[0] === "--version" || args[0] === "-V")) {
      this.configureOutput().writeOut?.(`${packageVersion()}\n`);
      // How commander itself ends with exitOverride (main.ts maps exit code 0 to success).
      throw new CommanderError(0, "commander.version", packageVersion());
    }
    return super.parseOptions(args);
  }
}

/** The program, its settings inherited by every command (so set before they are added). */
export function buildProgram(session: Session): Command {
  const program = new SecretsProgram("secrets")
    .description("the secrets service from the command line")
    .addOption(new Option("--addr <host:port>", "the service's address").env("SECRETS_ADDR").default("127.0.0.1:50051"))
    .addOption(new Option("--token <jwt>", "bearer token (prefer SECRETS_TOKEN: a flag shows in the process list)").env("SECRETS_TOKEN"))
    .option("--tls", "connect with TLS (system root certificates)")
    .option("--ca <file>", "connect with TLS, trusting this PEM certificate authority")
    .option("--cert <file>", "with --key: present this PEM client certificate (mTLS; operator identities)")
    .option("--key <file>", "the client certificate's PEM private key")
    .option("--server-name <name>", "check the server's certificate against this name (e.g. through a port-forward)")
    .option("--timeout <ms>", "deadline of each call, retries included", "10000")
    .option("--json", "print JSON for scripts instead of tables")
    .exitOverride()
    .configureOutput({ outputError: (text, write) => write(`secrets: ${text.replace(/^error: /, "")}`) })
    .showHelpAfterError("(secrets --help shows the commands and options)")
    .addHelpText("after", HELP_AFTER);

  registerSecretCommands(program, session);
  registerImportCommand(program, session);
  registerExportCommand(program, session);
  registerRunCommand(program, session);
  registerWatchCommand(program, session);
  registerTokenCommand(program, session);
  registerKeyCommands(program, session);
  registerAuditCommands(program, session);
  return program;
}
