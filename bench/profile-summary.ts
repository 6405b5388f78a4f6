import { readFileSync } from "node:fs";

/**
 * Summarizes a V8 .cpuprofile (from `node --cpu-prof`): self time per function,
 * grouped by function and file, as a share of all samples. Used to find where a
 * call's CPU goes before and after an optimization.
 */
interface ProfileNode {
  id: number;
  callFrame: { functionName: string; url: string; lineNumber: number };
  children?: number[];
}
interface Profile {
  nodes: ProfileNode[];
  samples: number[];
  timeDeltas: number[];
}

const file = process.argv[2];
if (!file) {
  console.error("usage: profile-summary FILE.cpuprofile [top]");
  process.exit(2);
}
const top = Number(process.argv[3] ?? 30);
const profile = JSON.parse(readFileSync(file, "utf8")) as Profile;
const byId = new Map(profile.nodes.map((n) => [n.id, n]));
const selfUs = new Map<string, number>();
let total = 0;
profile.samples.forEach((id, i) => {
  const node = byId.get(id);
  const dt = profile.timeDeltas[i] ?? 0;
  if (!node) return;
  const { functionName, url, lineNumber } = node.callFrame;
  const where = url.replace(/^.*node_modules\//, "").replace(/^file:\/\/.*\/(dist|src)\//, "$1/");
  const key = `${functionName || "(anonymous)"}  ${where}:${lineNumber + 1}`;
  selfUs.set(key, (selfUs.get(key) ?? 0) + dt);
  total += dt;
});
const idle = [...selfUs].filter(([k]) => k.startsWith("(idle)")).reduce((n, [, v]) => n + v, 0);
console.log(`total ${(total / 1e6).toFixed(2)} s, idle ${((100 * idle) / total).toFixed(1)} %; self time of the busiest functions (share of busy time):`);
for (const [key, us] of [...selfUs].filter(([k]) => !k.startsWith("(idle)")).sort((a, b) => b[1] - a[1]).slice(0, top)) {
  console.log(`${((100 * us) / (total - idle)).toFixed(1).padStart(5)} %  ${key}`);
}
