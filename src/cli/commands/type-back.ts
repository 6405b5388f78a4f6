import { createInterface } from "node:readline/promises";
import { CliError, EXIT } from "../cli-error.js";

/**
 * The guard before an irreversible operator command: a person at a terminal types
 * the target back (a y/N answer is too easy to give by reflex); a script, with no
 * terminal to ask at, must say `--yes`. Throws unless the operation may go ahead.
 */
export async function requireTypedBack(what: string, expected: string, yes: boolean | undefined): Promise<void> {
  if (yes) return;
  if (!process.stdin.isTTY || !process.stderr.isTTY) {
    throw new CliError(`${what} cannot be undone: pass --yes (there is no terminal to confirm at)`, EXIT.usage);
  }
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const typed = await rl.question(`${what} cannot be undone. Type ${JSON.stringify(expected)} to confirm: `);
    if (typed.trim() !== expected) throw new CliError("not confirmed: what was typed does not match; nothing was done", EXIT.service);
  } finally {
    rl.close();
  }
}
