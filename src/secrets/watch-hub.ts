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
   * Opens a watch of `developerId`'s changes, which ends when `signal` aborts;
   * RESOURCE_EXHAUSTED (TOO_MANY_WATCHES) past the limits.
   */
  open(developerId: string, signal: AbortSignal): Watch;
  /** Watches open on this replica. */
  readonly size: number;
  /** How often a waiting watch is ticked (WatchHubDeps.progressIntervalMs). */
  readonly progressIntervalMs: number;
  /** Ends every watch with UNAVAILABLE (SHUTTING_DOWN), refuses new ones, and stops listening. */
  close(): Promise<void>;
}

/** What a watch waits for next: a change to read, the progress ticker, or its caller gone. */
export type WakeReason = "changed" | "tick" | "aborted";

export interface Watch {
  /**
   * Resolves when the developer's log may hold something new (or did since the last
   * call), at the hub's next progress tick, or when the watch's signal aborts;
   * rejects when the hub closes.
   */
  next(): Promise<WakeReason>;
  close(): void;
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

interface OpenWatch {
  /** Set by a wake that found nobody waiting; the next `next` returns at once. */
  pending: boolean;
  aborted: boolean;
  /** Set while `next` waits. */
  wake?: (reason: WakeReason) => void;
  fail?: (error: unknown) => void;
}

export function createWatchHub(deps: WatchHubDeps): WatchHub {
  const byDeveloper = new Map<string, Set<OpenWatch>>();
  let size = 0;
  let listener: Listener | undefined;
  let ticker: NodeJS.Timeout | undefined;
  let closed = false;
  const slices = Array.from({ length: TICK_SLICES }, () => new Set<OpenWatch>());
  let nextSlice = 0;
  let tickSlice = 0;

  function wakeDeveloper(developerId: string): void {
    for (const w of byDeveloper.get(developerId) ?? []) wakeOne(w);
  }

  function wakeOne(w: OpenWatch): void {
    if (w.wake) w.wake("changed");
    else w.pending = true;
  }

  return {
    async start() {
      ticker = setInterval(() => {
        for (const w of slices[tickSlice]!) w.wake?.("tick");
        tickSlice = (tickSlice + 1) % TICK_SLICES;
      }, deps.progressIntervalMs / TICK_SLICES);
      ticker.unref();
      listener = await deps.db.listen(CHANGES_CHANNEL, {
        notify: wakeDeveloper,
        resync: () => {
          for (const watches of byDeveloper.values()) for (const w of watches) wakeOne(w);
        },
      });
    },

    open(developerId, signal) {
      if (closed) throw shuttingDown();
      const own = byDeveloper.get(developerId) ?? new Set<OpenWatch>();
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
      const w: OpenWatch = { pending: false, aborted: signal.aborted };
      const slice = slices[nextSlice]!;
      nextSlice = (nextSlice + 1) % TICK_SLICES;
      slice.add(w);
      own.add(w);
      byDeveloper.set(developerId, own);
      size += 1;
      let open = true;
      const onAbort = () => {
        w.aborted = true;
        w.wake?.("aborted");
      };
      signal.addEventListener("abort", onAbort, { once: true });
      return {
        next() {
          if (closed) return Promise.reject(shuttingDown());
          if (w.aborted) return Promise.resolve("aborted");
          if (w.pending) {
            w.pending = false;
            return Promise.resolve("changed");
          }
          return new Promise<WakeReason>((resolve, reject) => {
            w.wake = (reason) => {
              w.wake = w.fail = undefined;
              resolve(reason);
            };
            w.fail = (error) => {
              w.wake = w.fail = undefined;
              reject(error);
            };
          });
        },
        close() {
          if (!open) return;
          open = false;
          signal.removeEventListener("abort", onAbort);
          slice.delete(w);
          own.delete(w);
          if (own.size === 0 && byDeveloper.get(developerId) === own) byDeveloper.delete(developerId);
          size -= 1;
        },
      };
    },

    get size() {
      return size;
    },

    progressIntervalMs: deps.progressIntervalMs,

    async close() {
      closed = true;
      clearInterval(ticker);
      for (const watches of byDeveloper.values()) for (const w of watches) w.fail?.(shuttingDown());
      await listener?.close();
    },
  };
}

/** The status every watch ends with when its replica stops: the client reconnects, to another replica. */
function shuttingDown(): AppError {
  return new AppError("SHUTTING_DOWN", "this replica is shutting down; reconnect and resume from the last revision");
}
