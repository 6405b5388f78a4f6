import { Cluster, Redis, type RedisOptions } from "ioredis";
import type { KeyBytes } from "../crypto/key-bytes.js";
import { smartBatcher, type SmartBatcher } from "../lib/coalescing-batcher.js";
import { createCoherentCache, type CacheStore } from "./coherent-cache.js";
import type { LookupOutcome, NameKeys, SecretCache } from "./secret-cache.js";

/**
 * The Redis cache (ioredis). Reads are one MGET; fills, fences and releases are Lua
 * scripts, atomic on the server. Commands time out quickly and are not queued while
 * disconnected, so a Redis that is down or slow turns reads into Postgres reads at
 * once instead of stalling them.
 */

// KEYS: (entry, generation, fence) per name. ARGV: then (expected generation, value, ttl ms) per name.
const FILL = `
local n = 0
for i = 1, #KEYS, 3 do
  local a = i  -- this name's (expected, value, ttl) start at ARGV[i]
  local expected = ARGV[a]
  local gen = redis.call('GET', KEYS[i + 1]) or ''
  local fence = tonumber(redis.call('GET', KEYS[i + 2]) or '0')
  if gen == expected and fence <= 0 then
    redis.call('SET', KEYS[i], ARGV[a + 1], 'PX', ARGV[a + 2])
    n = n + 1
  end
end
return n`;

// ARGV: fence ttl ms, generation ttl ms.
const FENCE = `
for i = 1, #KEYS, 3 do
  redis.call('INCR', KEYS[i + 1])
  redis.call('PEXPIRE', KEYS[i + 1], ARGV[2])
  redis.call('INCR', KEYS[i + 2])
  redis.call('PEXPIRE', KEYS[i + 2], ARGV[1])
  redis.call('DEL', KEYS[i])
end
return 1`;

// ARGV: generation ttl ms.
const RELEASE = `
for i = 1, #KEYS, 3 do
  redis.call('INCR', KEYS[i + 1])
  redis.call('PEXPIRE', KEYS[i + 1], ARGV[1])
  redis.call('DEL', KEYS[i])
  if redis.call('DECR', KEYS[i + 2]) <= 0 then
    redis.call('DEL', KEYS[i + 2])
  end
end
return 1`;

type Client = Redis | Cluster;
type Scripted = Client & {
  secretsFill(...args: (string | Buffer | number)[]): Promise<number>;
  secretsFence(...args: (string | number)[]): Promise<number>;
  secretsRelease(...args: (string | number)[]): Promise<number>;
};

/** Where Redis is: one server (or a TLS `rediss://` URL), a Sentinel-managed master, or a Cluster. */
export type RedisTopology =
  | { kind: "single"; url: string }
  | { kind: "sentinel"; sentinels: readonly { host: string; port: number }[]; name: string; url: string | undefined }
  | { kind: "cluster"; nodes: readonly { host: string; port: number }[]; url: string | undefined };

export interface RedisCacheOptions {
  topology: RedisTopology;
  ttlMs: number;
  /** The key entries are authenticated under (coherent-cache.ts); never sent to Redis. */
  entryKey: KeyBytes;
  /** Per-command timeout; past it a read falls back to Postgres. */
  commandTimeoutMs?: number;
  connectTimeoutMs?: number;
  onOutage?: (event: "down" | "up", error?: unknown) => void;
  onLookup?: (result: LookupOutcome, count: number) => void;
}

/** Entry, generation and fence of each name, in that order. A loop: flatMap's generic path cost more than the rest of a lookup's key handling. */
function flatKeys(keys: readonly NameKeys[]): string[] {
  const flat: string[] = [];
  for (const k of keys) flat.push(k.entry, k.generation, k.fence);
  return flat;
}

/**
 * One MGET for a batch of lookups. A key several lookups ask for goes out once (the
 * calls of one turn tend to ask for the same hot secrets) and each lookup gets its
 * value; they are read at the same instant either way.
 */
