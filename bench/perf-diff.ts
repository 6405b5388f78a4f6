import { readFileSync } from "node:fs";

/**
 * Where one phase's CPU goes beyond another's, per call, from `perf` samples of the
 * cache server: CPU time (kernel and every thread included, the JIT's code named),
 * where V8's own profiler samples wall time on the main thread.
 *
 *   npm run bench -- --quick --only "cache hit" --rounds 24 --server-node-args "--perf-prof"
 *   perf record -k mono -F 1999 -g -p PID -o perf.data     (PID as the bench prints it; stop it with ^C)
 *   perf inject --jit -i perf.data -o perf.jit.data
 *   perf script -i perf.jit.data -F time,ip,sym,dso > perf.txt
 *   node .bench-build/bench/perf-diff.js perf.txt --results RESULTS.json \
 *        --base "ceiling: Health/Check (cache server)" --phase "AccessSecret, cache hit" \
 *        [--in-flight 64] [--after-seconds 10] [--hz 1999] [--self] [--match dist/] [--under FRAME] [--top 60]
 *
 * For every frame (or, with --self, every leaf frame), the µs per call in the base
 * phase, in the phase, and the difference, largest first (`--match TEXT`: only
 * frames whose name holds TEXT, e.g. `dist/` for the service's own functions; `--under TEXT`: only samples
 * with a frame whose name holds TEXT, counting that frame and what it called). Calls are the phase's
 * calls/s times its measured windows (the bench records them on the monotonic clock
 * that `perf record -k mono` stamps). `--after-seconds` skips the first seconds of
 * the group, while the JIT is still compiling the new path.
 */
interface Window {
  phase: string;
  inFlight: number;
  startUs: number;
  endUs: number;
}
interface Results {
  results: { phase: string; inFlight: number; callsPerSecond: number }[];
  profileWindows?: Window[];
}

const args = process.argv.slice(2);
const option = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const file = args[0];
const resultsFile = option("--results");
const basePhase = option("--base");
const phase = option("--phase");
if (!file || file.startsWith("--") || !resultsFile || !basePhase || !phase) {
  console.error(
    "usage: perf-diff PERF.txt --results RESULTS.json --base PHASE --phase PHASE [--in-flight N] [--after-seconds S] [--hz F] [--self] [--match TEXT] [--under FRAME] [--top N]",
  );
  process.exit(2);
}
const inFlight = Number(option("--in-flight") ?? 64);
const usPerSample = 1e6 / Number(option("--hz") ?? 1999);
const self = args.includes("--self");
const top = Number(option("--top") ?? 60);
const match = option("--match");
const under = option("--under");

const results = JSON.parse(readFileSync(resultsFile, "utf8")) as Results;
const windows = (results.profileWindows ?? []).filter((w) => w.inFlight === inFlight);
if (windows.length === 0) throw new Error(`no measured windows at ${inFlight} in flight in ${resultsFile} (run the bench with --server-node-args or --profile)`);
const from = Math.min(...windows.map((w) => w.startUs)) + Number(option("--after-seconds") ?? 0) * 1e6;

/** A sample: when (µs, monotonic) and its frames, leaf first, as names without addresses or objects. */
const samples = readFileSync(file, "utf8")
  .split("\n\n")
  .map((block) => {
    const lines = block.split("\n").filter((l) => l.trim() !== "");
    const head = lines[0];
    if (head === undefined) return undefined;
    const frames = lines.slice(1).map((l) =>
      l
        .trim()
        .replace(/^[0-9a-f]+ /, "")
        .replace(/\s*\([^()]*\)$/, "")
        .replace(/^JS:[*~^+]?/, ""),
    );
    // --under TEXT: only the part of the stack called from the outermost frame whose name holds TEXT.
    const root = under === undefined ? frames.length : frames.findLastIndex((f) => f.includes(under));
    if (root < 0) return undefined;
    return { us: Number.parseFloat(head) * 1e6, frames: frames.slice(0, root + 1) };
  })
  .filter((s) => s !== undefined);

function perCall(name: string): { us: Map<string, number>; total: number } {
  const mine = windows.filter((w) => w.phase === name && w.startUs >= from);
  const result = results.results.find((r) => r.phase === name && r.inFlight === inFlight);
  if (mine.length === 0 || !result) throw new Error(`no measured window of "${name}" at ${inFlight} in flight`);
  const calls = (result.callsPerSecond * mine.reduce((n, w) => n + (w.endUs - w.startUs), 0)) / 1e6;
  const us = new Map<string, number>();
  let total = 0;
  for (const s of samples) {
    if (!mine.some((w) => s.us >= w.startUs && s.us < w.endUs)) continue;
    total += 1;
    for (const frame of self ? s.frames.slice(0, 1) : new Set(s.frames)) us.set(frame, (us.get(frame) ?? 0) + 1);
  }
  for (const [k, n] of us) us.set(k, (n * usPerSample) / calls);
  return { us, total: (total * usPerSample) / calls };
}

const a = perCall(basePhase);
const b = perCall(phase);
console.log(`${basePhase}: ${a.total.toFixed(1)} µs/call; ${phase}: ${b.total.toFixed(1)} µs/call (perf samples, all threads)`);
console.log(`\n${self ? "self" : "inclusive"} µs per call: difference (base, phase)`);
[...new Set([...a.us.keys(), ...b.us.keys()])]
  .filter((k) => match === undefined || k.includes(match))
  .map((k) => ({ k, x: a.us.get(k) ?? 0, y: b.us.get(k) ?? 0 }))
  .sort((p, q) => q.y - q.x - (p.y - p.x))
  .slice(0, top)
  .forEach(({ k, x, y }) => console.log(`${(y - x).toFixed(2).padStart(7)}  (${x.toFixed(2)}, ${y.toFixed(2)})  ${k.slice(0, 160)}`));
