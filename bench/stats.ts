/**
 * How sure a ratio read off one bench run is. A phase and its ceiling are measured
 * in the same interleaved rounds, and a round's pair is what varies together with
 * the machine's speed, so the rounds are resampled as pairs (a percentile bootstrap):
 * the interval is that of the ratio of the two rounds' means, the figure the targets
 * read (equal segments: the mean of the rounds' calls/s is the phase's calls/s).
 * Deterministic: the same rounds give the same interval, run after run.
 */

export interface Interval {
  low: number;
  high: number;
}

/**
 * The `level` (0.95: 95 %) percentile-bootstrap interval of mean(phase) / mean(ceiling)
 * over paired rounds. Undefined with fewer than 6 pairs (too few to resample: a quick
 * run's 3 give back little more than their extremes), or pairs of unequal length.
 */
export function ratioInterval(
  phase: readonly number[],
  ceiling: readonly number[],
  options: { level?: number; resamples?: number; seed?: number } = {},
): Interval | undefined {
  const n = phase.length;
  if (n < 6 || ceiling.length !== n) return undefined;
  const level = options.level ?? 0.95;
  const resamples = options.resamples ?? 4000;
  const random = prng(options.seed ?? 1);
  const ratios = new Float64Array(resamples);
  for (let r = 0; r < resamples; r++) {
    let top = 0;
    let bottom = 0;
    for (let k = 0; k < n; k++) {
      const i = Math.floor(random() * n);
      top += phase[i] as number;
      bottom += ceiling[i] as number;
    }
    ratios[r] = top / bottom;
  }
  ratios.sort();
  const at = (q: number) => ratios[Math.min(resamples - 1, Math.max(0, Math.round(q * (resamples - 1))))] as number;
  return { low: at((1 - level) / 2), high: at((1 + level) / 2) };
}

/** A small deterministic PRNG (mulberry32): uniform in [0, 1), the same sequence for the same seed. */
export function prng(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 2 ** 32;
  };
}

/** The `p`th percentile (0–100) of ascending `sorted`, by nearest rank; NaN when empty. */
export function percentile(sorted: readonly number[], p: number): number {
  if (sorted.length === 0) return NaN;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))] as number;
}
