import { describe, expect, it } from "vitest";
import { formatEnvLine, parseEnvFile } from "../../src/cli/env-file.js";
import { checkEntries, parseJsonFile, readImportFile } from "../../src/cli/import-file.js";

// The .env and JSON readers behind `secrets import`, and the writer behind
// `export` / `resolve`: what is written reads back to the same value.

const values = (text: string) => Object.fromEntries(parseEnvFile(text).entries.map((e) => [e.name, e.value]));

describe(".env reading", () => {
  it("reads bare, quoted, exported and commented forms", () => {
    const text = [
      "# a comment",
      "",
      "  export SPACED = bare value  # trailing comment",
      "HASH_IN_BARE=a#b",
      "EQUALS=a=b==",
      `DOUBLE="line1\\nline2 \\"q\\" \\\\ \\$HOME # not a comment"  # a comment`,
      "SINGLE='literal \\n $HOME # kept'",
      'MULTI="first',
      "second",
      'third"',
      "AFTER=yes",
      "EMPTY_BARE=",
      "CRLF=x\r",
    ].join("\n");
    const parsed = parseEnvFile(text);
    expect(parsed.problems).toEqual([]);
    expect(values(text)).toEqual({
      SPACED: "bare value",
      HASH_IN_BARE: "a#b",
      EQUALS: "a=b==",
      DOUBLE: 'line1\nline2 "q" \\ $HOME # not a comment',
      SINGLE: "literal \\n $HOME # kept",
      MULTI: "first\nsecond\nthird",
      AFTER: "yes",
      EMPTY_BARE: "",
      CRLF: "x",
    });
    expect(parsed.entries.find((e) => e.name === "AFTER")?.line).toBe(11);
    expect(parsed.entries.find((e) => e.name === "MULTI")?.line).toBe(8);
  });

  it("reports lines it cannot read, without quoting them", () => {
    const parsed = parseEnvFile('OK=1\njust-some-text-no-equals\nBAD="open\nSTILL=inside\n');
    expect(parsed.problems).toEqual([
      { line: 2, message: "expected NAME=VALUE" },
      { line: 3, message: "the double quote that starts the value is never closed" },
    ]);
    expect(parseEnvFile("X='closed' trailing").problems).toEqual([{ line: 1, message: "unexpected text after the closing quote" }]);
    expect(JSON.stringify(parsed.problems)).not.toMatch(/just-some-text|open|inside/);
  });
});

describe(".env writing", () => {
  it("single-quotes every value, writing ' as '\\'' as a POSIX shell reads it", () => {
    expect(formatEnvLine("A", "plain")).toBe("A='plain'");
    expect(formatEnvLine("A", "it's `cmd` $HOME")).toBe("A='it'\\''s `cmd` $HOME'");
    expect(formatEnvLine("A", "a\r\nb")).toBe("A='a\r\nb'");
  });

  it("reads quoted parts joined by escapes, and keeps carriage returns inside quotes", () => {
    expect(values("A='it'\\''s'\nB='x'\"y\"'z' # note\nC='one\r\ntwo'\r\nD=bare\r\n")).toEqual({ A: "it's", B: "xyz", C: "one\r\ntwo", D: "bare" });
    expect(parseEnvFile("A='x'\\").problems).toEqual([{ line: 1, message: "unexpected text after the closing quote" }]);
  });

  it.each([
    "plain",
    "base64+/==",
    "with space",
    "it's",
    'say "hi"',
    "multi\nline\r\nwith\ttab",
    "back\\slash and $HOME and ${VAR}",
    "'both' \"quotes\"\nand newline",
    "# not a comment",
    "  leading and trailing  ",
    "pässwörd 🔑",
  ])("round-trips %j", (value) => {
    const line = formatEnvLine("NAME", value);
    const parsed = parseEnvFile(`${line}\nNEXT=1\n`);
    expect(parsed.problems).toEqual([]);
    expect(values(`${line}\nNEXT=1\n`)).toEqual({ NAME: value, NEXT: "1" });
  });
});

describe("import checks", () => {
  it("reports every invalid name, empty or oversized value and repeated name by line, never a value", () => {
    const big = "x".repeat(64 * 1024 + 1);
    const text = ["GOOD=fine", "1BAD=secret-one", "EMPTY=", `BIG=${big}`, "GOOD=again", `${"N".repeat(129)}=secret-two`, "OK_64K=" + "y".repeat(64 * 1024)].join("\n");
    const { problems } = readImportFile(text, "dotenv");
    expect(problems.map((p) => p.line)).toEqual([2, 3, 4, 5, 6]);
    expect(problems[0]?.message).toMatch(/^invalid name \(4 characters; names must match/);
    expect(problems[1]?.message).toBe("EMPTY: value is empty");
    expect(problems[2]?.message).toBe(`BIG: value is ${64 * 1024 + 1} bytes, more than 65536`);
    expect(problems[3]?.message).toBe("GOOD is also set on line 1");
    const shown = JSON.stringify(problems);
    expect(shown).not.toMatch(/secret-one|secret-two|1BAD|xxxx/);
  });

  it("counts value size in UTF-8 bytes and refuses lone surrogates", () => {
    const problems = checkEntries([
      { line: 1, name: "WIDE", value: "€".repeat(21_846) }, // 65,538 bytes in 21,846 characters
      { line: 2, name: "LONE", value: "a\ud800b" },
    ]);
    expect(problems.map((p) => p.message)).toEqual([
      "WIDE: value is 65538 bytes, more than 65536",
      "LONE: value is not valid UTF-8 (it holds a lone surrogate)",
    ]);
  });

  it("reads a JSON object with each key's line, and reports non-string values and broken JSON by line", () => {
    const parsed = parseJsonFile('{\n  "A": "x",\n  "B": {"nested": "y"},\n  "C": "has \\"quote\\" and {brace}",\n  "D": 1\n}');
    expect(parsed.entries).toEqual([
      { line: 2, name: "A", value: "x" },
      { line: 4, name: "C", value: 'has "quote" and {brace}' },
    ]);
    expect(parsed.problems).toEqual([
      { line: 3, message: "B: value must be a string" },
      { line: 5, message: "D: value must be a string" },
    ]);
    expect(parseJsonFile('{\n"A": "x",\n"B": "secret-val" oops\n}').problems).toEqual([{ line: 3, message: "not valid JSON" }]);
    expect(parseJsonFile('["A"]').problems).toEqual([{ line: 1, message: 'expected a JSON object of "NAME": "value"' }]);
    const dup = readImportFile('{"A": "x",\n"A": "y"}', "json");
    expect(dup.problems).toEqual([{ line: 2, message: "A is also set on line 1" }]);
  });
});
