import { execFile } from "node:child_process";
import { existsSync, mkdirSync, mkdtempSync, readdirSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../support/server-process.js";
import { startTestService, type TestService } from "../support/test-service.js";
import { randomValue } from "./client-fixtures.js";

// The SDK as a user gets it: `npm pack` of packages/client, installed from the tarball into an empty
// project, imported by name from a plain ESM script that talks to a real service. The package is built by
// `npm run build` (npm test's pretest); the pack skips its prepack build, so that no test rewrites the
// dist/ that other tests' child processes are loading.

const run = promisify(execFile);
const PACKAGE = join(PROJECT_ROOT, "packages", "client");

/** The packages of the server that a client must never pull in. */
const SERVER_ONLY = ["pg", "@electric-sql/pglite", "ioredis", "pino"];

const SCRIPT = `
import { SecretsClient, SecretsError } from "@secrets-service/client";
const client = new SecretsClient({ address: process.env.ADDR, token: process.env.TOKEN });
try {
  const created = await client.secrets.create({ name: "packed_sdk_secret", value: process.env.VALUE });
  const accessed = await client.secrets.access("packed_sdk_secret");
  const missing = await client.secrets.access("packed_sdk_absent").catch((e) => e);
  console.log(JSON.stringify({
    version: created.version,
    sameValue: accessed.value === process.env.VALUE,
    missingReason: missing instanceof SecretsError ? missing.reason : String(missing),
  }));
} finally {
  client.close();
}
`;

describe("the packed SDK, installed into an empty project", () => {
  let svc: TestService;
  let dir: string;

  beforeAll(async () => {
    svc = await startTestService();
    dir = mkdtempSync(join(tmpdir(), "sdk-pack-"));
  });
  afterAll(async () => {
    await svc?.stop();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("installs alone, without the server's dependencies, and creates and reads a secret", { timeout: 120_000 }, async () => {
    if (!existsSync(join(PACKAGE, "dist", "index.js"))) throw new Error("packages/client/dist is missing: run npm run build");
    await run("npm", ["pack", "--ignore-scripts", "--pack-destination", dir, "--silent"], { cwd: PACKAGE, timeout: 90_000 });
    const tarball = readdirSync(dir).find((f) => f.endsWith(".tgz"));
    expect(tarball).toMatch(/^secrets-service-client-0\.1\.0\.tgz$/);

    const project = join(dir, "app");
    mkdirSync(project);
    writeFileSync(join(project, "package.json"), JSON.stringify({ name: "sdk-user", private: true, type: "module" }));
    await run("npm", ["install", "--prefer-offline", "--no-audit", "--no-fund", join(dir, tarball as string)], { cwd: project, timeout: 90_000 });

    const { stdout: tree } = await run("npm", ["ls", "--all", "--parseable"], { cwd: project });
    const installed = tree.split("\n").map((line) => line.split("node_modules/").slice(1).join("node_modules/"));
    expect(installed).toContain("@secrets-service/client");
    expect(installed).toContain("@grpc/grpc-js");
    for (const name of SERVER_ONLY) expect(installed.filter((p) => p === name || p.endsWith(`/node_modules/${name}`)), name).toEqual([]);

    const value = randomValue("packed");
    writeFileSync(join(project, "main.mjs"), SCRIPT);
    const { stdout, stderr } = await run(process.execPath, ["main.mjs"], {
      cwd: project,
      timeout: 30_000,
      env: { PATH: process.env["PATH"], ADDR: svc.address, TOKEN: await svc.token("dev_packed"), VALUE: value },
    });
    expect(`${stdout}${stderr}`).not.toContain(value);
    expect(JSON.parse(stdout)).toEqual({ version: 1, sameValue: true, missingReason: "SECRET_NOT_FOUND" });
  });
});
