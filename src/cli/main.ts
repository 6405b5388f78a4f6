#!/usr/bin/env node
import { realpathSync } from "node:fs";
import { fileURLToPath } from "node:url";
import { CommanderError } from "commander";
import { EXIT, failureText } from "./cli-error.js";
import { buildProgram } from "./program.js";
import { createSession } from "./session.js";
import { normalizeTokenOption, rememberTokens } from "./token-option.js";

/**
 * The `secrets` executable (the package's bin). Runs one command and turns any
 * failure into one line on stderr and an exit code. An unexpected error prints a
 * fixed line; its details (redacted) only with SECRETS_DEBUG=1.
 */
export async function main(argv: readonly string[]): Promise<number> {
  rememberTokens(argv, process.env);
  const session = createSession();
  try {
    const program = buildProgram(session);
    normalizeTokenOption(program);
    await program.parseAsync([...argv]);
    return typeof process.exitCode === "number" ? process.exitCode : EXIT.ok;
  } catch (e) {
    // Commander has printed its own message (usage errors) or the help already.
    if (e instanceof CommanderError) return e.exitCode === 0 ? EXIT.ok : EXIT.usage;
    return reportFailure(e);
  } finally {
    session.close();
  }
}

function reportFailure(e: unknown): number {
  const { text, exitCode } = failureText(e, process.env["SECRETS_DEBUG"] === "1");
  process.stderr.write(text);
  return exitCode;
}

const invokedDirectly = process.argv[1] !== undefined && realpathSync(process.argv[1]) === fileURLToPath(import.meta.url);
if (invokedDirectly) {
  // Node's deprecation notices are about libraries, not the user's command; grpc-js sets
  // TLS SNI to the host even when it is an IP address, which Node reports on every https://IP call.
  process.noDeprecation = true;
  // An error thrown outside the command's promise (an event handler) meets the same boundary.
  const crash = (e: unknown) => {
    process.exitCode = reportFailure(e);
    process.exit();
  };
  process.on("uncaughtException", crash);
  process.on("unhandledRejection", crash);
  main(process.argv).then((code) => {
    process.exitCode = code;
  });
}
