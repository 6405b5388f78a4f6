import { randomUUID } from "node:crypto";
import type { Principal } from "../auth/principal.js";
import type { CachedLookup, SecretCache } from "../cache/secret-cache.js";
import type { KeyBytes } from "../crypto/key-bytes.js";
import { openValue, sealValue, type ValueBinding } from "../crypto/value-cipher.js";
import { AppError, integrityFailure } from "../api/errors.js";
import type { Db, Queryable } from "../store/db.js";
import { createCurrentReader } from "../store/current-reader.js";
import * as store from "../store/secret-store.js";
import * as versionStore from "../store/version-store.js";
import { requireAllowlisted, requireScope } from "../auth/authorize.js";
import { retryConflicts } from "./conflicts.js";
import { DataKeyUnavailable, type DataKeys } from "../keys/data-keys.js";
import { pageOf, pageTokenCodec, type Page } from "./page-token.js";
import { createRateLimiter, type RateLimiter } from "./rate-limiter.js";
import {
  validateDescription,
  validateMetadata,
  validateName,
  validateNameList,
  validateNamePrefix,
  validatePageSize,
  validateValue,
  validateVersion,
  type JsonObject,
} from "./validation.js";

/** A secret's attributes as the API returns them; never its value. */
export interface Secret {
  id: string;
  name: string;
  description: string;
  metadata: JsonObject;
  version: number;
  createdAt: Date;
  updatedAt: Date;
  createdBy: string;
  updatedBy: string;
}

export type VersionState = "enabled" | "destroyed";

export interface SecretVersion {
  version: number;
  state: VersionState;
  createdAt: Date;
  createdBy: string;
}

export type { Page } from "./page-token.js";

export interface CreateInput {
  name: string;
  value: string;
  description: string;
  metadata: JsonObject | undefined;
}

export interface UpdateInput {
  name: string;
  value: string | undefined;
  description: string | undefined;
  metadata: JsonObject | undefined;
  expectedVersion: number;
}

export interface ListInput {
  pageSize: number;
  pageToken: string;
  namePrefix: string;
  metadataFilter: JsonObject | undefined;
}

/** The use cases behind SecretService, one method per RPC. Every method authorizes first. */
export interface SecretService {
  createSecret(p: Principal, input: CreateInput): Promise<Secret>;
  getSecret(p: Principal, name: string): Promise<Secret>;
  listSecrets(p: Principal, input: ListInput): Promise<Page<Secret>>;
  updateSecret(p: Principal, input: UpdateInput): Promise<Secret>;
  deleteSecret(p: Principal, name: string, expectedVersion: number): Promise<void>;
  /** The value as its UTF-8 bytes, straight from decryption (the handler writes them to the wire as they are). */
  accessSecret(p: Principal, name: string, version: number): Promise<{ name: string; version: number; value: Buffer }>;
  listSecretVersions(p: Principal, name: string, pageSize: number, pageToken: string): Promise<Page<SecretVersion>>;
  destroySecretVersion(p: Principal, name: string, version: number): Promise<SecretVersion>;
  /** Name → value as UTF-8 bytes. */
  resolveSecrets(p: Principal, names: readonly string[]): Promise<Map<string, Buffer>>;
}

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
}

/** A cache hit: what opening a value needs. */
type FoundEntry = Extract<CachedLookup, { kind: "found" }>;

const nameTokens = pageTokenCodec((k): k is string => typeof k === "string" && k.length > 0 && k.length <= 128);
const versionTokens = pageTokenCodec((k): k is number => Number.isInteger(k) && (k as number) > 0);

