import { spawn, type ChildProcess } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { Redis } from "ioredis";
import { freePort } from "./free-port.js";

/**
 * A private redis-server on a free loopback port, for tests that stop and restart
 * Redis: the machine's shared Redis is never touched. Fails (never skips) when the
 * binary is missing.
 */
export interface PrivateRedis {
  readonly port: number;
  readonly url: string;
  stop(): Promise<void>;
  start(): Promise<void>;
  /** Stops it for good and removes its working directory. */
  dispose(): Promise<void>;
}

export async function startPrivateRedis(): Promise<PrivateRedis> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "secrets-redis-"));
  let child: ChildProcess | undefined;

  const start = async () => {
    child = spawn("redis-server", ["--port", String(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no", "--dir", dir], {
      stdio: "ignore",
    });
    const failed = new Promise<never>((_, reject) => child?.once("error", (e) => reject(new Error(`redis-server could not start: ${e.message}`))));
    const probe = new Redis({ port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on("error", () => undefined);
    try {
      for (let i = 0; ; i++) {
        const ok = await Promise.race([probe.connect().then(() => probe.ping()).then(() => true, () => false), failed]);
        if (ok) break;
        if (i > 100) throw new Error("redis-server did not answer");
        probe.disconnect();
        await new Promise((r) => setTimeout(r, 50));
      }
    } finally {
      probe.disconnect();
    }
  };

  const stop = async () => {
    const c = child;
    child = undefined;
    if (!c || c.exitCode !== null) return;
    await new Promise<void>((resolve) => {
      c.once("exit", () => resolve());
      c.kill("SIGKILL");
    });
  };

  await start();
  return {
    port,
    url: `redis://127.0.0.1:${port}`,
    start,
    async stop() {
      await stop();
    },
    async dispose() {
      await stop();
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/** A private Redis Sentinel (redis-server --sentinel) monitoring a private Redis on `masterPort`. */
export async function startPrivateSentinel(masterPort: number, name: string): Promise<{ port: number; dispose(): Promise<void> }> {
  const port = await freePort();
  const dir = mkdtempSync(join(tmpdir(), "secrets-sentinel-"));
  const conf = join(dir, "sentinel.conf");
  writeFileSync(conf, [`port ${port}`, "bind 127.0.0.1", `dir ${dir}`, `sentinel monitor ${name} 127.0.0.1 ${masterPort} 1`, ""].join("\n"));
  const child = spawn("redis-server", [conf, "--sentinel"], { stdio: "ignore" });
  const probe = new Redis({ port, host: "127.0.0.1", lazyConnect: true, maxRetriesPerRequest: 0, retryStrategy: () => null });
  probe.on("error", () => undefined);
  try {
    for (let i = 0; ; i++) {
      const master = await probe
        .connect()
        .then(() => probe.call("SENTINEL", "get-master-addr-by-name", name))
        .catch(() => null);
      if (Array.isArray(master) && master.length === 2) break;
      if (i > 100 || child.exitCode !== null) throw new Error("redis sentinel did not start");
      probe.disconnect();
      await new Promise((r) => setTimeout(r, 50));
    }
  } finally {
    probe.disconnect();
  }
  return {
    port,
    async dispose() {
      if (child.exitCode === null) {
        await new Promise<void>((resolve) => {
          child.once("exit", () => resolve());
          child.kill("SIGKILL");
        });
      }
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

/**
 * The Redis a multi-process test shares: the machine's (REDIS_URL, as in CI) when
 * set, else a private one this call starts. `dispose` stops only what it started.
 * A REDIS_URL that does not answer fails here: replicas would start without their
 * cache and refuse every write, far from the cause.
 */
export async function sharedOrPrivateRedis(): Promise<{ url: string; dispose(): Promise<void> }> {
  const shared = process.env["REDIS_URL"];
  if (shared) {
    const probe = new Redis(shared, { lazyConnect: true, connectTimeout: 2_000, maxRetriesPerRequest: 0, retryStrategy: () => null });
    probe.on("error", () => undefined);
    try {
      await probe.connect();
      await probe.ping();
    } catch (e) {
      throw new Error("REDIS_URL is set but Redis cannot be reached", { cause: e });
    } finally {
      probe.disconnect();
    }
    return { url: shared, dispose: async () => {} };
  }
  const own = await startPrivateRedis();
  return { url: own.url, dispose: () => own.dispose() };
}
