import { randomUUID } from "node:crypto";
import { AppError } from "../api/errors.js";
import type { SecretCache } from "../cache/secret-cache.js";
import type { DataKeys } from "../keys/data-keys.js";
import type { Db } from "../store/db.js";
import { createRateLimiter, type RateLimiter } from "./rate-limiter.js";
import { createSecretListing, type SecretListing } from "./secret-listing.js";
import { createSecretReads, type SecretReads } from "./secret-reads.js";
import { createSecretWatch, type SecretWatch } from "./secret-watch.js";
import { createSecretWrites, type SecretWrites } from "./secret-writes.js";
import type { WatchHub } from "./watch-hub.js";

/**
 * The use cases behind SecretService, one method per RPC, in three parts along
 * what they touch: the read path that returns values, through the lookup cache
 * (secret-reads.ts); the writes, fenced in that cache (secret-writes.ts); and the
 * calls that return attributes only (secret-listing.ts). Every method authorizes
 * and validates before it reads or changes anything.
 */
export interface SecretService extends SecretReads, SecretWrites, SecretListing, SecretWatch {}

export type { Page } from "./page-token.js";
export type { ListInput } from "./secret-listing.js";
export type { Secret, SecretVersion, VersionState } from "./secret-rows.js";
export type { CreateInput, DeleteOptions, UpdateInput } from "./secret-writes.js";
export type { WatchBatch, WatchEvent, WatchInput, WatchOutput } from "./secret-watch.js";

export interface SecretServiceDeps {
  db: Db;
  dataKeys: DataKeys;
  /** Lookup cache for current values (AccessSecret version 0, ResolveSecrets); every write goes through its fence. */
  cache: SecretCache;
  /** Versions that keep their ciphertext; older ones are destroyed (SECRETS_MAX_VERSIONS). */
  maxVersions: number;
  /** Per-developer caps (RESOURCE_EXHAUSTED): secrets stored, and read / write call rates. */
  limits?: { maxSecrets: number; reads: RateLimiter; writes: RateLimiter };
  newId?: () => string;
  /** Days a deleted secret stays in the recovery bin by default (SECRETS_RECOVERY_WINDOW_DAYS; 7 when unset). */
  recoveryWindowDays?: number;
  /** The clock time-driven behaviour reads (the recovery bin's delete and purge times, expiry, rotation schedules). */
  now?: () => Date;
  /** Told of an expiry or rotation time a write has just stored (the lifecycle job's wake). */
  scheduled?: (at: Date) => void;
  /** This replica's open watches; WatchSecrets is refused UNAVAILABLE without one. */
  watchHub?: WatchHub;
  /** Told of the events each watch response sends (metrics). */
  onWatchEventsSent?: (events: number, lagSeconds: readonly number[]) => void;
}

export function createSecretService(deps: SecretServiceDeps): SecretService {
  const { db, dataKeys, cache, maxVersions } = deps;
  const limits = deps.limits ?? {
    maxSecrets: Number.MAX_SAFE_INTEGER,
    reads: createRateLimiter({ ratePerSecond: 0, kind: "read" }),
    writes: createRateLimiter({ ratePerSecond: 0, kind: "write" }),
  };
  return {
    ...createSecretReads({ db, dataKeys, cache, reads: limits.reads }),
    ...createSecretWrites({
      db,
      dataKeys,
      cache,
      maxVersions,
      maxSecrets: limits.maxSecrets,
      writes: limits.writes,
      newId: deps.newId ?? randomUUID,
      recoveryWindowDays: deps.recoveryWindowDays ?? 7,
      now: deps.now ?? (() => new Date()),
      ...(deps.scheduled ? { scheduled: deps.scheduled } : {}),
    }),
    ...createSecretListing({ db, reads: limits.reads, now: deps.now ?? (() => new Date()) }),
    ...createSecretWatch({
      db,
      hub: deps.watchHub ?? noWatches,
      reads: limits.reads,
      ...(deps.onWatchEventsSent ? { onSent: deps.onWatchEventsSent } : {}),
    }),
  };
}

/** The hub of a service built without one (unit tests of the other calls): every watch is refused. */
const noWatches: WatchHub = {
  start: async () => undefined,
  open() {
    throw new AppError("SHUTTING_DOWN", "this service serves no watches");
  },
  remove: () => undefined,
  size: 0,
  wakes: 0,
  progressIntervalMs: 30_000,
  close: async () => undefined,
};
