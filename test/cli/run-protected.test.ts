import { randomBytes } from "node:crypto";
import { existsSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { isProtectedEnvName, PROTECTED_ENV_NAMES } from "../../src/cli/env-denylist.js";
import { expectNoMarkers, useCliFixture } from "./cli-process.js";

// `secrets run` against a real service, running real commands: a secret that would
// override a loader or shell variable stops the command before it starts (unless
// --allow-override names it), and the refusal names the secret, never its value.

const fixture = useCliFixture("run");
const marker = () => `MARKRUN${randomBytes(12).toString("hex")}`;

/** The CLI acting for a developer holding `secrets`. */
async function developer(id: string, secrets: Record<string, string>) {
  return (await fixture.developer(id, secrets)).cli;
}

describe("protected variables", () => {
  it.each(["BASH_ENV", "PATH", "LD_PRELOAD", "NODE_OPTIONS"])("a secret named %s stops the command, named, its value unshown", async (name) => {
    const work = fixture.work;
    const ranFile = join(work, `ran-${name}`);
    const hook = join(work, `hook-${name}.sh`);
    writeFileSync(hook, `touch ${join(work, `hooked-${name}`)}\n`);
    // A BASH_ENV that bash would source; for the others a marker path or option.
    const value = name === "BASH_ENV" ? hook : `${marker()}-${name}`;
    const cli = await developer(`run-${name.toLowerCase()}`, { [name]: value, HARMLESS: "fine" });
    for (const args of [[], ["--name", `HARMLESS,${name}`]]) {
      const result = await cli(["run", ...args, "--", "bash", "-c", `touch ${ranFile}; echo RAN`]);
      expect(result.code, result.stderr).toBe(2);
      expect(result.stdout).toBe("");
      expect(result.stderr).toMatch(new RegExp(`^secrets: refusing to run: secret\\(s\\) ${name} would override protected environment variables`));
      expect(result.stderr).toContain("--allow-override NAME");
      expect(result.stderr.trim().split("\n")).toHaveLength(1);
      expectNoMarkers(result, [value]);
    }
    expect(existsSync(ranFile)).toBe(false);
    expect(existsSync(join(work, `hooked-${name}`))).toBe(false);
  });

  it("--allow-override lets the named secret through, and only that one", async () => {
    const home = join(fixture.work, "alt-home");
    const cli = await developer("run-allowed", { HOME: home, NODE_PATH: "/opt/node-path", OTHER: "x" });
    const partial = await cli(["run", "--allow-override", "HOME", "--", "sh", "-c", 'printf %s "$HOME"']);
    expect(partial.code).toBe(2);
    expect(partial.stderr).toMatch(/secret\(s\) NODE_PATH would override/);
    expect(partial.stderr).not.toMatch(/HOME/);
    const allowed = await cli(["run", "--allow-override", "HOME", "--allow-override", "NODE_PATH", "--", "sh", "-c", 'printf "%s|%s|%s" "$HOME" "$NODE_PATH" "$OTHER"']);
    expect(allowed).toMatchObject({ code: 0, stdout: `${home}|/opt/node-path|x` });
  });

  it("lists the protected names in the help, and matches prefixes exactly", async () => {
    const cli = await developer("run-help", {});
    const help = await cli(["run", "--help"]);
    expect(help.code).toBe(0);
    for (const name of ["BASH_ENV", "LD_*", "DYLD_*", "NODE_OPTIONS", "PYTHONPATH", "GIT_SSH_COMMAND", "--allow-override"]) expect(help.stdout).toContain(name);
    expect(PROTECTED_ENV_NAMES).toEqual(expect.arrayContaining(["PATH", "HOME", "SHELL", "IFS", "ENV", "CDPATH", "PS4", "PROMPT_COMMAND", "PERL5OPT", "RUBYOPT"]));
    expect(["LD_PRELOAD", "LD_LIBRARY_PATH", "DYLD_INSERT_LIBRARIES", "GIT_CONFIG_KEY_0", "BASH_ENV"].filter(isProtectedEnvName)).toHaveLength(5);
    expect(["LDAP_URL", "PATHS", "path", "HOMEPAGE_URL", "NODE_ENV", "bash_env"].filter(isProtectedEnvName)).toEqual([]);
  });
});
