import { VALUE_CHANGES, type SecretsClient, type WatchUpdate } from "@secrets-service/client";
import { describeError } from "../cli-error.js";
import { note } from "../output.js";
import { watchUpdates } from "../watch-stream.js";
import { startChild, type Child } from "./child.js";

/**
 * `secrets run --watch`: the command runs while a watch follows the secrets it was
 * given, and a change to one of them (created, updated, deleted; or a watch that had
 * to start over from a snapshot, after which nothing is known of what changed) is
 * acted on as consul-template and envconsul do:
 *
 * - `signal` (the default): the command gets `signal` (SIGHUP unless --signal) and
 *   is expected to read its secrets again itself; its environment cannot change.
 * - `restart`: the new values are read first (if that fails, the command keeps
 *   running with the old ones and the failure is noted), then the command gets
 *   `signal` (SIGTERM unless --signal), SIGKILL after `killTimeoutMs`, and starts
 *   again with the new values. Changes that arrive during a restart cause one more.
 *
 * The watch starts, and its snapshot arrives, before the values are read, so a change
 * committed after the read is always seen. The CLI exits when the command exits on
 * its own, with its status. Notes on stderr name secrets, never values; a watch that
 * fails for good is noted and the command keeps running.
 */

/** What to do when a secret the command was given changes. */
export type ChangeAction = "signal" | "restart";

export interface WatchedRun {
  client: SecretsClient;
  /** The secrets the command was given. */
  names: readonly string[];
  /** The command's environment with the current values. */
  environment: () => Promise<NodeJS.ProcessEnv>;
  command: { file: string; args: readonly string[] };
  action: ChangeAction;
  signal: NodeJS.Signals;
  killTimeoutMs: number;
}

/** Runs the command under a watch; resolves with the exit status to pass on. */
export async function runWatched(run: WatchedRun): Promise<number> {
  const given = new Set(run.names);
  const stop = new AbortController();
  // Every secret the token can see, filtered here: one stream however many names were given.
  const updates = watchUpdates(run.client, { prefix: "" }, { signal: stop.signal });
  await updates.next();
  let current: Child = startChild(run.command.file, run.command.args, await run.environment());
  let restarting: Promise<void> | undefined;
  let again = false;

  const restart = async () => {
    do {
      again = false;
      let env: NodeJS.ProcessEnv;
      try {
        env = await run.environment();
      } catch (e) {
        note(`secrets: the command keeps its old values: ${describeError(e).message}`);
        return;
      }
      const old = current;
      // It exited on its own meanwhile: that ends the run, with its status.
      if (old.process.exitCode !== null || old.process.signalCode !== null) return;
      old.process.kill(run.signal);
      const killer = setTimeout(() => old.process.kill("SIGKILL"), run.killTimeoutMs);
      await old.exited.catch(() => undefined);
      clearTimeout(killer);
      current = startChild(run.command.file, run.command.args, env);
    } while (again);
  };

  const changed = (names: readonly string[]) => {
    const what = names.length > 0 ? `${names.join(", ")} changed` : "the watch started over";
    if (run.action === "signal") {
      note(`secrets: ${what}; sending ${run.signal} to the command`);
      if (current.process.exitCode === null && current.process.signalCode === null) current.process.kill(run.signal);
    } else if (restarting) {
      again = true;
    } else {
      note(`secrets: ${what}; restarting the command`);
      restarting = restart().finally(() => {
        restarting = undefined;
      });
    }
  };

  const watching = follow(updates, given, changed).catch((e: unknown) => {
    if (!stop.signal.aborted) note(`secrets: no longer watching: ${describeError(e).message}`);
  });
  try {
    for (;;) {
      const child = current;
      const status = await child.exited;
      if (restarting) await restarting;
      // Stopped for a restart: wait for the command that replaced it.
      if (current !== child) continue;
      return status;
    }
  } finally {
    stop.abort();
    await watching;
  }
}

/** Calls `changed` with the given names that a batch changed, or none after a new snapshot. */
async function follow(updates: AsyncIterable<WatchUpdate>, given: ReadonlySet<string>, changed: (names: string[]) => void): Promise<void> {
  for await (const update of updates) {
    if (update.kind === "snapshot") changed([]);
    if (update.kind !== "events") continue;
    const names = new Set(update.events.filter((e) => given.has(e.name) && VALUE_CHANGES.has(e.type)).map((e) => e.name));
    if (names.size > 0) changed([...names]);
  }
}
