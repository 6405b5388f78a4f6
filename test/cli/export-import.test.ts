import { execFileSync } from "node:child_process";
import { chmodSync, existsSync, readFileSync, statSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { expectNoMarkers, runCli, useCliFixture } from "./cli-process.js";

// `secrets export` and `secrets import` as a user runs them (the CLI as a child
// process against a real service): files a shell can source safely, JSON that
// imports back, no silent overwrite, and short summaries that name no value.

const fixture = useCliFixture("export");
const developer = fixture.developer;

const path = (name: string) => join(fixture.work, name);

describe("export", () => {
  it("writes dotenv that sh and bash source back exactly, running nothing", async () => {
    const pwned = path("PWNED");
    const values = {
      TRICKY: `it's \`touch ${pwned}\` and $(touch ${pwned}) and $HOME`,
      QUOTES: `'single' "double" \\ back\\slash '\\''`,
      LINES: "first\nsecond\r\nthird\n",
      SPACES: "  padded = value # not a comment  ",
      UNICODE: "pässwörd 🔑 \u2028",
    };
    const { cli } = await developer("export-sh", values);
    const exported = await cli(["export", "-o", "vars.env"]);
    expect(exported.code, exported.stderr).toBe(0);
    const text = readFileSync(path("vars.env"), "utf8");
    expect(text.split("\n").filter((l) => /^[A-Z]+=/.test(l))).toHaveLength(5);
    for (const line of text.split("\n").filter((l) => /^[A-Z]+=/.test(l))) expect(line).toMatch(/^[A-Z]+='/);
    for (const shell of ["sh", "bash"]) {
      for (const [name, value] of Object.entries(values)) {
        const out = execFileSync(shell, ["-c", `set -a; . ./vars.env; printenv ${name}`], { cwd: fixture.work, encoding: "utf8" });
        expect(out, `${shell} ${name}`).toBe(`${value}\n`);
      }
    }
    expect(existsSync(pwned)).toBe(false);
  });

  it("never replaces a file without --force; writes 0600; JSON for a .json path", async () => {
    const { cli } = await developer("export-files", { ONE: "value-one", TWO: "value-two" });
    writeFileSync(path("taken.env"), "keep me\n");
    chmodSync(path("taken.env"), 0o644);
    const refused = await cli(["export", "-o", "taken.env"]);
    expect(refused).toMatchObject({ code: 2, stdout: "", stderr: "secrets: taken.env exists; nothing was written (use --force to replace it)\n" });
    expect(readFileSync(path("taken.env"), "utf8")).toBe("keep me\n");

    const forced = await cli(["export", "-o", "taken.env", "--force"]);
    expect(forced.code, forced.stderr).toBe(0);
    expect(readFileSync(path("taken.env"), "utf8")).toBe("ONE='value-one'\nTWO='value-two'\n");
    expect(statSync(path("taken.env")).mode & 0o777).toBe(0o600);

    const json = await cli(["export", "-o", "backup.json"]);
    expect(json).toMatchObject({ code: 0, stdout: "", stderr: "exported 2 secret(s) to backup.json\n" });
    expect(JSON.parse(readFileSync(path("backup.json"), "utf8"))).toEqual({ ONE: "value-one", TWO: "value-two" });
    expect(statSync(path("backup.json")).mode & 0o777).toBe(0o600);
    expect(JSON.parse((await cli(["export", "--format", "json"])).stdout)).toEqual({ ONE: "value-one", TWO: "value-two" });
    expect((await cli(["export", "--format", "dotenv", "-o", "forced.json"])).code).toBe(0);
    expect(readFileSync(path("forced.json"), "utf8")).toBe("ONE='value-one'\nTWO='value-two'\n");

    // What export wrote, import reads back, for another developer.
    const { client, cli: otherCli } = await developer("export-files-copy");
    const imported = await otherCli(["import", "backup.json"]);
    expect(imported).toMatchObject({ code: 0, stdout: "imported backup.json: 2 created, 0 updated\n" });
    expect(await client.secrets.resolve(["ONE", "TWO"])).toEqual({ ONE: "value-one", TWO: "value-two" });
  });
});

describe("import", () => {
  const manyNames = Array.from({ length: 30 }, (_, i) => `MANY_${String(i).padStart(2, "0")}`);
  const manyFile = () => {
    writeFileSync(path("many.env"), manyNames.map((n, i) => `${n}=value-${i}\n`).join(""));
    return "many.env";
  };

  it("skips empty values with --skip-empty, and otherwise refuses the file", async () => {
    const { client, cli } = await developer("import-empty");
    writeFileSync(path("empties.env"), "A=one\nEMPTY_1=\nB='two'\nEMPTY_2=''\nC=three\n");
    const refused = await cli(["import", "empties.env"]);
    expect(refused.code).toBe(2);
    expect(refused.stderr).toContain("line 2: EMPTY_1: value is empty");
    writeFileSync(path("all-empty.env"), Array.from({ length: 25 }, (_, i) => `E${i}=\n`).join(""));
    const many = await cli(["import", "all-empty.env"]);
    expect(many.stderr.split("\n").filter((l) => l.startsWith("  line "))).toHaveLength(20);
    expect(many.stderr).toContain("  … and 5 more (--verbose lists them all)\n");
    expect((await cli(["import", "all-empty.env", "--verbose"])).stderr.split("\n").filter((l) => l.startsWith("  line "))).toHaveLength(25);
    const skipped = await cli(["import", "empties.env", "--skip-empty"]);
    expect(skipped).toMatchObject({ code: 0, stdout: "imported empties.env: 3 created, 0 updated, 2 skipped (empty)\n" });
    expect(await client.secrets.resolve(["A", "B", "C"])).toEqual({ A: "one", B: "two", C: "three" });
    const listed = [];
    for await (const s of client.secrets.list()) listed.push(s.name);
    expect(listed).toEqual(["A", "B", "C"]);
  });

  it("existing names: a one-line refusal, names only with --verbose, new versions with --overwrite", async () => {
    const { client, cli } = await developer("import-again");
    const first = await cli(["import", manyFile()]);
    expect(first).toMatchObject({ code: 0, stdout: "imported many.env: 30 created, 0 updated\n", stderr: "" });

    const again = await cli(["import", "many.env"]);
    expect(again).toMatchObject({
      code: 1,
      stdout: "",
      stderr: "secrets: 30 name(s) already exist; nothing was written: use --overwrite (or --on-conflict skip)\n",
    });
    const verbose = await cli(["import", "many.env", "--verbose"]);
    expect(verbose.stderr.split("\n").filter((l) => l.startsWith("  exists: "))).toEqual(manyNames.map((n) => `  exists: ${n}`));

    writeFileSync(path("many.env"), manyNames.map((n, i) => `${n}=changed-${i}\n`).join(""));
    const overwritten = await cli(["import", "many.env", "--overwrite"]);
    expect(overwritten).toMatchObject({ code: 0, stdout: "imported many.env: 0 created, 30 updated\n" });
    expect((await client.secrets.get("MANY_07")).version).toBe(2);
    expect((await client.secrets.access("MANY_07")).value).toBe("changed-7");
    for (const r of [first, again, overwritten]) expectNoMarkers(r, ["value-", "changed-"]);

    const conflicting = await cli(["import", "many.env", "--overwrite", "--on-conflict", "skip"]);
    expect(conflicting.code).toBe(2);
    expect((await client.secrets.get("MANY_07")).version).toBe(2);
  });

  it("a write that fails midway reports counts and lines, not a list of names", async () => {
    const id = "import-midway";
    const limited = await fixture.svc.token(id, { allowlist: ["MANY_00", "MANY_01"] });
    const result = await runCli(["import", manyFile()], { cwd: fixture.work, env: { SECRETS_ADDR: fixture.svc.address, SECRETS_TOKEN: limited } });
    expect(result.code).toBe(1);
    expect(result.stderr).toBe(
      [
        "secrets: import stopped at line 3 (MANY_02): PERMISSION_DENIED (NOT_ALLOWLISTED): the token does not allow these secrets",
        "  MANY_02 was not written",
        "  before line 3: 2 created, 0 updated",
        "  not attempted: 27 entries after line 3",
        "",
      ].join("\n"),
    );
  });
});
