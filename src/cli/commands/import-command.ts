import { readFile } from "node:fs/promises";
import { Option, type Command } from "commander";
import { isTransient, type SecretsClient } from "@secrets-service/client";
import { CliError, describeError, EXIT } from "../cli-error.js";
import type { FileEntry } from "../env-file.js";
import { formatOf, readImportFile, type ImportFormat } from "../import-file.js";
import { printJson, printLine } from "../output.js";
import { createProgress } from "../progress.js";
import { listNames } from "../secret-names.js";
import type { Session } from "../session.js";

/**
 * `secrets import FILE`: many secrets from a .env file or a JSON object.
 *
 * Invariants: nothing is written unless every entry is valid and the conflict
 * rule allows every existing name (both checked first); writes go one at a time
 * in file order, and a failure stops the import and reports exactly which entries
 * were written before it (an entry whose answer was lost is reported as unknown).
 */

type ConflictRule = "fail" | "skip" | "update";

interface ImportOptions {
  format?: ImportFormat;
  onConflict: ConflictRule;
  dryRun?: boolean;
}

/** What an import did, by name. */
interface Outcome {
  created: string[];
  updated: string[];
  skipped: string[];
}

export function registerImportCommand(program: Command, session: Session): void {
  program
    .command("import")
    .description("create secrets from a .env file or a JSON object; every entry is checked before anything is written")
    .argument("<file>", "a .env file, or a .json file holding one object of NAME: value ('-' reads stdin)")
    .addOption(new Option("--format <format>", "the file's format (default: json for *.json, env otherwise)").choices(["env", "json"]))
    .addOption(
      new Option("--on-conflict <rule>", "names that already exist: fail (write nothing), skip them, or update their values")
        .choices(["fail", "skip", "update"])
        .default("fail"),
    )
    .option("--dry-run", "check the file and the existing names; write nothing")
    .action(async (file: string, opts: ImportOptions, command: Command) => {
      const json = session.options(command).json === true;
      const text = await readSource(file);
      const { entries, problems } = readImportFile(text, opts.format ?? formatOf(file));
      if (problems.length > 0) {
        throw new CliError(
          [`${file} has ${problems.length} problem(s); nothing was written`, ...problems.map((p) => `  line ${p.line}: ${p.message}`)].join("\n"),
          EXIT.usage,
        );
      }

      const client = session.client(command);
      const existing = new Set(await listNames(client));
      const conflicts = entries.filter((e) => existing.has(e.name)).map((e) => e.name);
      if (conflicts.length > 0 && opts.onConflict === "fail") {
        throw new CliError(
          `${conflicts.length} name(s) already exist: ${conflicts.join(", ")}; nothing was written (use --on-conflict skip or --on-conflict update)`,
          EXIT.service,
        );
      }
      if (opts.dryRun) {
        const plan = planOf(entries, existing, opts.onConflict);
        if (json) printJson({ dryRun: true, ...plan });
        else printLine(`dry run, nothing written: would create ${plan.created.length}, update ${plan.updated.length}, skip ${plan.skipped.length}`);
        return;
      }

      const outcome = await write(client, entries, existing, opts.onConflict, json);
      if (json) printJson(outcome);
      else printLine(`imported ${file}: ${summary(outcome)}`);
    });
}

async function readSource(file: string): Promise<string> {
  let bytes: Buffer;
  try {
    bytes = file === "-" ? await readStdin() : await readFile(file);
  } catch (e) {
    throw new CliError(`cannot read ${file}: ${(e as NodeJS.ErrnoException).code ?? "error"}`);
  }
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new CliError(`${file} is not valid UTF-8; nothing was written`);
  }
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

function planOf(entries: readonly FileEntry[], existing: ReadonlySet<string>, rule: ConflictRule): Outcome {
  const plan: Outcome = { created: [], updated: [], skipped: [] };
  for (const { name } of entries) {
    if (!existing.has(name)) plan.created.push(name);
    else if (rule === "update") plan.updated.push(name);
    else plan.skipped.push(name);
  }
  return plan;
}

async function write(
  client: SecretsClient,
  entries: readonly FileEntry[],
  existing: ReadonlySet<string>,
  rule: ConflictRule,
  json: boolean,
): Promise<Outcome> {
  const outcome: Outcome = { created: [], updated: [], skipped: [] };
  const progress = createProgress("importing", entries.length);
  for (const [index, entry] of entries.entries()) {
    const exists = existing.has(entry.name);
    try {
      if (!exists) {
        await client.secrets.create({ name: entry.name, value: entry.value });
        outcome.created.push(entry.name);
      } else if (rule === "update") {
        await client.secrets.update(entry.name, { value: entry.value });
        outcome.updated.push(entry.name);
      } else {
        outcome.skipped.push(entry.name);
      }
    } catch (e) {
      progress.done();
      throw stopped(e, entry, entries.slice(index + 1), outcome, json);
    }
    progress.tick();
  }
  progress.done();
  return outcome;
}

/** The error that ends an import midway: what failed, what was written before it, what was not. */
function stopped(e: unknown, failed: FileEntry, rest: readonly FileEntry[], outcome: Outcome, json: boolean): CliError {
  const { message, exitCode } = describeError(e, undefined);
  const unknown = isTransient(e);
  if (json) {
    printJson({ ...outcome, failed: { line: failed.line, name: failed.name, writtenUnknown: unknown, error: message }, notWritten: rest.map((r) => r.name) });
  }
  const lines = [
    `import stopped at line ${failed.line} (${failed.name}): ${message}`,
    unknown
      ? `  ${failed.name} may or may not have been written (the answer was lost); check with: secrets get ${failed.name}`
      : `  ${failed.name} was not written`,
    `  written before the failure: ${written(outcome)}`,
  ];
  if (rest.length > 0) lines.push(`  not attempted: ${rest.length} entr${rest.length === 1 ? "y" : "ies"} (${rest.map((r) => r.name).join(", ")})`);
  return new CliError(lines.join("\n"), exitCode);
}

function written(o: Outcome): string {
  const parts: string[] = [];
  if (o.created.length > 0) parts.push(`created ${o.created.join(", ")}`);
  if (o.updated.length > 0) parts.push(`updated ${o.updated.join(", ")}`);
  return parts.length > 0 ? parts.join("; ") : "nothing";
}

function summary(o: Outcome): string {
  return `${o.created.length} created, ${o.updated.length} updated, ${o.skipped.length} skipped`;
}
