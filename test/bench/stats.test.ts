import { describe, expect, it } from "vitest";
import { ratioInterval } from "../../bench/stats.js";

/** Seeded normal noise for simulated rounds (Box–Muller over a small LCG). */
function noise(seed: number): () => number {
  let s = seed >>> 0;
  const uniform = () => {
    s = (Math.imul(s, 1664525) + 1013904223) >>> 0;
    return (s + 0.5) / 2 ** 32;
  };
  return () => Math.sqrt(-2 * Math.log(uniform())) * Math.cos(2 * Math.PI * uniform());
}

/** Rounds of a machine whose speed drifts: the ceiling's calls/s, and a phase at `ratio` of it with its own noise. */
function simulate(rounds: number, ratio: number, sd: number, next: () => number) {
  const ceiling: number[] = [];
  const phase: number[] = [];
  for (let i = 0; i < rounds; i++) {
    const speed = 5000 * (1 + 0.3 * next());
    ceiling.push(speed * (1 + sd * next()));
    phase.push(ratio * speed * (1 + sd * next()));
  }
  return { phase, ceiling };
}

const mean = (a: readonly number[]) => a.reduce((x, y) => x + y, 0) / a.length;

describe("ratioInterval", () => {
  it("is the ratio itself when every round has the same ratio, however the machine's speed moved", () => {
    const ceiling = [5000, 3100, 7200, 4400, 6100, 5500];
    const i = ratioInterval(
      ceiling.map((c) => 0.8 * c),
      ceiling,
    );
    expect(i?.low).toBeCloseTo(0.8, 12);
    expect(i?.high).toBeCloseTo(0.8, 12);
  });

  it("holds the run's own ratio, and gives the same interval for the same rounds", () => {
    const { phase, ceiling } = simulate(16, 0.85, 0.1, noise(7));
    const i = ratioInterval(phase, ceiling);
    const ratio = mean(phase) / mean(ceiling);
    expect(i).toBeDefined();
    expect(i!.low).toBeLessThan(ratio);
    expect(i!.high).toBeGreaterThan(ratio);
    expect(ratioInterval(phase, ceiling)).toEqual(i);
  });

  it("covers the true ratio in about 95 % of simulated runs", () => {
    const next = noise(42);
    let covered = 0;
    const runs = 300;
    for (let run = 0; run < runs; run++) {
      const { phase, ceiling } = simulate(16, 0.85, 0.1, next);
      const i = ratioInterval(phase, ceiling, { resamples: 1000, seed: run + 1 })!;
      if (i.low <= 0.85 && 0.85 <= i.high) covered++;
    }
    // A percentile bootstrap over 16 rounds runs a little narrow; far outside this band it is wrong.
    expect(covered / runs).toBeGreaterThan(0.85);
    expect(covered / runs).toBeLessThan(0.99);
  });

  it("narrows with more rounds", () => {
    const width = (rounds: number) => {
      const next = noise(rounds);
      const widths = Array.from({ length: 40 }, (_, run) => {
        const { phase, ceiling } = simulate(rounds, 0.85, 0.1, next);
        const i = ratioInterval(phase, ceiling, { resamples: 1000, seed: run + 1 })!;
        return i.high - i.low;
      });
      return mean(widths);
    };
    const w8 = width(8);
    const w32 = width(32);
    // Width goes as 1/sqrt(rounds): about half with four times the rounds.
    expect(w32 / w8).toBeGreaterThan(0.35);
    expect(w32 / w8).toBeLessThan(0.65);
  });

  it("is undefined for fewer than six rounds or unpaired rounds", () => {
    expect(ratioInterval([1, 2, 3, 4, 5], [1, 2, 3, 4, 5])).toBeUndefined();
    expect(ratioInterval([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5, 6])).toBeDefined();
    expect(ratioInterval([1, 2, 3, 4, 5, 6], [1, 2, 3, 4, 5])).toBeUndefined();
  });
});