async function mgetBatch(redis: Client, batch: readonly string[][]): Promise<(Buffer | null)[][]> {
  if (batch.length === 1) return [await redis.mgetBuffer(batch[0] as string[])];
  const position = new Map<string, number>();
  const unique: string[] = [];
  const positions = batch.map((keys) =>
    keys.map((key) => {
      let p = position.get(key);
      if (p === undefined) {
        p = unique.length;
        position.set(key, p);
        unique.push(key);
      }
      return p;
    }),
  );
  const values = await redis.mgetBuffer(unique);
  return positions.map((ps) => ps.map((p) => values[p] ?? null));
}

/** Most keys in one coalesced MGET (three per name); more wait for the next. */
const MAX_BATCH_KEYS = 3_000;
/** An MGET unanswered this long no longer holds back the lookups behind it: they go out on their own. */
const STALL_MS = 10;

/**
 * Lookups coalesced into MGETs (lib/coalescing-batcher.ts), one MGET on the wire at a time per
 * lane: all lookups, or on a Cluster one developer's (one hash slot). Under load one
 * write and one reply carry many calls' lookups (the system calls of a Redis round
 * trip were the largest cost of a cache hit over an empty call), and the calls one
 * reply answers are written back to their clients in one turn too.
 *
 * Coherence is unchanged: each MGET is atomic in Redis, so every lookup still reads
 * its entry, generation and fence at one instant after it began (secret-cache.ts).
 */
function coalescedMget(redis: Client): (laneKey: string, keys: string[]) => Promise<(Buffer | null)[]> {
  const cluster = redis instanceof Cluster;
  const lanes = new Map<string, SmartBatcher<string[], (Buffer | null)[]>>();
  const newLane = () =>
    smartBatcher<string[], (Buffer | null)[]>({
      maxInFlight: 1,
      stallMs: STALL_MS,
      maxBatchSize: MAX_BATCH_KEYS,
      sizeOf: (keys) => keys.length,
      send: (batch) => mgetBatch(redis, batch),
    });

  return async (laneKey, keys) => {
    const key = cluster ? laneKey : "";
    let lane = lanes.get(key);
    if (lane === undefined) lanes.set(key, (lane = newLane()));
    try {
      return await lane(keys);
    } finally {
      // A Cluster has a lane per developer seen: an idle one is dropped.
      if (cluster && lane.idle && lanes.get(key) === lane) lanes.delete(key);
    }
  };
}

export function createRedisStore(redis: Client): CacheStore {
  const r = redis as Scripted;
  r.defineCommand("secretsFill", { lua: FILL });
  r.defineCommand("secretsFence", { lua: FENCE });
  r.defineCommand("secretsRelease", { lua: RELEASE });
  const mget = coalescedMget(redis);

  return {
    async read(keys) {
      // One developer's keys: the hash tag at the start of their prefix names the slot.
      const entry = keys[0]?.entry ?? "";
      const values = await mget(entry.slice(0, entry.indexOf("}") + 1), flatKeys(keys));
      return keys.map((_, i) => {
        const fence = values[i * 3 + 2];
        return {
          entry: values[i * 3] ?? null,
          generation: values[i * 3 + 1]?.toString("latin1") ?? null,
          fenced: fence !== null && fence !== undefined && Number(fence.toString("latin1")) > 0,
        };
      });
    },
    async fill(items) {
      const keys = flatKeys(items.map((i) => i.keys));
      const args = items.flatMap((i) => [i.expected, i.value, i.ttlMs]);
      await r.secretsFill(keys.length, ...keys, ...args);
    },
    async fence(keys, fenceTtlMs, generationTtlMs) {
      const k = flatKeys(keys);
      await r.secretsFence(k.length, ...k, fenceTtlMs, generationTtlMs);
    },
    async release(keys, generationTtlMs) {
      const k = flatKeys(keys);
      await r.secretsRelease(k.length, ...k, generationTtlMs);
    },
    async deletePrefix(prefix) {
      // The prefix holds a hash tag; escape glob characters in it anyway. On a
      // Cluster every key of the prefix lives on the master that owns its slot,
      // but SCAN is per node, so each master is scanned.
      const pattern = `${prefix.replace(/[*?[\]\\]/g, "\\$&")}*`;
      const nodes: Redis[] = redis instanceof Cluster ? redis.nodes("master") : [redis];
      let deleted = 0;
      for (const node of nodes) {
        let cursor = "0";
        do {
          const [next, keys] = await node.scan(cursor, "MATCH", pattern, "COUNT", 500);
          if (keys.length > 0) deleted += await node.unlink(...keys);
          cursor = next;
        } while (cursor !== "0");
      }
      return deleted;
    },
    async close() {
      redis.disconnect();
    },
  };
}