export function createSecretService(deps: SecretServiceDeps): SecretService {
  const { db, dataKeys, cache, maxVersions } = deps;
  // Misses of concurrent calls share queries (store/current-reader.ts).
  const readCurrent = createCurrentReader(db);
  const newId = deps.newId ?? randomUUID;
  const limits = deps.limits ?? {
    maxSecrets: Number.MAX_SAFE_INTEGER,
    reads: createRateLimiter({ ratePerSecond: 0, kind: "read" }),
    writes: createRateLimiter({ ratePerSecond: 0, kind: "write" }),
  };

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

  /**
   * A write: fenced in the cache before it commits, released after (docs/design.md, The
   * cache); the transaction is retried inside the fence when it loses a race.
   */
  async function fenced<T>(developerId: string, name: string, write: () => Promise<T>): Promise<T> {
    await cache.beginWrite(developerId, [name]);
    try {
      return await retryConflicts(write);
    } finally {
      await cache.endWrite(developerId, [name]);
    }
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

  async function mustFind(q: Queryable, developerId: string, name: string, forUpdate = false): Promise<store.SecretRow> {
    const row = await store.findSecret(q, developerId, name, { forUpdate });
    if (!row) throw notFound();
    return row;
  }

  return {
    async createSecret(p, input) {
      requireScope(p, "secrets:write");
      const name = validateName(input.name);
      const value = validateValue(input.value);
      const description = validateDescription(input.description);
      const metadataJson = validateMetadata(input.metadata ?? {});
      requireAllowlisted(p, [name]);
      limits.writes.take(p.developerId);

      const id = newId();
      const row = await fenced(p.developerId, name, () => dataKeys.withWriteKey(p.developerId, async (tx, dek) => {
        return store.insertSecret(tx, {
          id,
          developerId: p.developerId,
          name,
          description,
          metadataJson,
          createdBy: p.developerId,
          ciphertext: sealValue(dek.key, dek.version, value, { developerId: p.developerId, secretId: id, name, version: 1 }),
          dekVersion: dek.version,
        }, limits.maxSecrets);
      }));
      return toSecret(row);
    },

    async getSecret(p, rawName) {
      requireScope(p, "secrets:read");
      const name = validateName(rawName);
      requireAllowlisted(p, [name]);
      limits.reads.take(p.developerId);
      return toSecret(await mustFind(db, p.developerId, name));
    },

    async listSecrets(p, input) {
      requireScope(p, "secrets:read");
      const pageSize = validatePageSize(input.pageSize);
      const namePrefix = validateNamePrefix(input.namePrefix);
      const metadataFilterJson = input.metadataFilter
        ? validateMetadata(input.metadataFilter, "metadata_filter")
        : undefined;
      const onlyNames = p.allowlist ? [...p.allowlist].sort() : undefined;
      const binding = [p.developerId, namePrefix, canonicalJson(input.metadataFilter ?? {}), JSON.stringify(onlyNames ?? null)];
      const afterName = nameTokens.decode(input.pageToken, binding);
      limits.reads.take(p.developerId);

      const rows = await store.listSecrets(db, {
        developerId: p.developerId,
        afterName,
        namePrefix,
        metadataFilterJson,
        onlyNames,
        limit: pageSize + 1,
      });
      return pageOf(rows, pageSize, toSecret, (r) => r.name, nameTokens, binding);
    },

    async updateSecret(p, input) {
      requireScope(p, "secrets:write");
      const name = validateName(input.name);
      const value = input.value === undefined ? undefined : validateValue(input.value);
      const description = input.description === undefined ? undefined : validateDescription(input.description);
      const metadataJson = input.metadata === undefined ? undefined : validateMetadata(input.metadata);
      const expected = validateVersion(input.expectedVersion, "expected_version", true);
      if (value === undefined && description === undefined && metadataJson === undefined) {
        throw new AppError("EMPTY_UPDATE", "the update changes nothing: send value, description or metadata", {
          field: "value,description,metadata",
        });
      }
      requireAllowlisted(p, [name]);
      limits.writes.take(p.developerId);

      const change = { description, metadataJson, updatedBy: p.developerId };
      const row = await fenced(p.developerId, name, async () =>
        value === undefined
          ? await db.transaction(async (tx) => {
              const current = await lockForChange(tx, p.developerId, name, expected);
              return store.updateSecretAttributes(tx, p.developerId, current.id, { ...change, newVersion: undefined });
            })
          : await dataKeys.withWriteKey(p.developerId, async (tx, dek) => {
              const current = await lockForChange(tx, p.developerId, name, expected);
              const version = current.currentVersion + 1;
              const binding = { developerId: p.developerId, secretId: current.id, name, version };
              await versionStore.insertVersion(tx, {
                secretId: current.id,
                developerId: p.developerId,
                version,
                ciphertext: sealValue(dek.key, dek.version, value, binding),
                dekVersion: dek.version,
                createdBy: p.developerId,
              });
              await versionStore.destroyVersionsUpTo(tx, p.developerId, current.id, version - maxVersions);
              return store.updateSecretAttributes(tx, p.developerId, current.id, { ...change, newVersion: version });
            }, {
              // A first write creates the developer's data key: not for an update of nothing
              // (the lock above re-checks once the key exists).
              beforeFirstKey: async () => void (await mustFind(db, p.developerId, name)),
            }),
      );
      return toSecret(row);
    },

    async deleteSecret(p, rawName, expectedVersion) {
      requireScope(p, "secrets:write");
      const name = validateName(rawName);
      const expected = validateVersion(expectedVersion, "expected_version", true);
      requireAllowlisted(p, [name]);
      limits.writes.take(p.developerId);
      await fenced(p.developerId, name, () =>
        db.transaction(async (tx) => {
          const current = await lockForChange(tx, p.developerId, name, expected);
          await store.deleteSecretById(tx, p.developerId, current.id);
        }),
      );
    },

    async accessSecret(p, rawName, rawVersion) {
      requireScope(p, "secrets:access");
      const name = validateName(rawName);
      const version = validateVersion(rawVersion, "version", true);
      requireAllowlisted(p, [name]);
      limits.reads.take(p.developerId);
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

    async listSecretVersions(p, rawName, rawPageSize, pageToken) {
      requireScope(p, "secrets:read");
      const name = validateName(rawName);
      const pageSize = validatePageSize(rawPageSize);
      requireAllowlisted(p, [name]);
      limits.reads.take(p.developerId);
      const secret = await mustFind(db, p.developerId, name);
      // Bound to the secret's id: a token from a deleted and re-created name is refused.
      const binding = [p.developerId, secret.id];
      const before = versionTokens.decode(pageToken, binding);
      const rows = await versionStore.listVersions(db, p.developerId, secret.id, before, pageSize + 1);
      return pageOf(rows, pageSize, toVersion, (r) => r.version, versionTokens, binding);
    },

    async destroySecretVersion(p, rawName, rawVersion) {
      requireScope(p, "secrets:write");
      const name = validateName(rawName);
      const version = validateVersion(rawVersion, "version", false);
      requireAllowlisted(p, [name]);
      limits.writes.take(p.developerId);
      const row = await fenced(p.developerId, name, () => db.transaction(async (tx) => {
        const current = await mustFind(tx, p.developerId, name, true);
        if (version > current.currentVersion) throw versionNotFound(version);
        if (version === current.currentVersion) {
          throw new AppError("CURRENT_VERSION", "the current version cannot be destroyed; write a new value first", {
            version: String(version),
          });
        }
        await versionStore.destroyVersion(tx, p.developerId, current.id, version);
        return versionStore.findVersion(tx, p.developerId, current.id, version);
      }));
      if (!row) throw versionNotFound(version);
      return toVersion(row);
    },

    async resolveSecrets(p, rawNames) {
      requireScope(p, "secrets:access");
      const names = validateNameList(rawNames);
      requireAllowlisted(p, names);
      limits.reads.take(p.developerId, names.length);
      const { values, missing } = await currentValues(p.developerId, names);
      if (missing.length > 0) {
        throw new AppError("SECRET_NOT_FOUND", `secrets not found: ${missing.join(", ")}`, { names: missing.join(",") });
      }
      return new Map([...values].map(([name, v]) => [name, v.value]));
    },
  };
}

/** Locks a secret for a write and checks `expected_version` (0: no precondition) under that lock. */
async function lockForChange(tx: Queryable, developerId: string, name: string, expected: number): Promise<store.SecretRow> {
  const row = await store.findSecret(tx, developerId, name, { forUpdate: true });
  if (!row) throw notFound();
  if (expected !== 0 && row.currentVersion !== expected) {
    throw new AppError("VERSION_MISMATCH", "expected_version does not match the current version", {
      expected_version: String(expected),
      current_version: String(row.currentVersion),
    });
  }
  return row;
}

function notFound(): AppError {
  return new AppError("SECRET_NOT_FOUND", "secret not found", { field: "name" });
}

function versionNotFound(version: number): AppError {
  return new AppError("VERSION_NOT_FOUND", "secret version not found", { version: String(version) });
}

/** What the cache may hold for a current-version row: its ciphertext as stored, or "missing". */
function cacheable(row: store.SealedVersionRow | undefined): CachedLookup | undefined {
  if (!row) return { kind: "missing" };
  if (!row.ciphertext || row.dekVersion === null) return undefined;
  return { kind: "found", secretId: row.secretId, version: row.version, dekVersion: row.dekVersion, ciphertext: row.ciphertext };
}

function toSecret(r: store.SecretRow): Secret {
  return {
    id: r.id,
    name: r.name,
    description: r.description,
    metadata: r.metadata as JsonObject,
    version: r.currentVersion,
    createdAt: r.createdAt,
    updatedAt: r.updatedAt,
    createdBy: r.createdBy,
    updatedBy: r.updatedBy,
  };
}

function toVersion(r: versionStore.VersionRow): SecretVersion {
  return { version: r.version, state: r.state, createdAt: r.createdAt, createdBy: r.createdBy };
}

/** JSON with object keys sorted, so equal filters bind page tokens alike. */
function canonicalJson(v: unknown): string {
  if (Array.isArray(v)) return `[${v.map(canonicalJson).join(",")}]`;
  if (v !== null && typeof v === "object") {
    const entries = Object.entries(v as Record<string, unknown>).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
    return `{${entries.map(([k, x]) => `${JSON.stringify(k)}:${canonicalJson(x)}`).join(",")}}`;
  }
  return JSON.stringify(v);
}
