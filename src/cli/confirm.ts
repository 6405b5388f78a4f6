import { createInterface } from "node:readline/promises";

/**
 * Asks a yes/no question at the terminal; the default is no. Used before a
 * destructive command when a person is at the keyboard (stdin and stderr are
 * TTYs); scripts pass `--yes` or are not asked.
 */
export async function confirm(question: string): Promise<boolean> {
  if (!process.stdin.isTTY || !process.stderr.isTTY) return true;
  const rl = createInterface({ input: process.stdin, output: process.stderr });
  try {
    const answer = await rl.question(`${question} [y/N] `);
    return /^y(es)?$/i.test(answer.trim());
  } finally {
    rl.close();
  }
}
