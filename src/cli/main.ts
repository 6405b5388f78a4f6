#!/usr/bin/env node
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { CommanderError } from "commander";
import { describeError, EXIT } from "./cli-error.js";
import { buildProgram } from "./program.js";
import { createSession } from "./session.js";

/**
 * The `secrets` executable (the package's bin). Runs one command and turns any
 * failure into one line on stderr and an exit code; a stack trace is printed only
 * for an unexpected error, and only with SECRETS_DEBUG=1.
 */
export async function main(argv: readonly string[]): Promise<number> {
  const session = createSession();
  try {
    await buildProgram(session).parseAsync([...argv]);
    return typeof process.exitCode === "number" ? process.exitCode : EXIT.ok;
  } catch (e) {
    // Commander has printed its own message (usage errors) or the help already.
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    const { message, exitCode, expected } = describeError(e, session.address);
    process.stderr.write(`secrets: ${message}\n`);
    if (!expected && process.env["SECRETS_DEBUG"] === "1" && e instanceof Error && e.stack) process.stderr.write(`${e.stack}\n`);
    return exitCode;
  } finally {
    session.close();
  }
}

const invokedDirectly = process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  main(process.argv).then((code) => {
    process.exitCode = code;
  });
}
