import * as grpc from "@grpc/grpc-js";
import { SecretsClient } from "@secrets-service/client";
import { create } from "@bufbuild/protobuf";
import { SecretService, WatchSecretsRequestSchema, type WatchSecretsResponse } from "../src/api/gen/secrets/v1/secrets_pb.js";
import { serviceDefinition } from "../src/server/grpc-adapter.js";
import { percentile } from "./stats.js";

/**
 * The watch phase (issue 20's targets): two servers on the bench's database, a
 * writer A and a watcher B. B holds N open watches (10 per developer, N / 10
 * developers); one of those developers writes through A at a steady rate, and each
 * write's delivery is the time from its acknowledgement on A to its event at each of
 * the developer's watches on B. Then, the watches idle, B's resident memory and CPU
 * over a window, against B's own over as long a window before any watch was opened
 * (B's own background work: heartbeats, the lifecycle job, scrapes).
 */
export const WATCH_PHASE = "WatchSecrets";
export const WATCH_TARGETS = {
  delivery1k: { name: "WatchSecrets delivery p99, 1,000 watches on B (ms)", limit: 100 },
  delivery10k: { name: "WatchSecrets delivery p99, 10,000 watches on B (ms)", limit: 250 },
  idleRss: { name: "10,000 idle watches: B's added RSS (MB)", limit: 100 },
  idleCpu: { name: "10,000 idle watches: B's added CPU (% of a core)", limit: 2 },
  cacheLookups: { name: "SDK watched-cache lookups per second (one process)", limit: 1_000_000 },
} as const;

export interface WatchServer {
  name: string;
  address: string;
  metrics: string;
}

export interface WatchOptions {
  writer: WatchServer;
  watcher: WatchServer;
  token: (subject: string) => Promise<string>;
  /** Watch counts to measure delivery with (each a multiple of 10). */
  counts: readonly number[];
  /** Writes per second, and for how long, at each count. */
  writesPerSecond: number;
  writeSeconds: number;
  /** The idle window at the largest count. */
  idleSeconds: number;
  log: (line: string) => void;
}

export interface DeliveryResult {
  watches: number;
  writes: number;
  /** Events received at the writing developer's watches (writes × 10 when none is lost). */
  events: number;
  p50Ms: number;
  p99Ms: number;
  maxMs: number;
}

/** The SDK's watched cache against B: lookups a second served from memory, and how soon a write through A shows. */
export interface CacheResult {
  lookupsPerSecond: number;
  lookups: number;
  /** From a write's acknowledgement on A to the first lookup on B's client that returns the new value, per write. */
  stalenessP50Ms: number;
  stalenessMaxMs: number;
  writes: number;
}

export interface WatchReport {
  cache: CacheResult | undefined;
  delivery: DeliveryResult[];
  idle:
    | {
        watches: number;
        rssMbBefore: number;
        rssMbAdded: number;
        heapMbAdded: number;
        /** B's CPU with the watches open and idle, and what it was with none open. */
        cpuPercent: number;
        cpuPercentBefore: number;
        seconds: number;
      }
    | undefined;
}

const WATCHES_PER_DEVELOPER = 10;
/** Streams share this many client channels (HTTP/2 connections). */
const CHANNELS = 16;

type Client = grpc.Client & Record<string, (...args: unknown[]) => unknown>;

