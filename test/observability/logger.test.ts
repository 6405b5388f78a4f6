import { execFile, spawn } from "node:child_process";
import { existsSync } from "node:fs";
import path from "node:path";
import { promisify } from "node:util";

import { describe, expect, it } from "vitest";

import { PROJECT_ROOT } from "../support/server-process.js";

const LOGGER = path.join(PROJECT_ROOT, "dist", "observability", "logger.js");

/** Runs `body` in a fresh node process with `log` from `createLogger`; returns its stdout lines, parsed. */
async function runWithLogger(body: string): Promise<Record<string, unknown>[]> {
  if (!existsSync(LOGGER)) throw new Error(`${LOGGER} is missing: run npm run build (npm test does it first)`);
  const script = `import { createLogger } from ${JSON.stringify(LOGGER)};\nconst log = createLogger("info");\n${body}`;
  const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script], { timeout: 20_000 });
  return stdout
    .trimEnd()
    .split("\n")
    .filter((l) => l !== "")
    .map((l) => JSON.parse(l) as Record<string, unknown>);
}

describe("the service's stdout logger", () => {
  it("writes every line, in order, when the process exits with lines still buffered", async () => {
    const lines = await runWithLogger(`for (let i = 0; i < 500; i++) log.info({ i }, "line");\nprocess.exit(0);`);
    expect(lines.map((l) => l.i)).toEqual(Array.from({ length: 500 }, (_, i) => i));
    expect(lines.every((l) => l.msg === "line" && l.service === "secrets")).toBe(true);
  });

  it("writes a lone line out within the periodic flush, while the process keeps running", async () => {
    const child = spawn(process.execPath, [
      "--input-type=module",
      "-e",
      `import { createLogger } from ${JSON.stringify(LOGGER)};\ncreateLogger("info").info("alone");\nsetTimeout(() => {}, 10_000);`,
    ]);
    try {
      const first = await new Promise<string>((resolve, reject) => {
        const timer = setTimeout(() => reject(new Error("no line within 2 s")), 2_000);
        child.stdout.once("data", (chunk: Buffer) => {
          clearTimeout(timer);
          resolve(chunk.toString("utf8"));
        });
      });
      expect(JSON.parse(first)).toMatchObject({ msg: "alone", level: 30 });
    } finally {
      child.kill();
    }
  });

  it("censors fields that could hold a secret, wherever they sit", async () => {
    const [line] = await runWithLogger(`log.info({ value: "v1", req: { token: "t1" }, authorization: "Bearer x" }, "m");\nprocess.exit(0);`);
    expect(line).toMatchObject({ value: "[REDACTED]", req: { token: "[REDACTED]" }, authorization: "[REDACTED]" });
  });
});
