import { readFile } from "node:fs/promises";
import { valueProblem } from "@secrets-service/client";
import { CliError } from "./cli-error.js";
import { rememberSensitive } from "./sensitive.js";

/**
 * Where a secret value comes from on the command line: stdin (piped, or typed at a
 * hidden prompt), a file (`--value-file`, `-` for stdin) or, discouraged, `--value`,
 * which any user of the machine can read in the process list and which lands in
 * shell history. One trailing newline (what `echo` and editors add) is dropped
 * unless `--keep-newline` is given. Bytes must be UTF-8; nothing is echoed.
 */

/** The value flags a command accepts. */
export interface ValueFlags {
  value?: string;
  valueFile?: string;
  keepNewline?: boolean;
}

/** Help text shared by the commands that take a value. */
export const VALUE_HELP = {
  valueFile: "read the value from this file ('-' for stdin)",
  value: "the value itself: DISCOURAGED, it shows in the process list (ps) and in shell history; prefer stdin or --value-file",
  keepNewline: "keep a trailing newline of stdin or the file (dropped by default)",
} as const;

/** True when a value flag was given. */
export function hasValueFlag(flags: ValueFlags): boolean {
  return flags.value !== undefined || flags.valueFile !== undefined;
}

/** Reads the value from the flags, or from stdin when none is given. */
export async function readValue(flags: ValueFlags, prompt: string): Promise<string> {
  if (flags.value !== undefined && flags.valueFile !== undefined) throw new CliError("give either --value or --value-file, not both");
  let value: string;
  if (flags.value !== undefined) {
    value = flags.value;
  } else if (flags.valueFile !== undefined && flags.valueFile !== "-") {
    const bytes = await readFile(flags.valueFile).catch((e: NodeJS.ErrnoException) => {
      throw new CliError(`cannot read --value-file ${flags.valueFile}: ${e.code ?? "error"}`);
    });
    value = trimNewline(decodeUtf8(bytes), flags.keepNewline);
  } else if (process.stdin.isTTY) {
    value = await hiddenPrompt(prompt);
  } else {
    value = trimNewline(decodeUtf8(await readStdin()), flags.keepNewline);
  }
  rememberSensitive("value", value);
  const problem = valueProblem(value);
  if (problem) throw new CliError(problem);
  return value;
}

function decodeUtf8(bytes: Buffer): string {
  try {
    return new TextDecoder("utf-8", { fatal: true }).decode(bytes);
  } catch {
    throw new CliError("value is not valid UTF-8");
  }
}

function trimNewline(text: string, keep: boolean | undefined): string {
  if (keep) return text;
  if (text.endsWith("\r\n")) return text.slice(0, -2);
  if (text.endsWith("\n")) return text.slice(0, -1);
  return text;
}

async function readStdin(): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/** One line typed at the terminal, not echoed. Ctrl-C aborts (exit 130). */
function hiddenPrompt(prompt: string): Promise<string> {
  const stdin = process.stdin;
  process.stderr.write(`${prompt} (input hidden): `);
  return new Promise((resolve, reject) => {
    let typed = "";
    const done = (error?: Error) => {
      stdin.setRawMode(false);
      stdin.pause();
      stdin.off("data", onData);
      process.stderr.write("\n");
      if (error) reject(error);
      else resolve(typed);
    };
    const onData = (chunk: Buffer) => {
      for (const ch of chunk.toString("utf8")) {
        if (ch === "\r" || ch === "\n" || ch === "\u0004") return done();
        if (ch === "\u0003") return done(new CliError("cancelled", 130));
        if (ch === "\u007f" || ch === "\b") typed = Array.from(typed).slice(0, -1).join("");
        else typed += ch;
      }
    };
    stdin.setRawMode(true);
    stdin.resume();
    stdin.on("data", onData);
  });
}