export async function measureWatch(o: WatchOptions): Promise<WatchReport> {
  const Ctor = grpc.makeGenericClientConstructor(serviceDefinition(SecretService), SecretService.typeName);
  const channels = Array.from({ length: CHANNELS }, () => new Ctor(o.watcher.address, grpc.credentials.createInsecure()) as Client);
  const writerClient = new Ctor(o.writer.address, grpc.credentials.createInsecure()) as Client;
  const streams: grpc.ClientReadableStream<WatchSecretsResponse>[] = [];
  const delivery: DeliveryResult[] = [];
  let idle: WatchReport["idle"];
  let cache: CacheResult | undefined;
  // B with no watch open, over as long a window as the idle one below.
  const quietStart = await readServer(o.watcher.metrics);
  await new Promise((r) => setTimeout(r, o.idleSeconds * 1000));
  const before = await readServer(o.watcher.metrics);
  const cpuPercentBefore = cpuPercent(quietStart, before);
  try {
    // First, while this process holds no other stream.
    cache = await measureWatchedCache(o);
    let open = 0;
    const developers: { subject: string; token: string }[] = [];
    // Arrival times by revision, for the developer that writes at each count.
    let listening: { subject: string; arrivals: Map<bigint, number[]> } | undefined;
    for (const count of o.counts) {
      // Open watches up to `count`, 10 per new developer, each waiting for its snapshot.
      while (open < count) {
        const subject = `bench-watch-${process.pid}-${developers.length}`;
        const token = await o.token(subject);
        developers.push({ subject, token });
        const ready: Promise<void>[] = [];
        for (let i = 0; i < WATCHES_PER_DEVELOPER; i++) {
          const client = channels[open % CHANNELS]!;
          const metadata = new grpc.Metadata();
          metadata.set("authorization", `Bearer ${token}`);
          const stream = client["watchSecrets"]!(create(WatchSecretsRequestSchema, {}), metadata) as grpc.ClientReadableStream<WatchSecretsResponse>;
          stream.on("error", () => undefined);
          let first = true;
          ready.push(
            new Promise((resolve, reject) => {
              stream.once("error", reject);
              stream.on("data", (r: WatchSecretsResponse) => {
                if (first) {
                  first = false;
                  resolve();
                }
                if (listening?.subject !== subject) return;
                const now = performance.now();
                for (const e of r.events) listening.arrivals.set(e.revision, [...(listening.arrivals.get(e.revision) ?? []), now]);
              });
            }),
          );
          streams.push(stream);
          open += 1;
        }
        await Promise.all(ready);
      }
      // The last developer opened writes: its 10 watches measure delivery.
      const writer = developers.at(-1)!;
      listening = { subject: writer.subject, arrivals: new Map() };
      const acks = new Map<bigint, number>();
      const writes = Math.round(o.writesPerSecond * o.writeSeconds);
      const gapMs = 1000 / o.writesPerSecond;
      const t0 = performance.now();
      for (let i = 0; i < writes; i++) {
        const wait = t0 + i * gapMs - performance.now();
        if (wait > 0) await new Promise((r) => setTimeout(r, wait));
        // Revision i + 1 of the developer: one change per write, and nothing else writes for it.
        await unary(writerClient, "createSecret", { name: `w_${count}_${i}`, value: "v" }, writer.token);
        acks.set(BigInt(i + 1), performance.now());
      }
      // Let the last events arrive.
      const settle = performance.now() + 5_000;
      while (performance.now() < settle && [...acks.keys()].some((rev) => (listening!.arrivals.get(rev)?.length ?? 0) < WATCHES_PER_DEVELOPER)) {
        await new Promise((r) => setTimeout(r, 20));
      }
      const lags: number[] = [];
      for (const [rev, ack] of acks) for (const at of listening.arrivals.get(rev) ?? []) lags.push(Math.max(0, at - ack));
      lags.sort((x, y) => x - y);
      delivery.push({
        watches: count,
        writes,
        events: lags.length,
        p50Ms: percentile(lags, 50),
        p99Ms: percentile(lags, 99),
        maxMs: lags.at(-1) ?? NaN,
      });
      o.log(`  ${count.toLocaleString("en")} watches on ${o.watcher.name}: ${writes} writes on ${o.writer.name}, ${lags.length} events at the writer's ${WATCHES_PER_DEVELOPER} watches`);
      listening = undefined;
    }
    // Idle: nothing writes; the watches only get their progress responses.
    const start = await readServer(o.watcher.metrics);
    await new Promise((r) => setTimeout(r, o.idleSeconds * 1000));
    const end = await readServer(o.watcher.metrics);
    idle = {
      watches: open,
      rssMbBefore: before.rssBytes / 2 ** 20,
      rssMbAdded: (end.rssBytes - before.rssBytes) / 2 ** 20,
      heapMbAdded: (end.heapBytes - before.heapBytes) / 2 ** 20,
      cpuPercent: cpuPercent(start, end),
      cpuPercentBefore,
      seconds: (end.at - start.at) / 1000,
    };
  } finally {
    for (const s of streams) s.cancel();
    for (const c of channels) c.close();
    writerClient.close();
  }
  return { cache, delivery, idle };
}

/**
 * `new SecretsClient({ cache: "watched" })` on B: after one read fills it, lookups of
 * one name in a loop for a second (awaited one by one, as a caller would); then writes
 * through A, each followed by lookups on B until the new value shows.
 */
