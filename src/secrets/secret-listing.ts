import type { Principal } from "../auth/principal.js";
import { requireAllowlisted, requireScope } from "../auth/authorize.js";
import { NAME_PATTERN } from "../api/limits.js";
import type { Db } from "../store/db.js";
import * as store from "../store/secret-store.js";
import * as versionStore from "../store/version-store.js";
import { pageOf, pageTokenCodec, type Page } from "./page-token.js";
import type { RateLimiter } from "./rate-limiter.js";
import { mustFind, toSecret, toVersion, type Secret, type SecretVersion } from "./secret-rows.js";
import {
  validateExpiresBefore,
  validateMetadata,
  validateName,
  validateNamePrefix,
  validatePageSize,
  UUID_PATTERN,
  type JsonObject,
  type WireSpan,
} from "./validation.js";

/**
 * The calls that return attributes, never values: GetSecret, ListSecrets (of the
 * live secrets, or of the recovery bin) and ListSecretVersions, straight from Postgres. Lists are keyset pages whose tokens
 * are bound to the developer and every list parameter (page-token.ts).
 */
export interface SecretListing {
  getSecret(p: Principal, name: string): Promise<Secret>;
  listSecrets(p: Principal, input: ListInput): Promise<Page<Secret>>;
  listSecretVersions(p: Principal, name: string, pageSize: number, pageToken: string): Promise<Page<SecretVersion>>;
}

export interface ListInput {
  pageSize: number;
  pageToken: string;
  namePrefix: string;
  metadataFilter: JsonObject | undefined;
  /** List the recovery bin instead of the live secrets (never any value). */
  showDeleted?: boolean;
  /** Only secrets that expire before this time. */
  expiresBefore?: WireSpan;
  /** Only secrets whose rotation is due. */
  rotationDue?: boolean;
}

export interface SecretListingDeps {
  db: Db;
  /** The per-developer read rate (RESOURCE_EXHAUSTED past it). */
  reads: RateLimiter;
  /** The clock a rotation's next time is compared with (`rotation_due`). */
  now: () => Date;
}

const nameTokens = pageTokenCodec((k): k is string => typeof k === "string" && k.length > 0 && k.length <= 128);
/** The bin may hold several secrets of one name: its pages continue after `name/id`. */
const binnedTokens = pageTokenCodec((k): k is string => {
  if (typeof k !== "string") return false;
  const [name, id, ...rest] = k.split("/");
  return rest.length === 0 && NAME_PATTERN.test(name ?? "") && UUID_PATTERN.test(id ?? "");
});
const versionTokens = pageTokenCodec((k): k is number => Number.isInteger(k) && (k as number) > 0);

export function createSecretListing(deps: SecretListingDeps): SecretListing {
  const { db, reads, now } = deps;
  return {
    async getSecret(p, rawName) {
      requireScope(p, "secrets:read");
      const name = validateName(rawName);
      requireAllowlisted(p, [name]);
      reads.take(p.developerId);
      return toSecret(await mustFind(db, p.developerId, name));
    },

    async listSecrets(p, input) {
      requireScope(p, "secrets:read");
      const pageSize = validatePageSize(input.pageSize);
      const namePrefix = validateNamePrefix(input.namePrefix);
      const metadataFilterJson = input.metadataFilter
        ? validateMetadata(input.metadataFilter, "metadata_filter")
        : undefined;
      const expiresBefore = input.expiresBefore ? validateExpiresBefore(input.expiresBefore) : undefined;
      const onlyNames = p.allowlist ? [...p.allowlist].sort() : undefined;
      const binding = [
        p.developerId,
        namePrefix,
        canonicalJson(input.metadataFilter ?? {}),
        JSON.stringify(onlyNames ?? null),
        expiresBefore?.toISOString() ?? "",
        input.rotationDue ? "rotation-due" : "",
      ];
      const query = {
        developerId: p.developerId,
        namePrefix,
        metadataFilterJson,
        onlyNames,
        limit: pageSize + 1,
        ...(expiresBefore ? { expiresBefore } : {}),
        ...(input.rotationDue ? { rotationDueAt: now() } : {}),
      };
      if (input.showDeleted) {
        // Bound apart from live listings: a token of one is refused by the other.
        binding.push("deleted");
        const [afterName, afterId] = binnedTokens.decode(input.pageToken, binding)?.split("/") ?? [];
        reads.take(p.developerId);
        const rows = await store.listSecrets(db, { ...query, binned: true, afterName, afterId });
        return pageOf(rows, pageSize, toSecret, (r) => `${r.name}/${r.id}`, binnedTokens, binding);
      }
      const afterName = nameTokens.decode(input.pageToken, binding);
      reads.take(p.developerId);
      const rows = await store.listSecrets(db, { ...query, afterName });
      return pageOf(rows, pageSize, toSecret, (r) => r.name, nameTokens, binding);
    },

    async listSecretVersions(p, rawName, rawPageSize, pageToken) {
      requireScope(p, "secrets:read");
      const name = validateName(rawName);
      const pageSize = validatePageSize(rawPageSize);
      requireAllowlisted(p, [name]);
      reads.take(p.developerId);
      const secret = await mustFind(db, p.developerId, name);
      // Bound to the secret's id: a token from a deleted and re-created name is refused.
      const binding = [p.developerId, secret.id];
      const before = versionTokens.decode(pageToken, binding);
      const rows = await versionStore.listVersions(db, p.developerId, secret.id, before, pageSize + 1);
      return pageOf(rows, pageSize, toVersion, (r) => r.version, versionTokens, binding);
    },
  };
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
