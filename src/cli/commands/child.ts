import { spawn, type ChildProcess } from "node:child_process";
import { constants } from "node:os";
import { CliError } from "../cli-error.js";

/**
 * The command `secrets run` starts: its own stdio, the environment it is given, the
 * signals the CLI receives passed on, and its exit status as the CLI's.
 */

const FORWARDED: readonly NodeJS.Signals[] = ["SIGINT", "SIGTERM", "SIGHUP"];

/** A started command: the process, and the exit status to pass on once it has exited. */
export interface Child {
  readonly process: ChildProcess;
  /** 128 + the signal number when a signal ended it; a CliError (127, 126) when it could not start. */
  readonly exited: Promise<number>;
}

/** Spawns the command and forwards SIGINT, SIGTERM and SIGHUP to it until it exits. */
export function startChild(file: string, args: readonly string[], env: NodeJS.ProcessEnv): Child {
  const child = spawn(file, args, { stdio: "inherit", env });
  const exited = new Promise<number>((resolve, reject) => {
    const forward = (signal: NodeJS.Signals) => {
      if (child.exitCode === null && child.signalCode === null) child.kill(signal);
    };
    for (const signal of FORWARDED) process.on(signal, forward);
    const stopForwarding = () => {
      for (const signal of FORWARDED) process.off(signal, forward);
    };
    child.once("error", (e: NodeJS.ErrnoException) => {
      stopForwarding();
      const exitCode = e.code === "ENOENT" ? 127 : 126;
      reject(new CliError(`cannot run ${file}: ${e.code === "ENOENT" ? "command not found" : (e.code ?? "error")}`, exitCode));
    });
    child.once("exit", (code, signal) => {
      stopForwarding();
      resolve(code ?? 128 + (signal ? (constants.signals[signal] ?? 0) : 0));
    });
  });
  return { process: child, exited };
}
