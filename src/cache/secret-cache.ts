import { createHash } from "node:crypto";
import { AppError } from "../api/errors.js";

/**
 * The lookup cache: sealed entries, generations and write fences, on Redis or in
 * process. What it holds is what a lookup needs (secret id, version, DEK version
 * and the value's ciphertext exactly as stored) or "not found"; never a plaintext
 * and never a key. A fill never encrypts anything. The reader decrypts a hit with
 * associated data built from the developer and the name it was asked for, so an
 * entry moved under another key fails instead of answering.
 *
 * Each entry also carries an expiry and a MAC under a key the store never sees,
 * over the developer and name it was filled for, the generation it was filled
 * beside, the expiry and the entry (entry-codec.ts). An entry that fails it, is
 * malformed or has expired by the reader's clock is a miss, and the lookup can
 * still fill. So an entry written back into Redis after a write (a replay) is
 * refused; one written back together with its old generation is served at most
 * until its expiry: the value was current at most one TTL (+10 %) before.
 *
 * Coherence (docs/design.md, "The cache"): a lookup never returns a value older than a
 * write that has already returned to its caller, on any replica.
 *
 *   write:  beginWrite  — INCR gen; INCR fence (expires in 60 s); DEL entry.
 *                         If this fails the write fails UNAVAILABLE before anything commits.
 *           commit
 *           endWrite    — INCR gen; DEL entry; DECR fence (best effort; a failure leaves
 *                         the fence to expire, and until then reads go to Postgres).
 *   read:   lookup      — GET entry, gen, fence in one round trip. A hit is served.
 *           on a miss   — read Postgres, then fill through one atomic script that stores
 *                         the entry only if gen is unchanged since the lookup, no fence
 *                         stands, and the Postgres read began less than 30 s ago.
 *
 * Why no stale value can be filled: take a write W that returned, and a reader R
 * that filled. R's lookup saw gen g and no fence. If R's lookup came before W's
 * beginWrite, W's INCR changed gen before R's fill could check it (W returned, so
 * both INCRs happened), unless R filled before beginWrite — but then W's DELs
 * remove that entry afterwards. If R's lookup came after beginWrite, R saw the fence
 * or, if the fence was already lifted by endWrite, R's Postgres read began after
 * W's commit and is fresh. A fence that expired because endWrite failed leaves gen
 * at its post-beginWrite value, so a reader could fill only from a Postgres read
 * started after that expiry — 60 s after W began, by which time W committed or
 * aborted; the 30 s bound on a read's age keeps a stalled reader from filling an
 * old read later. "Not found" entries follow the same rules, so creates are writes.
 */

/** A decoded cache entry. */
export type CachedLookup =
  | { kind: "found"; secretId: string; version: number; dekVersion: number; ciphertext: Buffer }
  | { kind: "missing" };

/** What a miss needs to fill later: the generation it saw and when it looked. */
export interface FillTicket {
  readonly developerId: string;
  readonly name: string;
  /** The generation seen by the lookup, or "" when none existed; null means "do not fill". */
  readonly generation: string | null;
  readonly lookedUpAt: number;
}

export interface LookupResult {
  hit: CachedLookup | undefined;
  ticket: FillTicket;
}

/**
 * What a lookup found per name: a hit; a miss (no entry); an entry refused because
 * it is malformed or its MAC fails ("rejected": forged, corrupted, or sealed under
 * another entry key) or because its expiry has passed ("expired"); or an error
 * (the store unreachable). Refused entries are misses that may fill.
 */
export type LookupOutcome = "hit" | "miss" | "rejected" | "expired" | "error";

/** Which cache runs: Redis, in-process (embedded database only), or none. */
export type CacheKind = "redis" | "memory" | "none";

export interface SecretCache {
  readonly kind: CacheKind;
  /** One round trip for all names. Never throws: a cache failure is a miss that will not fill. */
  lookup(developerId: string, names: readonly string[]): Promise<LookupResult[]>;
  /** Stores entries for misses whose tickets are still valid. Never throws. */
  fill(items: readonly { ticket: FillTicket; value: CachedLookup }[]): Promise<void>;
  /** Before commit. Throws BACKEND_UNAVAILABLE when the fence cannot be set. */
  beginWrite(developerId: string, names: readonly string[]): Promise<void>;
  /** After commit (or rollback). Never throws. */
  endWrite(developerId: string, names: readonly string[]): Promise<void>;
  /** Deletes every entry of a developer (shredding, key retirement); returns how many went. Throws when the cache cannot. */
  evictDeveloper(developerId: string): Promise<number>;
  close(): Promise<void>;
}

/** How long a fence stands if its writer never lifts it. */
export const FENCE_TTL_MS = 60_000;
/** A fill from a Postgres read older than this is dropped. */
export const MAX_FILL_READ_AGE_MS = 30_000;
/** Generations outlive every entry and every fill window. */
export const GENERATION_TTL_MS = 3_600_000;

/**
 * Keys of one developer share one Redis Cluster hash slot: `sec:{h}:` with h the
 * first 16 hex digits of sha256(developer id), so multi-key reads and scripts work
 * on a cluster. Names are `[A-Za-z0-9_]`, safe in keys as they are.
 */
export function developerPrefix(developerId: string): string {
  return `sec:{${createHash("sha256").update(developerId, "utf8").digest("hex").slice(0, 16)}}:`;
}

export interface NameKeys {
  entry: string;
  generation: string;
  fence: string;
}

export function nameKeys(prefix: string, name: string): NameKeys {
  return { entry: `${prefix}v:${name}`, generation: `${prefix}g:${name}`, fence: `${prefix}f:${name}` };
}

/** Entry lifetime with ±10 % jitter, so entries filled together do not expire together. */
export function jitteredTtl(ttlMs: number, random: () => number = Math.random): number {
  return Math.max(1, Math.round(ttlMs * (0.9 + 0.2 * random())));
}

/** The cache used without a value cache (DATABASE_URL and no REDIS_URL). */
export function noCache(): SecretCache {
  return {
    kind: "none",
    async lookup(developerId, names) {
      const lookedUpAt = Date.now();
      return names.map((name) => ({ hit: undefined, ticket: { developerId, name, generation: null, lookedUpAt } }));
    },
    async fill() {},
    async beginWrite() {},
    async endWrite() {},
    async evictDeveloper() {
      return 0;
    },
    async close() {},
  };
}

export function fenceUnavailable(cause: unknown): AppError {
  return new AppError("BACKEND_UNAVAILABLE", "cache unavailable: the write was not made", {}, { cause });
}
