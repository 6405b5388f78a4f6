import { AppError } from "../api/errors.js";
import type { Db, Listener } from "../store/db.js";
import { CHANGES_CHANNEL } from "../store/change-log.js";

/**
 * One replica's open watches, and what wakes them (docs/design.md, Watching
 * secrets). A commit that appends to a developer's change log notifies every replica
 * (Postgres NOTIFY, or PGlite's in the embedded database); the hub wakes that
 * developer's watches here, and each reads the log from where it stands. The log is
 * the source of truth: a wake only says "read", so a notification lost while the
 * listening connection was down costs nothing once `resync` has woken every watch.
 */
export interface WatchHub {
  /** Starts listening, and the progress ticker. */
  start(): Promise<void>;
  /**
   * Opens a watch of `developerId`'s changes: the hub tells `watch` of them until
   * `remove`; RESOURCE_EXHAUSTED (TOO_MANY_WATCHES) past the limits.
   */
  open(developerId: string, watch: WatchSubscriber): void;
  /** Closes a watch `open` opened; nothing when it is already closed. */
  remove(developerId: string, watch: WatchSubscriber): void;
  /** Watches open on this replica. */
  readonly size: number;
  /**
   * How many times the hub has woken watches so far. A read of the log begun at this
   * count sees every change announced by those wakes (docs/design.md, Watching secrets).
   */
  readonly wakes: number;
  /** How often a waiting watch is ticked (WatchHubDeps.progressIntervalMs). */
  readonly progressIntervalMs: number;
  /** Ends every watch with UNAVAILABLE (SHUTTING_DOWN), refuses new ones, and stops listening. */
  close(): Promise<void>;
}

/**
 * What the hub tells an open watch. The hub holds the watch itself, not a promise
 * or a frame waiting on one: an idle watch costs its object and its stream.
 */
export interface WatchSubscriber {
  /** The developer's log may hold something new: read it from where the watch stands. */
  changed(): void;
  /** The progress ticker's turn for this watch (about once per progress interval). */
  tick(): void;
  /** The hub closed (the replica stops): end with this error. The hub has already let go of the watch. */
  shutDown(error: AppError): void;
}

export interface WatchHubDeps {
  db: Db;
  /** Open watches a developer may hold on this replica (SECRETS_WATCH_MAX_PER_DEVELOPER). */
  maxPerDeveloper: number;
  /** Open watches this replica serves (SECRETS_WATCH_MAX_PER_REPLICA). */
  maxPerReplica: number;
  /**
   * How often every waiting watch is ticked to send a progress response
   * (SECRETS_WATCH_PROGRESS_SECONDS). One timer ticks a slice of the watches at a
   * time, round the slices once per interval: the responses of a slice leave
   * together (a few writes per connection), and no burst of all of them holds up the
   * events behind it.
   */
  progressIntervalMs: number;
}

/** Slices of the watches that the progress ticker takes in turn. */
const TICK_SLICES = 20;

export function createWatchHub(deps: WatchHubDeps): WatchHub {
  const byDeveloper = new Map<string, Set<WatchSubscriber>>();
  let size = 0;
  let wakes = 0;
  let listener: Listener | undefined;
  let ticker: NodeJS.Timeout | undefined;
  let closed = false;
  const slices = Array.from({ length: TICK_SLICES }, () => new Set<WatchSubscriber>());
  let nextSlice = 0;
  let tickSlice = 0;

  return {
    async start() {
      ticker = setInterval(() => {
        for (const w of slices[tickSlice]!) w.tick();
        tickSlice = (tickSlice + 1) % TICK_SLICES;
      }, deps.progressIntervalMs / TICK_SLICES);
      ticker.unref();
      listener = await deps.db.listen(CHANGES_CHANNEL, {
        notify(developerId) {
          wakes += 1;
          for (const w of byDeveloper.get(developerId) ?? []) w.changed();
        },
        resync() {
          wakes += 1;
          for (const watches of byDeveloper.values()) for (const w of watches) w.changed();
        },
      });
    },

    open(developerId, watch) {
      if (closed) throw shuttingDown();
      const own = byDeveloper.get(developerId) ?? new Set<WatchSubscriber>();
      if (own.size >= deps.maxPerDeveloper) {
        throw new AppError("TOO_MANY_WATCHES", `a developer may hold at most ${deps.maxPerDeveloper} watches on one replica`, {
          limit: String(deps.maxPerDeveloper),
        });
      }
      if (size >= deps.maxPerReplica) {
        throw new AppError("TOO_MANY_WATCHES", "this replica serves as many watches as it may; retry on another", {
          limit: String(deps.maxPerReplica),
        });
      }
      slices[nextSlice]!.add(watch);
      nextSlice = (nextSlice + 1) % TICK_SLICES;
      own.add(watch);
      byDeveloper.set(developerId, own);
      size += 1;
    },

    remove(developerId, watch) {
      const own = byDeveloper.get(developerId);
      if (!own?.delete(watch)) return;
      if (own.size === 0) byDeveloper.delete(developerId);
      for (const slice of slices) if (slice.delete(watch)) break;
      size -= 1;
    },

    get size() {
      return size;
    },

    get wakes() {
      return wakes;
    },

    progressIntervalMs: deps.progressIntervalMs,

    async close() {
      closed = true;
      clearInterval(ticker);
      const all = [...byDeveloper.values()].flatMap((watches) => [...watches]);
      byDeveloper.clear();
      for (const slice of slices) slice.clear();
      size = 0;
      for (const w of all) w.shutDown(shuttingDown());
      await listener?.close();
    },
  };
}

/** The status every watch ends with when its replica stops: the client reconnects, to another replica. */
function shuttingDown(): AppError {
  return new AppError("SHUTTING_DOWN", "this replica is shutting down; reconnect and resume from the last revision");
}
