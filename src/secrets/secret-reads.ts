import type { Principal } from "../auth/principal.js";
import { requireAllowlisted, requireScope } from "../auth/authorize.js";
import type { CachedLookup, SecretCache } from "../cache/secret-cache.js";
import type { KeyBytes } from "../crypto/key-bytes.js";
import { openValue, type ValueBinding } from "../crypto/value-cipher.js";
import { AppError, integrityFailure } from "../api/errors.js";
import { DataKeyUnavailable, type DataKeys } from "../keys/data-keys.js";
import type { Db } from "../store/db.js";
import { createCurrentReader } from "../store/current-reader.js";
import * as store from "../store/secret-store.js";
import type { RateLimiter } from "./rate-limiter.js";
import { notFound, versionNotFound } from "./secret-rows.js";
import { validateName, validateNameList, validateVersion } from "./validation.js";

/**
 * The read path: AccessSecret and ResolveSecrets, the calls that return values.
 * Current values come from the lookup cache when it holds them (sealed entries,
 * opened here with the developer's data key) and otherwise from Postgres, the
 * misses of concurrent calls sharing queries (store/current-reader.ts); a miss
 * fills the cache off the response path. Older versions are read from Postgres.
 */
export interface SecretReads {
  /** The value as its UTF-8 bytes, straight from decryption (the handler writes them to the wire as they are). */
  accessSecret(p: Principal, name: string, version: number): Promise<{ name: string; version: number; value: Buffer }>;
  /** Name → value as UTF-8 bytes. */
  resolveSecrets(p: Principal, names: readonly string[]): Promise<Map<string, Buffer>>;
}

export interface SecretReadsDeps {
  db: Db;
  dataKeys: DataKeys;
  cache: SecretCache;
  /** The per-developer read rate (RESOURCE_EXHAUSTED past it). */
  reads: RateLimiter;
}

/** A cache hit: what opening a value needs. */
type FoundEntry = Extract<CachedLookup, { kind: "found" }>;