/** ioredis options every topology shares: fail fast instead of queueing, pipeline automatically. */
function commonOptions(options: RedisCacheOptions): RedisOptions {
  return {
    lazyConnect: false,
    enableOfflineQueue: false,
    enableAutoPipelining: true,
    // Lookups are coalesced by createRedisStore itself.
    autoPipeliningIgnoredCommands: ["mget"],
    maxRetriesPerRequest: 0,
    commandTimeout: options.commandTimeoutMs ?? 250,
    connectTimeout: 2_000,
    retryStrategy: (times) => Math.min(times * 100, 2_000),
  };
}

/** Credentials and TLS from a redis:// or rediss:// URL, for Sentinel and Cluster nodes. */
function credentialsOf(url: string | undefined): RedisOptions {
  if (!url) return {};
  const u = new URL(url);
  return {
    ...(u.username ? { username: decodeURIComponent(u.username) } : {}),
    ...(u.password ? { password: decodeURIComponent(u.password) } : {}),
    ...(u.protocol === "rediss:" ? { tls: {} } : {}),
  };
}

function connect(options: RedisCacheOptions): Client {
  const t = options.topology;
  const base = commonOptions(options);
  if (t.kind === "single") return new Redis(t.url, base);
  if (t.kind === "sentinel") {
    // The same credentials (and TLS) serve the sentinels and the master they name.
    const creds = credentialsOf(t.url);
    return new Redis({
      ...base,
      ...creds,
      sentinels: [...t.sentinels],
      name: t.name,
      ...(creds.username ? { sentinelUsername: creds.username } : {}),
      ...(creds.password ? { sentinelPassword: creds.password } : {}),
      ...(creds.tls ? { enableTLSForSentinelMode: true, sentinelTLS: {} } : {}),
    });
  }
  return new Cluster([...t.nodes], {
    enableOfflineQueue: false,
    enableAutoPipelining: true,
    autoPipeliningIgnoredCommands: ["mget"],
    clusterRetryStrategy: (times) => Math.min(times * 100, 2_000),
    redisOptions: { ...base, ...credentialsOf(t.url) },
  });
}

/**
 * Connects to Redis and returns the coherent cache over it. Waits for the first
 * connection at most `connectTimeoutMs`; a Redis that is down at start-up does not
 * stop the service (reads go to Postgres, and the cache joins when Redis answers).
 */
export async function createRedisCache(options: RedisCacheOptions): Promise<SecretCache> {
  const redis = connect(options);
  // Connection errors surface through failed commands (and are logged once per
  // outage); without a listener ioredis would print every reconnect attempt.
  redis.on("error", () => undefined);
  await new Promise<void>((resolve) => {
    const timer = setTimeout(resolve, options.connectTimeoutMs ?? 2_000);
    redis.once("ready", () => {
      clearTimeout(timer);
      resolve();
    });
  });
  return createCoherentCache(createRedisStore(redis), {
    kind: "redis",
    ttlMs: options.ttlMs,
    entryKey: options.entryKey,
    ...(options.onOutage ? { onOutage: options.onOutage } : {}),
    ...(options.onLookup ? { onLookup: options.onLookup } : {}),
  });
}
