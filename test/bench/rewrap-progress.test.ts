import { describe, expect, it } from "vitest";
import { summarizeProgress, type ProgressSample } from "../../bench/rewrap-progress.js";

const poll = (atMs: number, status: number | undefined, postgres: number | undefined): ProgressSample => ({ atMs, status, postgres });

describe("summarizeProgress", () => {
  it("is done at the first poll where both counts are 0, and the rate is the keys over that time", () => {
    const p = summarizeProgress([poll(250, 7_500, 7_500), poll(500, 5_000, 5_000), poll(1_000, 1_000, 1_000), poll(2_000, 0, 0), poll(2_250, 0, 0)], 10_000);
    expect(p.finished).toBe(true);
    expect(p.doneAtMs).toBe(2_000);
    expect(p.keysPerSecond).toBe(5_000);
    expect(p.statusZeroAtMs).toBe(2_000);
    expect(p.postgresZeroAtMs).toBe(2_000);
    expect(p.postgresWhenStatusZero).toBe(0);
    expect(p.left).toBe(0);
    expect(p.postgresRise).toBe(0);
  });

  it("does not take a status of 0 for done while Postgres still counts keys, and keeps what Postgres counted then", () => {
    const p = summarizeProgress([poll(100, 2_000, 2_000), poll(200, 0, 1_500), poll(300, 0, 600), poll(400, 0, 0)], 2_000);
    expect(p.statusZeroAtMs).toBe(200);
    expect(p.postgresWhenStatusZero).toBe(1_500);
    expect(p.doneAtMs).toBe(400);
    expect(p.keysPerSecond).toBe(5_000);
  });

  it("sums the rises of Postgres's count (keys moved back under the old master key)", () => {
    const p = summarizeProgress([poll(100, 900, 900), poll(200, 500, 500), poll(300, 300, 600), poll(400, 0, 0)], 1_000);
    expect(p.postgresRise).toBe(100);
    expect(p.finished).toBe(true);
  });

  it("skips failed polls: a count that could not be read neither finishes nor breaks the rise", () => {
    const p = summarizeProgress([poll(100, 800, 800), poll(200, 0, undefined), poll(300, undefined, 200), poll(400, 0, 0)], 1_000);
    expect(p.statusZeroAtMs).toBe(200);
    expect(p.postgresWhenStatusZero).toBeUndefined();
    expect(p.postgresRise).toBe(0);
    expect(p.doneAtMs).toBe(400);
  });

  it("unfinished, reports what is left and a rate that bounds the real one from above", () => {
    const p = summarizeProgress([poll(30_000, 4_000, 4_000), poll(60_000, 3_000, 3_000)], 5_000);
    expect(p.finished).toBe(false);
    expect(p.doneAtMs).toBeUndefined();
    expect(p.left).toBe(3_000);
    expect(p.keysPerSecond).toBeCloseTo(5_000 / 60, 9);
  });
});
