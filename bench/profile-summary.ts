import { readFileSync } from "node:fs";

/**
 * Summarizes a V8 .cpuprofile (from `node --cpu-prof`, e.g. `npm run bench -- --profile`):
 * self and inclusive time per function, as a share of busy (non-idle) time.
 *
 *   node .bench-build/bench/profile-summary.js FILE.cpuprofile [--top N]
 *        [--results bench/results/X.json --phase TEXT [--in-flight N]]
 *
 * With --results and --phase, only the samples taken while a matching phase was
 * measured count: the bench records each segment's start and end on the
 * monotonic clock that V8 also stamps its samples with.
 */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  startTime: number;
  samples: number[];
  timeDeltas: number[];
}
interface Window {
  phase: string;
  inFlight: number;
  startUs: number;
  endUs: number;
}

const args = process.argv.slice(2);
const option = (name: string) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const file = args[0];
if (!file || file.startsWith("--")) {
  console.error("usage: profile-summary FILE.cpuprofile [--top N] [--results RESULTS.json --phase TEXT [--in-flight N]]");
  process.exit(2);
}
const top = Number(option("--top") ?? 40);
const phase = option("--phase");
const inFlight = option("--in-flight");
let windows: Window[] | undefined;
if (phase !== undefined) {
  const resultsFile = option("--results");
  if (!resultsFile) throw new Error("--phase needs --results (the bench's JSON, from a run with --profile)");
  const all = (JSON.parse(readFileSync(resultsFile, "utf8")) as { profileWindows?: Window[] }).profileWindows ?? [];
  windows = all.filter((w) => w.phase.includes(phase) && (inFlight === undefined || w.inFlight === Number(inFlight)));
  if (windows.length === 0) throw new Error(`no measured segment of a phase matching "${phase}" in ${resultsFile}`);
}

const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const parent = new Map<number, number>();
for (const n of profile.nodes) for (const c of n.children ?? []) parent.set(c, n.id);
const label = (n: ProfileNode) => {
  const { functionName, url, lineNumber } = n.callFrame;
  const where = url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*\/(dist|src)\//, "$1/");
  return `${functionName || "(anonymous)"}  ${where}:${lineNumber + 1}`;
};

// Time per node, from the samples inside the selected windows.
const nodeUs = new Map<number, number>();
let at = profile.startTime;
profile.samples.forEach((id, i) => {
  const dt = profile.timeDeltas[i] ?? 0;
  at += dt;
  if (windows && !windows.some((w) => at >= w.startUs && at < w.endUs)) return;
  nodeUs.set(id, (nodeUs.get(id) ?? 0) + dt);
});

const selfUs = new Map<string, number>();
const inclusiveUs = new Map<string, number>();
let total = 0;
let idle = 0;
for (const [id, us] of nodeUs) {
  const node = byId.get(id);
  if (!node) continue;
  total += us;
  if (node.callFrame.functionName === "(idle)") {
    idle += us;
    continue;
  }
  const key = label(node);
  selfUs.set(key, (selfUs.get(key) ?? 0) + us);
  // Each function once per stack, however often it recurses.
  const seen = new Set<string>();
  for (let cur: number | undefined = id; cur !== undefined; cur = parent.get(cur)) {
    const k = label(byId.get(cur) as ProfileNode);
    if (seen.has(k) || k.startsWith("(root)")) continue;
    seen.add(k);
    inclusiveUs.set(k, (inclusiveUs.get(k) ?? 0) + us);
  }
}

const busy = total - idle;
const what = windows ? ` in ${windows.length} segments of "${phase}"` : "";
console.log(`sampled ${(total / 1e6).toFixed(2)} s${what}, idle ${((100 * idle) / total).toFixed(1)} %`);
const print = (title: string, m: Map<string, number>) => {
  console.log(`\n${title} (share of busy time):`);
  for (const [key, us] of [...m].sort((a, b) => b[1] - a[1]).slice(0, top)) {
    console.log(`${((100 * us) / busy).toFixed(1).padStart(5)} %  ${key}`);
  }
};
print("self time", selfUs);
print("inclusive time", inclusiveUs);
