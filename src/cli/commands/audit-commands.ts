import type { Command } from "commander";
import { SECRET_NAME_PATTERN, type AuditEvent, type ListAuditEventsOptions } from "@secrets-service/client";
import { CliError } from "../cli-error.js";
import { formatTable, formatTime, note, printJson, printLine } from "../output.js";
import { positiveInt } from "../parse-args.js";
import type { Session } from "../session.js";
import { pointInTime } from "./duration.js";

/**
 * `secrets audit list`: the audit trail (AuditService/ListAuditEvents), newest
 * first, with the filters the RPC offers. Every page is fetched unless `--limit`
 * stops earlier. Your own trail needs `secrets:read`; another developer's,
 * `secrets:operator`.
 */

/** The largest page the service hands out. */
const MAX_PAGE_SIZE = 500;

interface AuditListOptions {
  developer?: string;
  secret?: string;
  action?: string;
  outcome?: string;
  since?: Date;
  until?: Date;
  limit?: number;
}

export function registerAuditCommands(program: Command, session: Session): void {
  const audit = program.command("audit").description("the audit trail (AuditService)");

  audit
    .command("list")
    .description("audit events, newest first (never a value)")
    .option("--developer <id>", "another developer's trail (operator); default: your own")
    .option("--secret <name>", "only events about this secret")
    .option("--action <rpc>", "only this action, the RPC name (e.g. AccessSecret, ShredDeveloper)")
    .option("--outcome <status>", "only this outcome: OK or a status name (e.g. NOT_FOUND)")
    .option("--since <time>", "only events at or after this time: ISO 8601 or a duration ago (30m, 12h, 7d)", timeOf)
    .option("--until <time>", "only events before this time: ISO 8601 or a duration ago", timeOf)
    .option("--limit <n>", "at most this many events (default: all)", positiveInt)
    .action(async (opts: AuditListOptions, command: Command) => {
      if (opts.secret !== undefined && !SECRET_NAME_PATTERN.test(opts.secret)) {
        throw new CliError(`--secret must match ${SECRET_NAME_PATTERN.source}`);
      }
      const filter: ListAuditEventsOptions = {
        pageSize: Math.min(opts.limit ?? MAX_PAGE_SIZE, MAX_PAGE_SIZE),
        ...(opts.developer ? { developerId: opts.developer } : {}),
        ...(opts.secret ? { secretName: opts.secret } : {}),
        ...(opts.action ? { action: opts.action } : {}),
        ...(opts.outcome ? { outcome: opts.outcome.toUpperCase() } : {}),
        ...(opts.since ? { startTime: opts.since } : {}),
        ...(opts.until ? { endTime: opts.until } : {}),
      };
      const events: AuditEvent[] = [];
      for await (const event of session.client(command).audit.list(filter)) {
        events.push(event);
        if (opts.limit !== undefined && events.length >= opts.limit) break;
      }
      if (session.options(command).json) return printJson(events);
      if (events.length === 0) return note("no audit events");
      printLine(
        formatTable(
          ["TIME", "ACTION", "SECRET", "VERSION", "OUTCOME", "CALLER", "REQUEST ID"],
          events.map((e) => [
            formatTime(e.time),
            e.action,
            e.secretName || "-",
            e.version === 0 ? "-" : String(e.version),
            e.outcome,
            e.callerSubject,
            e.requestId,
          ]),
        ),
      );
    });
}

/** A point in time: ISO 8601, or a duration before now such as 30m, 12h or 7d. */
function timeOf(text: string): Date {
  return pointInTime(text, "ago");
}
