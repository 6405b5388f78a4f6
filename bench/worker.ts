import * as grpc from "@grpc/grpc-js";
import { create, type DescMessage, type DescService } from "@bufbuild/protobuf";
import { Health } from "../src/api/gen/grpc/health/v1/health_pb.js";
import { SecretService } from "../src/api/gen/secrets/v1/secrets_pb.js";
import { serviceDefinition } from "../src/server/grpc-adapter.js";
import { prng } from "./stats.js";

/**
 * One benchmark client process: for each WorkerTask it is sent, drives one RPC at
 * a fixed number of calls in flight for a fixed time against 127.0.0.1, and sends
 * back a WorkerResult with its count and latencies. Runs as a child of
 * bench/run.ts (fork) for the whole run, keeping one channel per server, so that
 * short interleaved measurements pay no process start or connection set-up.
 * Bounded in time and count per task; loopback only. A WorkerStop ends the task
 * in progress early (its calls in flight finish and are counted); with no task in
 * progress it does nothing. Exits when its parent disconnects.
 */
export interface WorkerTask {
  address: string;
  service: "health" | "secrets";
  method: string;
  /** Request bodies to cycle through; `{n}` in a string is replaced by a unique counter. */
  requests: unknown[];
  token?: string;
  /**
   * Many callers instead of one: each call picks one of these tokens (one per
   * developer) and one of `requests`, both uniformly at random (seeded by
   * `counterBase`), so that the reads spread over every developer's secrets.
   */
  tokens?: string[];
  /**
   * With `tokens`: call k uses the k-th token and the first request, once each, instead
   * of drawing at random; with maxCalls = tokens.length, every developer is asked once.
   */
  eachTokenOnce?: boolean;
  inFlight: number;
  warmupMs: number;
  durationMs: number;
  /** Hard cap on calls, so a run is bounded in count as well as time. */
  maxCalls: number;
  /** Offset for `{n}` so several workers generate distinct names. */
  counterBase: number;
}

/** Ends the running task now rather than at its duration: for load that lasts until something else is done. */
export interface WorkerStop {
  stop: true;
}

export interface WorkerResult {
  calls: number;
  errors: number;
  firstError?: string;
  elapsedMs: number;
  /** Latencies in microseconds of the calls made after the warm-up. */
  latenciesUs: number[];
  /** Calls made, the warm-up's included, and this process's CPU (process.cpuUsage) while it made them, in µs. */
  issued: number;
  cpuUs: number;
}

const SERVICES: Record<WorkerTask["service"], DescService> = { health: Health, secrets: SecretService };

function fill(template: unknown, n: number): unknown {
  if (typeof template === "string") return template.replaceAll("{n}", String(n));
  if (Array.isArray(template)) return template.map((t) => fill(t, n));
  if (template && typeof template === "object") {
    return Object.fromEntries(Object.entries(template).map(([k, v]) => [k, fill(v, n)]));
  }
  return template;
}

/** One channel per server address, shared by both services' clients. */
const channels = new Map<string, grpc.Channel>();
const clients = new Map<string, grpc.Client>();
/** Metadata per token, kept across tasks (a task with many tokens is sent again every segment); bounded. */
const metadataByToken = new Map<string, grpc.Metadata>();
const MAX_METADATA = 100_000;

function metadataFor(token: string | undefined): grpc.Metadata {
  const key = token ?? "";
  let metadata = metadataByToken.get(key);
  if (metadata === undefined) {
    metadata = new grpc.Metadata();
    if (token) metadata.set("authorization", `Bearer ${token}`);
    if (metadataByToken.size >= MAX_METADATA) metadataByToken.clear();
    metadataByToken.set(key, metadata);
  }
  return metadata;
}

/** Cuts the running task short; set while a task runs. */
let stopRunning: (() => void) | undefined;

function clientFor(address: string, service: DescService): grpc.Client {
  const key = `${address} ${service.typeName}`;
  let client = clients.get(key);
  if (client === undefined) {
    let channel = channels.get(address);
    if (channel === undefined) {
      channel = new grpc.Channel(address, grpc.credentials.createInsecure(), {});
      channels.set(address, channel);
    }
    const Ctor = grpc.makeGenericClientConstructor(serviceDefinition(service), service.typeName);
    client = new Ctor(address, grpc.credentials.createInsecure(), { channelOverride: channel });
    clients.set(key, client);
  }
  return client;
}

async function run(task: WorkerTask): Promise<WorkerResult> {
  const service = SERVICES[task.service];
  const method = service.methods.find((m) => m.localName === task.method);
  if (!method) throw new Error(`no method ${task.method}`);
  const client = clientFor(task.address, service);
  const fn = (client as unknown as Record<string, Function>)[method.localName] as Function;
  const templated = JSON.stringify(task.requests).includes("{n}");
  const prebuilt = task.requests.map((r) => create(method.input as DescMessage, r as never));
  const spread = task.tokens?.map(metadataFor);
  const random = prng(task.counterBase);
  const pick = (n: number) => Math.floor(random() * n);

  let counter = task.counterBase;
  const call = () =>
    new Promise<void>((resolve, reject) => {
      const i = counter++;
      const k = i - task.counterBase;
      const metadata = spread ? (spread[task.eachTokenOnce ? k % spread.length : pick(spread.length)] as grpc.Metadata) : metadataFor(task.token);
      const r = task.eachTokenOnce ? 0 : spread ? pick(task.requests.length) : i % task.requests.length;
      const req = templated ? create(method.input as DescMessage, fill(task.requests[r], i) as never) : prebuilt[r];
      fn.call(client, req, metadata, (err: grpc.ServiceError | null) => (err ? reject(err) : resolve()));
    });

  const latencies: number[] = [];
  let calls = 0;
  let errors = 0;
  let firstError: string | undefined;
  const cpuBefore = process.cpuUsage();
  const started = performance.now();
  const measureFrom = started + task.warmupMs;
  let end = measureFrom + task.durationMs;
  stopRunning = () => {
    end = Math.min(end, performance.now());
  };
  let issued = 0;

  const loop = async () => {
    while (issued < task.maxCalls) {
      const t0 = performance.now();
      if (t0 >= end) return;
      issued += 1;
      try {
        await call();
        const t1 = performance.now();
        if (t0 >= measureFrom) {
          calls += 1;
          latencies.push(Math.round((t1 - t0) * 1000));
        }
      } catch (e) {
        errors += 1;
        firstError ??= `${(e as grpc.ServiceError).code}: ${(e as grpc.ServiceError).details}`;
      }
    }
  };
  await Promise.all(Array.from({ length: task.inFlight }, loop));
  stopRunning = undefined;
  const elapsedMs = Math.max(0, Math.min(performance.now(), end) - measureFrom);
  const cpu = process.cpuUsage(cpuBefore);
  return { calls, errors, ...(firstError ? { firstError } : {}), elapsedMs, latenciesUs: latencies, issued, cpuUs: cpu.user + cpu.system };
}

process.on("message", (message: WorkerTask | WorkerStop) => {
  if ("stop" in message) {
    stopRunning?.();
    return;
  }
  run(message).then(
    (result) => process.send?.(result),
    (e: unknown) => process.send?.({ calls: 0, errors: 1, firstError: String(e), elapsedMs: 0, latenciesUs: [], issued: 0, cpuUs: 0 }),
  );
});
process.on("disconnect", () => {
  for (const c of clients.values()) c.close();
  for (const c of channels.values()) c.close();
  process.exit(0);
});
