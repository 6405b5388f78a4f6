import type { Principal } from "../auth/principal.js";
import { requireAllowlisted, requireScope } from "../auth/authorize.js";
import { AppError, invalid } from "../api/errors.js";
import type { Db } from "../store/db.js";
import { CHANGE_KINDS, readChanges, revisionOf, snapshot, type ChangeKind, type ChangeRow } from "../store/change-log.js";
import type { RateLimiter } from "./rate-limiter.js";
import { validateNameList, validateNamePrefix } from "./validation.js";
import type { WatchHub, WatchSubscriber } from "./watch-hub.js";

/**
 * WatchSecrets (docs/design.md, Watching secrets): a snapshot or a resume point,
 * then the developer's change log read forward from there, one batch per wake,
 * filtered to what the watch covers. A watch never sees a value, only names,
 * versions and revisions, and it never skips a change or reorders two: it reads the
 * log by revision, and the log is written in commit order (store/change-log.ts).
 *
 * A watch is an object the hub wakes, not a loop waiting on a promise: between two
 * responses it holds its position and what it covers, and nothing else.
 */
export interface SecretWatch {
  /**
   * Starts a watch that sends its responses to `out` until it fails (through `out`)
   * or is closed. A bad request, a missing scope and the limits throw here.
   */
  watchSecrets(p: Principal, input: WatchInput, out: WatchOutput): OpenedWatch;
}

/** Where a watch sends its responses: the call's response stream. */
export interface WatchOutput {
  /** Sends one response; false when the stream's buffer is full (the watch waits for `drained` before the next). */
  send(batch: WatchBatch): boolean;
  drained(): Promise<void>;
  /** Ends the call with the status of `error`. */
  fail(error: unknown): void;
}

export interface OpenedWatch {
  /** The client went away: stop, and let go of the hub. */
  close(): void;
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
   * Reads of the log in flight, by developer, position and the hub's wake count: a
   * change wakes every watch of its developer, and those that stood at the same
   * revision share one query. A read begun before the latest wake may miss the change
   * that wake announced, so a watch joins only a read begun since.
   */
  const reading = new Map<string, ReturnType<typeof readChanges>>();
  const shared: SharedReads = {
    ...deps,
    read(developerId, after) {
      const key = `${hub.wakes}:${after}:${developerId}`;
      let read = reading.get(key);
      if (read === undefined) {
        read = readChanges(db, developerId, after, PAGE).finally(() => reading.delete(key));
        reading.set(key, read);
      }
      return read;
    },
  };

  return {
    watchSecrets(p, input, out) {
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
      const watched = names === undefined ? undefined : new Set(names);
      const { allowlist } = p;
      const covers = (name: string) =>
        (watched === undefined ? name.startsWith(prefix) : watched.has(name)) && (!allowlist || allowlist.has(name));
      const watch = new OpenWatch(shared, p.developerId, covers, out);
      // Open first: a change committed after the snapshot or the resume check wakes it.
      hub.open(p.developerId, watch);
      void watch.start(input.startRevision, { names, prefix, onlyNames: allowlist ? [...allowlist] : undefined });
      return watch;
    },
  };
}

/** What every watch of the service shares: the database, the hub, and the reads of the log in flight. */
interface SharedReads extends SecretWatchDeps {
  read(developerId: string, after: number): ReturnType<typeof readChanges>;
}

/**
 * One open watch. At most one read of the log runs for it at a time: a change that
 * comes while one runs makes it read again once it is done, so no wake is lost and
 * no two responses race.
 */
class OpenWatch implements WatchSubscriber, OpenedWatch {
  /** The revision up to which every change has been sent or did not concern the watch. */
  private position = 0;
  /** Set while the snapshot or a read of the log runs. */
  private reading = true;
  /** A change came while a read ran. */
  private again = false;
  private closed = false;
  /** Whether the next response is the watch's first (it carries the progress interval). */
  private first = true;

  constructor(
    private readonly shared: SharedReads,
    private readonly developerId: string,
    private readonly covers: (name: string) => boolean,
    private readonly out: WatchOutput,
  ) {}

  /** The snapshot, or the check of the resume point, then the log from there. */
  async start(startRevision: bigint, filter: Parameters<typeof snapshot>[2]): Promise<void> {
    try {
      if (startRevision === 0n) {
        const snap = await snapshot(this.shared.db, this.developerId, filter);
        if (this.closed) return;
        this.position = snap.revision;
        await this.send({ snapshot: snap.secrets, events: [], revision: this.position });
      } else {
        this.position = Number(startRevision);
        const { revision, compacted } = await revisionOf(this.shared.db, this.developerId);
        if (this.position < compacted || this.position > revision) throw revisionUnavailable(this.position, compacted, revision);
      }
    } catch (error) {
      this.reading = false;
      return this.fail(error);
    }
    // A resumed watch says where it stands once it has replayed, even with nothing to replay.
    await this.readLog(startRevision === 0n);
  }

  changed(): void {
    if (this.closed) return;
    if (this.reading) {
      this.again = true;
      return;
    }
    this.reading = true;
    void this.readLog(true);
  }

  /** A tick only says where the watch stands (its keepalive through proxies, and a resume point); a read under way will say more. */
  tick(): void {
    if (this.closed || this.reading) return;
    this.out.send({ events: [], revision: this.position });
  }

  shutDown(error: AppError): void {
    this.fail(error);
  }

  close(): void {
    if (this.closed) return;
    this.closed = true;
    this.shared.hub.remove(this.developerId, this);
  }

  private fail(error: unknown): void {
    if (this.closed) return;
    this.close();
    this.out.fail(error);
  }

  /**
   * Reads the log forward from `position` until it holds nothing newer, again if a
   * change came meanwhile; then the watch is idle (`reading` cleared in the same step
   * as the last check of `again`, so no wake falls between them).
   */
  private async readLog(caughtUp: boolean): Promise<void> {
    try {
      do {
        this.again = false;
        for (;;) {
          const { changes, compacted } = await this.shared.read(this.developerId, this.position);
          if (this.closed) return;
          // Retention trimmed past this watch, or the developer was shredded: start over.
          if (this.position < compacted) throw revisionUnavailable(this.position, compacted, undefined);
          const last = changes.at(-1);
          let sent = false;
          if (last !== undefined) {
            this.position = last.revision;
            const events = changes.filter((c) => this.covers(c.name)).map(eventOf);
            if (events.length > 0) {
              this.shared.onSent?.(events.length, events.map((e) => (Date.now() - e.time.getTime()) / 1000));
              await this.send({ events, revision: this.position });
              if (this.closed) return;
              sent = true;
            }
            if (changes.length === PAGE) continue;
          }
          if (!caughtUp && !sent) await this.send({ events: [], revision: this.position });
          caughtUp = true;
          break;
        }
      } while (this.again && !this.closed);
    } catch (error) {
      this.fail(error);
    } finally {
      this.reading = false;
    }
  }

  /** Sends a response, the first with the progress interval, and waits while the stream's buffer is full. */
  private async send(batch: WatchBatch): Promise<void> {
    if (this.first) {
      this.first = false;
      batch.progressIntervalMs = this.shared.hub.progressIntervalMs;
    }
    if (!this.out.send(batch)) await this.out.drained();
  }
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
