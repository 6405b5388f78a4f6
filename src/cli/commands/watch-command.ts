import type { Command } from "commander";
import type { WatchEvent, WatchTarget, WatchUpdate } from "@secrets-service/client";
import { CliError } from "../cli-error.js";
import { formatTime, note, printLine } from "../output.js";
import { namesFrom, nonNegativeInt } from "../parse-args.js";
import type { Session } from "../session.js";
import { watchUpdates } from "../watch-stream.js";

/**
 * `secrets watch [NAMES…]`: prints changes to secrets as they commit, one line each
 * (with --json, one JSON object a line), until interrupted. Names and versions only:
 * the stream carries no value. Once connected, the watch reconnects and resumes by
 * itself (watch-stream.ts), so a dropped connection or a replica shutting down costs no event.
 */

interface WatchCommandOptions {
  prefix?: string;
  fromRevision?: number;
}

export function registerWatchCommand(program: Command, session: Session): void {
  program
    .command("watch")
    .description("print changes to secrets as they happen (names and versions, never values)")
    .argument("[names...]", "the secrets to watch, 1 to 100 (default: every secret, or those under --prefix)")
    .option("--prefix <prefix>", "watch every secret whose name starts with this")
    .option("--from-revision <revision>", "resume after this revision (as printed), replaying what came after it", nonNegativeInt)
    .action(async (names: string[], opts: WatchCommandOptions, command: Command) => {
      if (names.length > 0 && opts.prefix !== undefined) throw new CliError("watch names or --prefix, not both");
      const target: WatchTarget = names.length > 0 ? { names: namesFrom(names, "names") } : { prefix: opts.prefix ?? "" };
      const json = session.options(command).json === true;
      const client = session.client(command);
      // Interrupted, or its reader gone (`secrets watch | head -1`): stop quietly.
      const stop = new AbortController();
      const onStop = () => stop.abort();
      const signals = ["SIGINT", "SIGTERM"] as const;
      for (const s of signals) process.once(s, onStop);
      process.stdout.once("error", onStop);
      let snapshots = 0;
      try {
        for await (const update of watchUpdates(client, target, { fromRevision: opts.fromRevision ?? 0, signal: stop.signal })) {
          if (update.kind === "snapshot") snapshots += 1;
          show(update, json, snapshots > 1);
        }
      } catch (e) {
        if (!stop.signal.aborted) throw e;
      } finally {
        for (const s of signals) process.off(s, onStop);
        process.stdout.off("error", onStop);
      }
    });
}

/** An update as lines: events on stdout; a snapshot on stderr for people, on stdout as JSON. */
function show(update: WatchUpdate, json: boolean, again: boolean): void {
  if (update.kind === "progress") return;
  if (update.kind === "events") {
    for (const e of update.events) printLine(json ? JSON.stringify({ kind: "event", ...e }) : eventLine(e));
    return;
  }
  if (json) {
    printLine(JSON.stringify({ kind: "snapshot", revision: update.revision, secrets: update.secrets }));
  } else {
    const what = `${update.secrets.length} secret(s) at revision ${update.revision}`;
    note(again ? `secrets: the service could not resume the watch; it starts over from ${what}` : `secrets: watching ${what}`);
  }
}

/** `2026-12-06 07:20:00Z  updated  db_password  v3  (revision 42)`. */
function eventLine(e: WatchEvent): string {
  return `${formatTime(e.time)}  ${e.type.padEnd(16)}  ${e.name}  v${e.version}  (revision ${e.revision})`;
}
