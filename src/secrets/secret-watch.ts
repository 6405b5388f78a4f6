import type { Principal } from "../auth/principal.js";
import { requireAllowlisted, requireScope } from "../auth/authorize.js";
import { AppError, invalid } from "../api/errors.js";
import type { Db } from "../store/db.js";
import { CHANGE_KINDS, readChanges, revisionOf, snapshot, type ChangeKind, type ChangeRow } from "../store/change-log.js";
import type { RateLimiter } from "./rate-limiter.js";
import { validateNameList, validateNamePrefix } from "./validation.js";
import type { WatchHub } from "./watch-hub.js";

/**
 * WatchSecrets (docs/design.md, Watching secrets): a snapshot or a resume point,
 * then the developer's change log read forward from there, one batch per wake,
 * filtered to what the watch covers. A watch never sees a value, only names,
 * versions and revisions, and it never skips a change or reorders two: it reads the
 * log by revision, and the log is written in commit order (store/change-log.ts).
 */
export interface SecretWatch {
  watchSecrets(p: Principal, input: WatchInput, signal: AbortSignal): AsyncGenerator<WatchBatch>;
}

export interface WatchInput {
  /** The names to watch; empty to watch a prefix. */
  names: readonly string[];
  namePrefix: string;
  /** 0: start with a snapshot; otherwise resume after it. */
  startRevision: bigint;
}

/** One response of a watch. */
export interface WatchBatch {
  /** The first response of a watch started without a revision: the watched secrets that exist. */
  snapshot?: { name: string; version: number }[];
  events: WatchEvent[];
  /** Every change up to here has been sent or did not concern the watch. */
  revision: number;
  /** On the first response only: how often an idle watch gets a response. */
  progressIntervalMs?: number;
}

export interface WatchEvent {
  type: ChangeKind;
  name: string;
  version: number;
  revision: number;
  time: Date;
}

export interface SecretWatchDeps {
  db: Db;
  hub: WatchHub;
  reads: RateLimiter;
  /** Told of the events each batch sends and how long after their commit. */
  onSent?: (events: number, lagSeconds: readonly number[]) => void;
}

/** Changes read per query. */
const PAGE = 500;
const KIND_OF = new Map<number, ChangeKind>(Object.entries(CHANGE_KINDS).map(([kind, n]) => [n, kind as ChangeKind]));

export function createSecretWatch(deps: SecretWatchDeps): SecretWatch {
  const { db, hub } = deps;
  /**
   * Reads of the log in flight, by developer and position: a change wakes every watch
   * of its developer, and those that stood at the same revision share one query.
   */
  const reading = new Map<string, ReturnType<typeof readChanges>>();
  function readShared(developerId: string, after: number): ReturnType<typeof readChanges> {
    const key = `${after}:${developerId}`;
    let read = reading.get(key);
    if (read === undefined) {
      read = readChanges(db, developerId, after, PAGE).finally(() => reading.delete(key));
      reading.set(key, read);
    }
    return read;
  }

  return {
    async *watchSecrets(p, input, signal) {
      requireScope(p, "secrets:read");
      const names = input.names.length === 0 ? undefined : validateNameList(input.names);
      const prefix = validateNamePrefix(input.namePrefix);
      if (names !== undefined && prefix !== "") {
        throw invalid("INVALID_ARGUMENT", "names,name_prefix", "watch names or a prefix, not both");
      }
      if (input.startRevision < 0n || input.startRevision > BigInt(Number.MAX_SAFE_INTEGER)) {
        throw invalid("INVALID_ARGUMENT", "start_revision", "start_revision must be 0 (a snapshot) or a revision a watch reported");
      }
      if (names !== undefined) requireAllowlisted(p, names);
      deps.reads.take(p.developerId);
      const onlyNames = p.allowlist ? [...p.allowlist] : undefined;
      const watched = names === undefined ? undefined : new Set(names);
      const covers = (name: string) =>
        (watched === undefined ? name.startsWith(prefix) : watched.has(name)) && (!p.allowlist || p.allowlist.has(name));

      // Open first: a change committed after the snapshot or the resume check wakes it.
      const watch = hub.open(p.developerId, signal);
      let first = true;
      /** A batch, with the progress interval when it is the watch's first. */
      const out = (batch: WatchBatch): WatchBatch => {
        if (!first) return batch;
        first = false;
        return { ...batch, progressIntervalMs: hub.progressIntervalMs };
      };
      try {
        let position: number;
        if (input.startRevision === 0n) {
          const snap = await snapshot(db, p.developerId, { names, prefix, onlyNames });
          position = snap.revision;
          yield out({ snapshot: snap.secrets, events: [], revision: position });
        } else {
          position = Number(input.startRevision);
          const { revision, compacted } = await revisionOf(db, p.developerId);
          if (position < compacted || position > revision) throw revisionUnavailable(position, compacted, revision);
        }
        // A resumed watch says where it stands once it has replayed, even with nothing to replay.
        let caughtUp = input.startRevision === 0n;
        let read = true;
        for (;;) {
          if (read) {
            const { changes, compacted } = await readShared(p.developerId, position);
            // Retention trimmed past this watch, or the developer was shredded: start over.
            if (position < compacted) throw revisionUnavailable(position, compacted, undefined);
            const last = changes.at(-1);
            let sent = false;
            if (last !== undefined) {
              position = last.revision;
              const events = changes.filter((c) => covers(c.name)).map(eventOf);
              if (events.length > 0) {
                deps.onSent?.(events.length, events.map((e) => (Date.now() - e.time.getTime()) / 1000));
                yield out({ events, revision: position });
                sent = true;
              }
              if (changes.length === PAGE) continue;
            }
            if (!caughtUp && !sent) yield out({ events: [], revision: position });
            caughtUp = true;
          }
          const reason = await watch.next();
          if (reason === "aborted") return;
          // A tick only says where the watch stands (its keepalive through proxies, and a
          // resume point): the log is read again only when a change may have come.
          read = reason === "changed";
          if (reason === "tick") yield { events: [], revision: position };
        }
      } finally {
        watch.close();
      }
    },
  };
}

function eventOf(c: ChangeRow): WatchEvent {
  const type = KIND_OF.get(c.kind);
  if (type === undefined) throw new Error(`change log holds an unknown kind ${c.kind}`);
  return { type, name: c.name, version: c.version, revision: c.revision, time: c.changeTime };
}

function revisionUnavailable(start: number, compacted: number, revision: number | undefined): AppError {
  const ahead = revision !== undefined && start > revision;
  return new AppError(
    "REVISION_UNAVAILABLE",
    ahead
      ? "start_revision is ahead of the developer's changes; watch again from 0 (a snapshot)"
      : "the change log no longer holds the changes after this revision; watch again from 0 (a snapshot)",
    { compacted_revision: String(compacted), ...(revision === undefined ? {} : { revision: String(revision) }) },
  );
}