async function measureWatchedCache(o: WatchOptions): Promise<CacheResult> {
  const subject = `bench-watched-${process.pid}`;
  const token = await o.token(subject);
  const writer = new SecretsClient({ address: o.writer.address, token });
  const reader = new SecretsClient({ address: o.watcher.address, token, cache: "watched" });
  try {
    await writer.secrets.create({ name: "watched_value", value: "v0" });
    // Until the reader's watch has its snapshot, lookups read through: wait for a hit's speed.
    await reader.secrets.access("watched_value");
    await new Promise((r) => setTimeout(r, 500));
    await reader.secrets.access("watched_value");
    let lookups = 0;
    const t0 = performance.now();
    while (performance.now() - t0 < 1_000) {
      for (let i = 0; i < 1_000; i++) await reader.secrets.access("watched_value");
      lookups += 1_000;
    }
    const lookupsPerSecond = lookups / ((performance.now() - t0) / 1000);
    const stale: number[] = [];
    for (let i = 1; i <= 20; i++) {
      await writer.secrets.update("watched_value", { value: `v${i}` });
      const acked = performance.now();
      while ((await reader.secrets.access("watched_value")).value !== `v${i}`) await new Promise((r) => setImmediate(r));
      stale.push(performance.now() - acked);
    }
    stale.sort((x, y) => x - y);
    return { lookupsPerSecond, lookups, stalenessP50Ms: percentile(stale, 50), stalenessMaxMs: stale.at(-1) ?? NaN, writes: stale.length };
  } finally {
    writer.close();
    reader.close();
  }
}

function unary(client: Client, method: string, request: object, token: string): Promise<unknown> {
  const metadata = new grpc.Metadata();
  metadata.set("authorization", `Bearer ${token}`);
  const m = SecretService.methods.find((x) => x.localName === method)!;
  return new Promise((resolve, reject) =>
    client[method]!(create(m.input, request as never), metadata, (e: grpc.ServiceError | null, r: unknown) => (e ? reject(e) : resolve(r))),
  );
}

type Reading = Awaited<ReturnType<typeof readServer>>;

function cpuPercent(from: Reading, to: Reading): number {
  return ((to.cpuSeconds - from.cpuSeconds) / ((to.at - from.at) / 1000)) * 100;
}

async function readServer(metricsUrl: string): Promise<{ rssBytes: number; heapBytes: number; cpuSeconds: number; at: number }> {
  const text = await (await fetch(metricsUrl)).text();
  const read = (metric: string) => Number(text.match(new RegExp(`^${metric} ([0-9.e+-]+)`, "m"))?.[1] ?? NaN);
  return {
    rssBytes: read("process_resident_memory_bytes"),
    heapBytes: read("nodejs_heap_size_used_bytes"),
    cpuSeconds: read("process_cpu_seconds_total"),
    at: performance.now(),
  };
}

/** The phase's lines for the report. */
export function describeWatch(r: WatchReport, table: (head: string[], body: string[][]) => string): string[] {
  const lines = [
    table(
      ["watches on B", "writes on A", "events at the writer's watches", "delivery p50 ms", "p99 ms", "max ms"],
      r.delivery.map((d) => [
        d.watches.toLocaleString("en"),
        String(d.writes),
        String(d.events),
        d.p50Ms.toFixed(1),
        d.p99Ms.toFixed(1),
        d.maxMs.toFixed(1),
      ]),
    ),
  ];
  if (r.cache) {
    lines.push(
      `SDK watched cache on B: ${Math.round(r.cache.lookupsPerSecond).toLocaleString("en")} lookups/s of one name from memory (awaited one by one); ` +
        `a write through A showed on B's client after ${r.cache.stalenessP50Ms.toFixed(1)} ms (median of ${r.cache.writes}), ${r.cache.stalenessMaxMs.toFixed(1)} ms at most`,
    );
  }
  if (r.idle) {
    lines.push(
      `idle: ${r.idle.watches.toLocaleString("en")} watches on B for ${r.idle.seconds.toFixed(0)} s: RSS ${r.idle.rssMbBefore.toFixed(0)} MB before any watch, ` +
        `+${r.idle.rssMbAdded.toFixed(0)} MB with them (JS heap in use +${r.idle.heapMbAdded.toFixed(0)} MB); CPU ${r.idle.cpuPercent.toFixed(2)} % of a core, ` +
        `${r.idle.cpuPercentBefore.toFixed(2)} % before any watch (added ${(r.idle.cpuPercent - r.idle.cpuPercentBefore).toFixed(2)} %)`,
    );
  }
  return lines;
}
