/**
 * Read one sample from a server's Prometheus text on its metrics port
 * (SECRETS_METRICS_ADDR). `sample` is the metric name with its label set as
 * written in the exposition, e.g. `secrets_cache_lookups_total{result="hit"}`.
 * A sample that is absent reads as 0.
 */
export async function metricValue(port: number, sample: string): Promise<number> {
  const text = await (await fetch(`http://127.0.0.1:${port}/metrics`, { signal: AbortSignal.timeout(5_000) })).text();
  return sampleIn(text, sample);
}

/** The value of `sample` in Prometheus exposition text, or 0 if absent. */
export function sampleIn(text: string, sample: string): number {
  const escaped = sample.replace(/[.*+?^${}()|[\]\\]/g, "\\$&");
  const m = text.match(new RegExp(`^${escaped} ([0-9.e+-]+|NaN)`, "m"));
  return m ? Number(m[1]) : 0;
}

/** A server's own count of cache lookups with this result (hit, miss, error). */
export function cacheLookups(port: number, result: string): Promise<number> {
  return metricValue(port, `secrets_cache_lookups_total{result="${result}"}`);
}
