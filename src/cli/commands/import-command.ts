import { readFile } from "node:fs/promises";
import { Option, type Command } from "commander";
import { isTransient, type SecretsClient } from "@secrets-service/client";
import { CliError, describeError, EXIT } from "../cli-error.js";
import type { FileEntry } from "../env-file.js";
import { FORMAT_CHOICES, formatOf, readImportFile } from "../import-file.js";
import { printJson, printLine } from "../output.js";
import { createProgress } from "../progress.js";
import { listNames } from "../secret-names.js";
import { rememberSensitive } from "../sensitive.js";
import type { Session } from "../session.js";

/**
 * `secrets import FILE`: many secrets from a dotenv file or a JSON object (what
 * `secrets export` writes, and the common dotenv forms).
 *
 * Invariants: nothing is written unless every entry is valid and the conflict
 * rule allows every existing name (both checked first); writes go one at a time
 * in file order, and a failure stops the import and says where (every entry before
 * that line was written; an entry whose answer was lost is reported as unknown).
 * Output names secrets, never values, and gives counts: names are listed one per
 * line only with --verbose (or as arrays with --json).
 */

type ConflictRule = "fail" | "skip" | "update";

/** Problems listed without --verbose; a file of a thousand bad lines gets a screenful, then a count. */
const PROBLEMS_SHOWN = 20;

interface ImportOptions {
  format?: (typeof FORMAT_CHOICES)[number];
  onConflict: ConflictRule;
  overwrite?: boolean;
  skipEmpty?: boolean;
  dryRun?: boolean;
  verbose?: boolean;
}

/** What an import did (or would do), by name: `skipped` exist already, `skippedEmpty` had an empty value. */
interface Outcome {
  created: string[];
  updated: string[];
  skipped: string[];
  skippedEmpty: string[];
}

export function registerImportCommand(program: Command, session: Session): void {
  program
    .command("import")
    .description("create secrets from a dotenv file or a JSON object; every entry is checked before anything is written")
    .argument("<file>", "a dotenv file, or a .json file holding one object of NAME: value ('-' reads stdin)")
    .addOption(new Option("--format <format>", "the file's format (default: json for *.json, dotenv otherwise)").choices(FORMAT_CHOICES))
    .option("--overwrite", "give names that already exist a new version with the file's value")
    .addOption(
      new Option("--on-conflict <rule>", "names that already exist: fail (write nothing), skip them, or update them (= --overwrite)")
        .choices(["fail", "skip", "update"])
        .default("fail")
        .conflicts("overwrite"),
    )
    .option("--skip-empty", "leave out entries with an empty value instead of refusing the file")
    .option("--dry-run", "check the file and the existing names; write nothing")
    .option("--verbose", "also list the names of what was done, one per line")
    .action(async (file: string, opts: ImportOptions, command: Command) => {
      const json = session.options(command).json === true;
      const rule: ConflictRule = opts.overwrite ? "update" : opts.onConflict;
      const text = await readSource(file);
      const { entries, skippedEmpty, problems } = readImportFile(text, formatOf(file, opts.format), { skipEmpty: opts.skipEmpty === true });
      for (const e of [...entries, ...skippedEmpty]) rememberSensitive(e.name, e.value);
      if (problems.length > 0) {
        const shown = opts.verbose ? problems : problems.slice(0, PROBLEMS_SHOWN);
        const lines = [`${file} has ${problems.length} problem(s); nothing was written`, ...shown.map((p) => `  line ${p.line}: ${p.message}`)];
        if (shown.length < problems.length) lines.push(`  … and ${problems.length - shown.length} more (--verbose lists them all)`);
        throw new CliError(lines.join("\n"), EXIT.usage);
      }

      const client = session.client(command);
      const existing = new Set(await listNames(client));
      const conflicts = entries.filter((e) => existing.has(e.name)).map((e) => e.name);
      if (conflicts.length > 0 && rule === "fail") {
        const lines = [`${conflicts.length} name(s) already exist; nothing was written: use --overwrite (or --on-conflict skip)`];
        if (opts.verbose) lines.push(...conflicts.map((n) => `  exists: ${n}`));
        throw new CliError(lines.join("\n"), EXIT.service);
      }
      if (opts.dryRun) {
        const plan = { ...planOf(entries, existing, rule), skippedEmpty: skippedEmpty.map((e) => e.name) };
        if (json) printJson({ dryRun: true, ...plan });
        else printLines([`dry run, nothing written: would have ${summary(plan)}`, ...(opts.verbose ? nameLines(plan) : [])]);
        return;
      }

      const outcome = await write(client, entries, existing, rule, { json, verbose: opts.verbose === true });
      outcome.skippedEmpty = skippedEmpty.map((e) => e.name);
      if (json) printJson(outcome);
      else printLines([`imported ${file}: ${summary(outcome)}`, ...(opts.verbose ? nameLines(outcome) : [])]);
    });
}

function printLines(lines: readonly string[]): void {
  for (const line of lines) printLine(line);
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
  const plan: Outcome = { created: [], updated: [], skipped: [], skippedEmpty: [] };
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
  show: { json: boolean; verbose: boolean },
): Promise<Outcome> {
  const outcome: Outcome = { created: [], updated: [], skipped: [], skippedEmpty: [] };
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
      throw stopped(e, entry, entries.slice(index + 1), outcome, show);
    }
    progress.tick();
  }
  progress.done();
  return outcome;
}

/** The error that ends an import midway: what failed, what was written before it, what was not. */
function stopped(e: unknown, failed: FileEntry, rest: readonly FileEntry[], outcome: Outcome, show: { json: boolean; verbose: boolean }): CliError {
  const { message, exitCode } = describeError(e);
  const unknown = isTransient(e);
  if (show.json) {
    printJson({ ...outcome, failed: { line: failed.line, name: failed.name, writtenUnknown: unknown, error: message }, notWritten: rest.map((r) => r.name) });
  }
  const lines = [
    `import stopped at line ${failed.line} (${failed.name}): ${message}`,
    unknown
      ? `  ${failed.name} may or may not have been written (the answer was lost); check with: secrets get ${failed.name}`
      : `  ${failed.name} was not written`,
    `  before line ${failed.line}: ${summary(outcome)}`,
  ];
  if (rest.length > 0) lines.push(`  not attempted: ${rest.length} entr${rest.length === 1 ? "y" : "ies"} after line ${failed.line}`);
  if (show.verbose) lines.push(...nameLines(outcome).map((l) => `  ${l}`), ...rest.map((r) => `    not attempted: ${r.name}`));
  return new CliError(lines.join("\n"), exitCode);
}

/** Counts, e.g. "12 created, 3 updated, 2 skipped (empty)"; skipped parts only when there are some. */
function summary(o: Outcome): string {
  const parts = [`${o.created.length} created`, `${o.updated.length} updated`];
  if (o.skippedEmpty.length > 0) parts.push(`${o.skippedEmpty.length} skipped (empty)`);
  if (o.skipped.length > 0) parts.push(`${o.skipped.length} skipped (already exist)`);
  return parts.join(", ");
}

/** One line per name, for --verbose. */
function nameLines(o: Outcome): string[] {
  return [
    ...o.created.map((n) => `  created: ${n}`),
    ...o.updated.map((n) => `  updated: ${n}`),
    ...o.skippedEmpty.map((n) => `  skipped (empty): ${n}`),
    ...o.skipped.map((n) => `  skipped (already exists): ${n}`),
  ];
}
