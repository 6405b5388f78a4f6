import { execFileSync } from "node:child_process";
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import fc from "fast-check";
import { afterAll, describe, expect, it } from "vitest";
import { formatEnvLine } from "../../src/cli/env-file.js";
import { formatFile, readImportFile, type FileFormat } from "../../src/cli/import-file.js";
import { SECRET_NAME_PATTERN, valueProblem } from "@secrets-service/client";
import { useCliFixture } from "./cli-process.js";

// Property: whatever the values (quotes, backticks, `$`, backslashes, newlines and
// carriage returns, `=`, `#`, unicode, spaces at either end), export → import gives
// them back exactly, in every format: through the pure encode / parse functions for
// many runs, through a POSIX shell sourcing the dotenv, and through the real CLI and
// a real service for a bounded, seeded number of runs.

const FORMATS: readonly FileFormat[] = ["dotenv", "json"];

/** Pieces that break naive quoting, mixed with arbitrary unicode. */
const TRICKY = ["'", '"', "`", "$", "\\", "\n", "\r\n", "\r", "=", "#", " ", "\t", "${HOME}", "$(id)", "'\\''", "\\n", "é", "🔑", "\u2028", "export X=1"];
const valueArb = fc
  .array(fc.oneof(fc.constantFrom(...TRICKY), fc.string({ unit: "binary", minLength: 1, maxLength: 6 })), { minLength: 1, maxLength: 10 })
  .map((parts) => parts.join(""))
  .filter((v) => valueProblem(v) === undefined && !v.includes("\0"));
const nameArb = fc.stringMatching(/^[A-Za-z][A-Za-z0-9_]{0,11}$/);
const secretsArb = fc.dictionary(nameArb, valueArb, { minKeys: 1, maxKeys: 4 });

const valuesOf = (text: string, format: FileFormat) => {
  const read = readImportFile(text, format);
  expect(read.problems).toEqual([]);
  return Object.fromEntries(read.entries.map((e) => [e.name, e.value]));
};

describe("encode and parse", () => {
  it.each(FORMATS)("%s: what formatFile writes, readImportFile reads back exactly", (format) => {
    fc.assert(
      fc.property(secretsArb, (secrets) => {
        expect(Object.keys(secrets).every((n) => SECRET_NAME_PATTERN.test(n))).toBe(true);
        expect(valuesOf(formatFile(new Map(Object.entries(secrets)), format), format)).toEqual(secrets);
      }),
      { numRuns: 1000, seed: 1901 },
    );
  });
});

describe("sourced by a POSIX shell", () => {
  const dir = mkdtempSync(join(tmpdir(), "secrets-sourced-"));
  afterAll(() => rmSync(dir, { recursive: true, force: true }));

  it.each(["sh", "bash"])("set -a; . ./file in %s gives each value back exactly", (shell) => {
    fc.assert(
      fc.property(valueArb, (value) => {
        writeFileSync(join(dir, "file.env"), `${formatEnvLine("SOURCED", value)}\n`);
        const printed = execFileSync(shell, ["-c", "set -a; . ./file.env; printenv SOURCED"], { cwd: dir, encoding: "utf8" });
        expect(printed).toBe(`${value}\n`);
      }),
      { numRuns: 150, seed: 1902 },
    );
  });
});

describe("through the CLI and a service", () => {
  const fixture = useCliFixture("round-trip");
  let run = 0;

  it("export (dotenv, JSON) → import for another developer gives every value back", { timeout: 600_000 }, async () => {
    await fc.assert(
      fc.asyncProperty(secretsArb, async (secrets) => {
        run += 1;
        const source = await fixture.developer(`rt-source-${run}`, secrets);
        const dotenv = await source.cli(["export"]);
        expect(dotenv.code, dotenv.stderr).toBe(0);
        const jsonFile = `rt-${run}.json`;
        expect((await source.cli(["export", "-o", jsonFile])).code).toBe(0);
        const texts: Record<FileFormat, string> = { dotenv: dotenv.stdout, json: readFileSync(join(fixture.work, jsonFile), "utf8") };
        for (const format of FORMATS) {
          const target = await fixture.developer(`rt-${format}-${run}`);
          const imported = await target.cli(["import", "-", "--format", format], texts[format]);
          expect(imported.code, imported.stderr).toBe(0);
          expect(await target.client.secrets.resolve(Object.keys(secrets))).toEqual(secrets);
        }
      }),
      { numRuns: 20, seed: 1903 },
    );
  });
});