export function createSecretReads(deps: SecretReadsDeps): SecretReads {
  const { db, dataKeys, cache, reads } = deps;
  // Misses of concurrent calls share queries (store/current-reader.ts).
  const readCurrent = createCurrentReader(db);

  async function open(developerId: string, name: string, row: store.SealedVersionRow): Promise<Buffer> {
    if (row.state === "destroyed" || !row.ciphertext || row.dekVersion === null) {
      throw new AppError("VERSION_DESTROYED", "this version was destroyed", { version: String(row.version) });
    }
    if (!row.kekId || !row.wrappedKey) throw integrityFailure("data key", new Error("a stored value's data key is missing"));
    const dek = await dataKeys.forRead(developerId, row.dekVersion, { kekId: row.kekId, wrappedKey: row.wrappedKey });
    const binding: ValueBinding = { developerId, secretId: row.secretId, name, version: row.version };
    return openValue(dek, row.dekVersion, row.ciphertext, binding);
  }

  /**
   * Opens a cache hit. The AAD is built from the developer and the name asked for,
   * never from the entry. With the DEK in memory (the usual case) it returns the
   * value itself rather than a promise.
   */
  function openHit(developerId: string, name: string, hit: FoundEntry): Buffer | Promise<Buffer> {
    const dek = dataKeys.inMemory(developerId, hit.dekVersion);
    if (dek === undefined) {
      return dataKeys.forRead(developerId, hit.dekVersion).then((key) => openHitWith(key, developerId, name, hit));
    }
    return openHitWith(dek, developerId, name, hit);
  }

  function openHitWith(dek: KeyBytes, developerId: string, name: string, hit: FoundEntry): Buffer {
    const binding: ValueBinding = { developerId, secretId: hit.secretId, name, version: hit.version };
    return openValue(dek, hit.dekVersion, hit.ciphertext, binding);
  }

  /** Current values of `names`: one cache round trip, one Postgres query for the misses, fills for those. */
  async function currentValues(
    developerId: string,
    names: readonly string[],
  ): Promise<{ values: Map<string, { version: number; value: Buffer }>; missing: string[] }> {
    const lookups = await cache.lookup(developerId, names);
    // Plain loops, and nothing built for misses when there are none: this runs on
    // every cache hit (profiled: the filter, the row map and the entries iterator
    // were most of its own cost).
    let missNames: string[] | undefined;
    for (let i = 0; i < names.length; i++) {
      if (lookups[i]?.hit === undefined) (missNames ??= []).push(names[i] as string);
    }
    const byName = missNames === undefined ? undefined : new Map((await readCurrent(developerId, missNames)).map((r) => [r.name, r]));
    if (byName !== undefined) {
      const fills = lookups
        .filter((l) => l.hit === undefined)
        .map((l) => ({ ticket: l.ticket, value: cacheable(byName.get(l.ticket.name)) }))
        .filter((f): f is { ticket: typeof f.ticket; value: CachedLookup } => f.value !== undefined);
      // Off the response path: a fill that fails or loses a race only costs a later miss.
      void cache.fill(fills);
    }
    const values = new Map<string, { version: number; value: Buffer }>();
    const missing: string[] = [];
    let stale: string[] | undefined;
    for (let i = 0; i < names.length; i++) {
      const name = names[i] as string;
      const hit = lookups[i]?.hit;
      if (hit?.kind === "found") {
        try {
          const opened = openHit(developerId, name, hit);
          values.set(name, { version: hit.version, value: opened instanceof Buffer ? opened : await opened });
        } catch (e) {
          // An entry under a data key since retired or shredded: read the database instead.
          if (!(e instanceof DataKeyUnavailable)) throw e;
          (stale ??= []).push(name);
        }
        continue;
      }
      const row = hit === undefined ? byName?.get(name) : undefined;
      if (row) values.set(name, { version: row.version, value: await open(developerId, name, row) });
      else missing.push(name);
    }
    if (stale !== undefined) {
      for (const row of await store.findSealedCurrent(db, developerId, stale)) {
        values.set(row.name, { version: row.version, value: await open(developerId, row.name, row) });
      }
      missing.push(...stale.filter((n) => !values.has(n)));
    }
    return { values, missing };
  }

  return {
    async accessSecret(p, rawName, rawVersion) {
      requireScope(p, "secrets:access");
      const name = validateName(rawName);
      const version = validateVersion(rawVersion, "version", true);
      requireAllowlisted(p, [name]);
      reads.take(p.developerId);
      if (version === 0) {
        const { values } = await currentValues(p.developerId, [name]);
        const current = values.get(name);
        if (current === undefined) throw notFound();
        return { name, ...current };
      }
      const row = await store.findSealedVersion(db, p.developerId, name, version);
      if (!row) {
        if (version !== 0 && (await store.findSecret(db, p.developerId, name))) throw versionNotFound(version);
        throw notFound();
      }
      return { name, version: row.version, value: await open(p.developerId, name, row) };
    },

    async resolveSecrets(p, rawNames) {
      requireScope(p, "secrets:access");
      const names = validateNameList(rawNames);
      requireAllowlisted(p, names);
      reads.take(p.developerId, names.length);
      const { values, missing } = await currentValues(p.developerId, names);
      if (missing.length > 0) {
        throw new AppError("SECRET_NOT_FOUND", `secrets not found: ${missing.join(", ")}`, { names: missing.join(",") });
      }
      return new Map([...values].map(([name, v]) => [name, v.value]));
    },
  };
}

/** What the cache may hold for a current-version row: its ciphertext as stored, or "missing". */
function cacheable(row: store.SealedVersionRow | undefined): CachedLookup | undefined {
  if (!row) return { kind: "missing" };
  if (!row.ciphertext || row.dekVersion === null) return undefined;
  return { kind: "found", secretId: row.secretId, version: row.version, dekVersion: row.dekVersion, ciphertext: row.ciphertext };
}
