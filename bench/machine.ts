import { readdirSync, readFileSync } from "node:fs";
import type { Redis } from "ioredis";

/**
 * The rest of the machine's CPU during a segment, beside the server's and the
 * clients' own: Redis's (from its INFO, so it is read wherever Redis runs), every
 * `postgres` process's on this machine (from /proc: the bench's database is on
 * loopback), and how much of the machine stayed idle (/proc/stat). With the cores
 * saturated, calls/s follows the CPU all of these spend per call, which is why a
 * phase's calls/s ratio can differ from its server CPU ratio. Linux only: where
 * /proc cannot be read, the Postgres and idle figures are undefined.
 */
export interface MachineSample {
  redisCpuSeconds: number;
  /** Commands Redis has run (INFO commandstats), the bench's own INFO and CONFIG left out. */
  redisCommands: number;
  /** CPU ns of each postgres process by pid (schedstat), or undefined off Linux. */
  postgresNs: Map<number, number> | undefined;
  /** /proc/stat's first line: all ticks and the idle (idle + iowait) ones. */
  ticks: { total: number; idle: number } | undefined;
}

export interface MachineDelta {
  redisCpuSeconds: number;
  redisCommands: number;
  postgresCpuSeconds: number | undefined;
  ticks: { total: number; idle: number } | undefined;
}

export async function sampleMachine(redis: Redis): Promise<MachineSample> {
  const info = await redis.info("cpu");
  const field = (name: string) => Number(info.match(new RegExp(`^${name}:([0-9.]+)`, "m"))?.[1] ?? NaN);
  let redisCommands = 0;
  for (const m of (await redis.info("commandstats")).matchAll(/^cmdstat_([^:]+):calls=([0-9]+)/gm)) {
    if (m[1] !== "info" && !m[1]?.startsWith("config")) redisCommands += Number(m[2]);
  }
  return {
    redisCpuSeconds: field("used_cpu_sys") + field("used_cpu_user"),
    redisCommands,
    postgresNs: postgresCpu(),
    ticks: procTicks(),
  };
}

export function machineDelta(before: MachineSample, after: MachineSample): MachineDelta {
  let postgresNs: number | undefined;
  if (before.postgresNs && after.postgresNs) {
    postgresNs = 0;
    // A process started within the segment counts from zero; one that ended in it is lost (Postgres's pool keeps its backends).
    for (const [pid, ns] of after.postgresNs) postgresNs += ns - (before.postgresNs.get(pid) ?? 0);
  }
  return {
    redisCpuSeconds: after.redisCpuSeconds - before.redisCpuSeconds,
    redisCommands: after.redisCommands - before.redisCommands,
    postgresCpuSeconds: postgresNs === undefined ? undefined : postgresNs / 1e9,
    ticks:
      before.ticks && after.ticks
        ? { total: after.ticks.total - before.ticks.total, idle: after.ticks.idle - before.ticks.idle }
        : undefined,
  };
}

/** CPU seconds of every postgres process on this machine so far (processes that ended are not counted), or undefined off Linux. */
export function postgresCpuSeconds(): number | undefined {
  const cpu = postgresCpu();
  return cpu && [...cpu.values()].reduce((sum, ns) => sum + ns, 0) / 1e9;
}

function postgresCpu(): Map<number, number> | undefined {
  try {
    const cpu = new Map<number, number>();
    for (const entry of readdirSync("/proc")) {
      if (!/^[0-9]+$/.test(entry)) continue;
      try {
        if (readFileSync(`/proc/${entry}/comm`, "latin1").trim() !== "postgres") continue;
        // Time on CPU in ns; a Postgres process has one thread.
        cpu.set(Number(entry), Number(readFileSync(`/proc/${entry}/schedstat`, "latin1").split(" ")[0]));
      } catch {
        // The process ended between the listing and the read.
      }
    }
    return cpu;
  } catch {
    return undefined;
  }
}

function procTicks(): { total: number; idle: number } | undefined {
  try {
    // user nice system idle iowait irq softirq steal (guest time is already counted in user and nice).
    const cpu = readFileSync("/proc/stat", "latin1").split("\n", 1)[0]?.split(/\s+/).slice(1, 9).map(Number) ?? [];
    return { total: cpu.reduce((a, b) => a + b, 0), idle: (cpu[3] ?? 0) + (cpu[4] ?? 0) };
  } catch {
    return undefined;
  }
}
