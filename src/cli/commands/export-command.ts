import { randomBytes } from "node:crypto";
import { lstat, open, rename, rm } from "node:fs/promises";
import { Option, type Command } from "commander";
import { CliError, EXIT } from "../cli-error.js";
import { unsettableMessage, unsettableNames } from "../env-file.js";
import { formatFile, formatOf, FORMAT_CHOICES } from "../import-file.js";
import { note } from "../output.js";
import { listNames, resolveAll } from "../secret-names.js";
import { rememberSensitive } from "../sensitive.js";
import type { Session } from "../session.js";

/**
 * `secrets export`: every secret the token can list, with its current value, as
 * dotenv lines safe to source in a POSIX shell or as a JSON object (both read back
 * by `secrets import`). One of the three commands that print values.
 *
 * Invariants: `--output` never replaces an existing file without `--force`, and a
 * file it writes is readable by its owner only (mode 0600) from the moment it holds
 * a value; a refusal writes nothing. A value holding a NUL byte cannot be a dotenv
 * (environment) value: the export fails naming the secret, and JSON is offered.
 */

interface ExportOptions {
  format?: (typeof FORMAT_CHOICES)[number];
  prefix?: string;
  output?: string;
  force?: boolean;
}

export function registerExportCommand(program: Command, session: Session): void {
  program
    .command("export")
    .description("print every secret's current value as dotenv lines or a JSON object (readable back by import)")
    .addOption(new Option("--format <format>", "output format (default: json when --output ends in .json, else dotenv)").choices(FORMAT_CHOICES))
    .option("--prefix <prefix>", "only names that start with this")
    .option("-o, --output <file>", "write to this file (mode 0600) instead of stdout")
    .option("--force", "replace the --output file if it exists")
    .action(async (opts: ExportOptions, command: Command) => {
      const format = formatOf(opts.output, opts.format);
      if (opts.output && !opts.force && (await exists(opts.output))) throw refusedOverwrite(opts.output);
      const client = session.client(command);
      const values = await resolveAll(client, await listNames(client, opts.prefix ?? ""));
      for (const [name, value] of values) rememberSensitive(name, value);
      const unsettable = format === "dotenv" ? unsettableNames(values) : [];
      if (unsettable.length > 0) {
        throw new CliError(`cannot export as dotenv, nothing was written: ${unsettableMessage(unsettable)} (--format json can)`, EXIT.usage);
      }
      const text = formatFile(values, format);
      if (!opts.output) {
        process.stdout.write(text);
        return;
      }
      await writePrivateFile(opts.output, text, opts.force === true);
      note(`exported ${values.size} secret(s) to ${opts.output}`);
    });
}

async function exists(path: string): Promise<boolean> {
  return lstat(path).then(
    () => true,
    () => false,
  );
}

function refusedOverwrite(path: string): CliError {
  return new CliError(`${path} exists; nothing was written (use --force to replace it)`, EXIT.usage);
}

/**
 * Writes `text` to `path` with mode 0600. Without `replace`, the file is created
 * exclusively (an existing file or symlink is an error). With it, a new file is
 * written beside the old one and renamed over it, so the old file's mode and links
 * never apply to the values and no reader sees a half-written file. A failure
 * removes what this call created.
 */
async function writePrivateFile(path: string, text: string, replace: boolean): Promise<void> {
  const target = replace ? `${path}.${randomBytes(6).toString("hex")}.tmp` : path;
  let created = false;
  try {
    const file = await open(target, "wx", 0o600);
    created = true;
    try {
      await file.chmod(0o600); // the creation mode is narrowed by the umask only; make it exact
      await file.writeFile(text);
    } finally {
      await file.close();
    }
    if (replace) await rename(target, path);
  } catch (e) {
    if (created) await rm(target, { force: true }); // what this call created, never a file that was there
    const code = (e as NodeJS.ErrnoException).code;
    if (code === "EEXIST" && !replace) throw refusedOverwrite(path);
    throw new CliError(`cannot write ${path}: ${code ?? "error"}`);
  }
}
