import { open } from "node:fs/promises";
import { Option, type Command } from "commander";
import { CliError } from "../cli-error.js";
import { formatEnvLine } from "../env-file.js";
import { note } from "../output.js";
import { listNames, resolveAll } from "../secret-names.js";
import type { Session } from "../session.js";

/**
 * `secrets export`: every secret the token can list, with its current value, as a
 * .env file or a JSON object (both read back by `secrets import`). One of the three
 * commands that print values; `--output` writes a file readable by its owner only.
 */
export function registerExportCommand(program: Command, session: Session): void {
  program
    .command("export")
    .description("print every secret's current value as .env lines or a JSON object (readable back by import)")
    .addOption(new Option("--format <format>", "output format").choices(["env", "json"]).default("env"))
    .option("--prefix <prefix>", "only names that start with this")
    .option("-o, --output <file>", "write to this file (mode 0600) instead of stdout")
    .action(async (opts: { format: "env" | "json"; prefix?: string; output?: string }, command: Command) => {
      const client = session.client(command);
      const names = await listNames(client, opts.prefix ?? "");
      const values = await resolveAll(client, names);
      const text =
        opts.format === "json"
          ? `${JSON.stringify(Object.fromEntries(values), null, 2)}\n`
          : [...values].map(([name, value]) => `${formatEnvLine(name, value)}\n`).join("");
      if (!opts.output) {
        process.stdout.write(text);
        return;
      }
      try {
        const file = await open(opts.output, "w", 0o600);
        try {
          await file.chmod(0o600); // an existing file keeps its old mode on open: narrow it before any value is written
          await file.writeFile(text);
        } finally {
          await file.close();
        }
      } catch (e) {
        throw new CliError(`cannot write ${opts.output}: ${(e as NodeJS.ErrnoException).code ?? "error"}`);
      }
      note(`exported ${values.size} secret(s) to ${opts.output}`);
    });
}
