import { randomBytes } from "node:crypto";
import { existsSync, readFileSync, writeFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { expectNoMarkers, runCli, startCli, useCliFixture, type CliDeveloper } from "./cli-process.js";

// `secrets watch` and `secrets run --watch` as a user runs them, against a real
// service: events printed as they commit, and a command signalled or restarted when a
// secret it was given changes. The CLI never prints a value.

const fixture = useCliFixture("watch");
const marker = (label: string) => `MARKWATCH${label}${randomBytes(8).toString("hex")}`;

/** Runs the CLI for `dev` with `args` until stopped. */
function start(dev: CliDeveloper, args: string[]) {
  return startCli(args, { cwd: fixture.work, env: { SECRETS_ADDR: fixture.svc.address, SECRETS_TOKEN: dev.token } });
}

/**
 * A command that appends to `log`: `start <its APP_KEY>` when it starts, `hup` on SIGHUP
 * (writing to a file, not to the CLI's output, which it shares).
 */
function childScript(name: string, log: string): string[] {
  const script = join(fixture.work, `${name}.cjs`);
  writeFileSync(
    script,
    `const fs = require("node:fs");
fs.appendFileSync(${JSON.stringify(log)}, "start " + process.env.APP_KEY + "\\n");
process.on("SIGHUP", () => fs.appendFileSync(${JSON.stringify(log)}, "hup\\n"));
setInterval(() => {}, 1000);
`,
  );
  return [process.execPath, script];
}

const lines = (file: string) => (existsSync(file) ? readFileSync(file, "utf8").trim().split("\n") : []);

describe("secrets watch", () => {
  it("--json prints the snapshot, then one JSON object a line for each change as it commits", { timeout: 60_000 }, async () => {
    const value = marker("v");
    const dev = await fixture.developer("cli-watch", { existing_key: value });
    const cli = start(dev, ["watch", "--json", "--prefix", "app_"]);
    try {
      await cli.until(({ stdout }) => stdout.includes("\n"));
      const snapshot = JSON.parse(cli.stdout().split("\n")[0]!) as { kind: string; revision: number; secrets: unknown[] };
      expect(snapshot).toEqual({ kind: "snapshot", revision: 1, secrets: [] });

      await dev.client.secrets.create({ name: "existing_other", value: marker("x") });
      await dev.client.secrets.create({ name: "app_key", value });
      await cli.until(({ stdout }) => stdout.split("\n").length >= 3);
      const event = JSON.parse(cli.stdout().split("\n")[1]!) as Record<string, unknown>;
      expect(event).toEqual({ kind: "event", type: "created", name: "app_key", version: 1, revision: 3, time: expect.any(String) });
      expect(Date.parse(event["time"] as string)).toBeGreaterThan(Date.now() - 60_000);
    } finally {
      const result = await cli.stop("SIGINT");
      expect(result.code, result.stderr).toBe(0);
      expectNoMarkers(result, [value, dev.token]);
    }
  });
});

describe("secrets run --watch", () => {
  it("sends the command SIGHUP when a secret it was given changes, and not for others", { timeout: 60_000 }, async () => {
    const [v1, v2] = [marker("one"), marker("two")];
    const dev = await fixture.developer("cli-run-hup", { APP_KEY: v1, OTHER_KEY: marker("other") });
    const log = join(fixture.work, "hup.log");
    const cli = start(dev, ["run", "--watch", "--name", "APP_KEY", "--", ...childScript("hup", log)]);
    try {
      await expect.poll(() => lines(log), { timeout: 15_000 }).toEqual([`start ${v1}`]);
      await dev.client.secrets.update("OTHER_KEY", { value: marker("other2") });
      await dev.client.secrets.update("APP_KEY", { value: v2 });
      await cli.until(({ stderr }) => stderr.includes("secrets: APP_KEY changed; sending SIGHUP to the command"));
      // The change to OTHER_KEY came first, in revision order: had it counted, its note would be there too.
      expect(cli.stderr()).not.toContain("OTHER_KEY");
      await expect.poll(() => lines(log), { timeout: 15_000 }).toEqual([`start ${v1}`, "hup"]);
    } finally {
      // SIGTERM goes on to the command, which it ends; the CLI exits with its status.
      const result = await cli.stop("SIGTERM");
      expect(result.code, result.stderr).toBe(143);
      expectNoMarkers(result, [v1, v2, dev.token]);
    }
  });

  it("--on-change restart starts the command again with the new value", { timeout: 60_000 }, async () => {
    const [v1, v2] = [marker("one"), marker("two")];
    const dev = await fixture.developer("cli-run-restart", { APP_KEY: v1 });
    const log = join(fixture.work, "restart.log");
    const cli = start(dev, ["run", "--watch", "--on-change", "restart", "--name", "APP_KEY", "--", ...childScript("restart", log)]);
    try {
      await expect.poll(() => lines(log), { timeout: 15_000 }).toEqual([`start ${v1}`]);
      await dev.client.secrets.update("APP_KEY", { value: v2 });
      // Stopped with SIGTERM (no SIGHUP), then started with the new value.
      await expect.poll(() => lines(log), { timeout: 15_000 }).toEqual([`start ${v1}`, `start ${v2}`]);
      expect(cli.stderr()).toContain("secrets: APP_KEY changed; restarting the command");
    } finally {
      const result = await cli.stop("SIGTERM");
      expect(result.code, result.stderr).toBe(143);
      expectNoMarkers(result, [v1, v2, dev.token]);
    }
  });
});

describe("a service that cannot be reached", () => {
  it("fails watch and run --watch at the start with exit 3, starting nothing", async () => {
    const dev = await fixture.developer("cli-watch-down");
    const env = { SECRETS_ADDR: "127.0.0.1:1", SECRETS_TOKEN: dev.token };
    const ran = join(fixture.work, "ran-while-down");
    for (const args of [["watch"], ["run", "--watch", "--name", "APP_KEY", "--", "touch", ran]]) {
      const result = await runCli(args, { cwd: fixture.work, env });
      expect(result.code, result.stderr).toBe(3);
      expect(result.stderr).toMatch(/^secrets: UNAVAILABLE: cannot reach 127\.0\.0\.1:1: connection refused/);
    }
    expect(existsSync(ran)).toBe(false);
  });
});
