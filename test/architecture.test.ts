/**
 * The layering of docs/design.md, checked on the import graph of src/: every
 * relative import of every file (static, `export … from`, side-effect and dynamic)
 * is resolved to the file it names, and an import that crosses folders against a
 * rule below fails the test, naming both files. Data flows transport → use cases →
 * crypto / store / cache and never back; the CLI stands apart from the server;
 * src/api and src/lib stand on nothing of ours. The SDK is its own package
 * (packages/client), whose boundary test/client/package-boundary.test.ts checks.
 */
import { existsSync, readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { fileURLToPath } from "node:url";
import { describe, expect, it } from "vitest";

const SRC = fileURLToPath(new URL("../src", import.meta.url));

/** The folders of src/; a new one needs a place in the rules before it lands. */
const FOLDERS = ["api", "app", "audit", "auth", "cache", "cli", "crypto", "keys", "lib", "observability", "secrets", "server", "store"];

/** Where a path outside src/ counts, for the rules. */
const OUTSIDE_SRC = "(outside src)";

/** The use cases: what the transport calls and the storage never does. */
const USE_CASES = ["secrets", "keys", "audit"];

/** One import between two files, as paths relative to src/ (a file at the top has no folder). */
interface Edge {
  from: string;
  to: string;
}

/** A folder of src/ by its first path segment; a file at the top of src/ is its own. */
function folderOf(path: string): string {
  if (path.startsWith("..")) return OUTSIDE_SRC;
  return path.split("/")[0] as string;
}

/** A layering rule: `breaks` says whether an import from one folder to another goes against it. */
interface Rule {
  name: string;
  breaks(from: string, to: string, edge: Edge): boolean;
}

const RULES: Rule[] = [
  { name: "imports stay inside src", breaks: (_from, to) => to === OUTSIDE_SRC },
  { name: "crypto imports no store, cache or server", breaks: (from, to) => from === "crypto" && ["store", "cache", "server"].includes(to) },
  { name: "the use cases (secrets, keys, audit) import no server", breaks: (from, to) => USE_CASES.includes(from) && to === "server" },
  {
    name: "store and cache import no use case and no server",
    breaks: (from, to) => ["store", "cache"].includes(from) && [...USE_CASES, "server"].includes(to),
  },
  {
    name: "the CLI imports only cli and api",
    breaks: (from, to) => from === "cli" && !["cli", "api"].includes(to),
  },
  { name: "api imports only api", breaks: (from, to) => from === "api" && to !== "api" },
  { name: "lib imports only lib", breaks: (from, to) => from === "lib" && to !== "lib" },
  { name: "only src/main.ts imports app", breaks: (from, to, edge) => to === "app" && from !== "app" && edge.from !== "main.ts" },
];

/** The rules an import goes against (none for an import inside one folder). */
function brokenRules(edge: Edge): string[] {
  const from = folderOf(edge.from);
  const to = folderOf(edge.to);
  if (from === to) return [];
  return RULES.filter((r) => r.breaks(from, to, edge)).map((r) => r.name);
}

/**
 * The folder cycles of a graph: for each folder that can reach itself through
 * imports of other folders, the path that closes the loop (as "a → b → a").
 */
function folderCycles(edges: readonly Edge[]): string[] {
  const next = new Map<string, Set<string>>();
  for (const e of edges) {
    const from = folderOf(e.from);
    const to = folderOf(e.to);
    if (from === to || !e.from.includes("/")) continue; // src/main.ts sits above every folder
    next.set(from, (next.get(from) ?? new Set()).add(to));
  }
  const cycles: string[] = [];
  for (const start of next.keys()) {
    const path = new Map<string, string | undefined>([[start, undefined]]);
    const queue = [start];
    while (queue.length > 0) {
      const at = queue.shift() as string;
      for (const to of next.get(at) ?? []) {
        if (to === start) {
          const loop = [start];
          for (let p: string | undefined = at; p !== undefined && p !== start; p = path.get(p)) loop.splice(1, 0, p);
          cycles.push([...loop, start].join(" → "));
          queue.length = 0;
          break;
        }
        if (!path.has(to)) {
          path.set(to, at);
          queue.push(to);
        }
      }
    }
  }
  return cycles;
}

/**
 * The module specifiers a TypeScript file imports: `import … from`, `export … from`,
 * `import "…"` and `import("…")`, type-only imports included (they still tie the
 * folders together).
 */
function importSpecifiers(text: string): string[] {
  const patterns = [
    /^[ \t]*(?:import|export)\b[^;"'`]*?\bfrom[ \t]*["']([^"']+)["']/gm,
    /^[ \t]*import[ \t]*["']([^"']+)["']/gm,
    /\bimport\s*\(\s*["']([^"']+)["']\s*\)/g,
  ];
  return patterns.flatMap((re) => [...text.matchAll(re)].map((m) => m[1] as string));
}

/** Every .ts file under `dir`, as absolute paths. */
function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return e.name.endsWith(".ts") ? [path] : [];
  });
}

/** The relative imports of every file under src/, resolved; `unresolved` lists those naming no file. */
function importGraph(): { files: string[]; edges: Edge[]; unresolved: string[] } {
  const files = sourceFiles(SRC);
  const edges: Edge[] = [];
  const unresolved: string[] = [];
  for (const file of files) {
    for (const specifier of importSpecifiers(readFileSync(file, "utf8"))) {
      if (!specifier.startsWith(".")) continue; // a package or a node: builtin
      const target = resolve(dirname(file), specifier.replace(/\.js$/, ".ts"));
      if (!existsSync(target)) unresolved.push(`${relative(SRC, file)}: ${specifier}`);
      edges.push({ from: relative(SRC, file), to: relative(SRC, target) });
    }
  }
  return { files, edges, unresolved };
}

describe("the rules", () => {
  it("flag a fabricated import against each of them, and let the allowed ones through", () => {
    const forbidden: [Edge, string][] = [
      [{ from: "crypto/aead.ts", to: "store/db.ts" }, "crypto imports no store, cache or server"],
      [{ from: "crypto/aead.ts", to: "cache/secret-cache.ts" }, "crypto imports no store, cache or server"],
      [{ from: "keys/data-keys.ts", to: "server/status.ts" }, "the use cases (secrets, keys, audit) import no server"],
      [{ from: "store/db.ts", to: "audit/audit-log.ts" }, "store and cache import no use case and no server"],
      [{ from: "cache/secret-cache.ts", to: "secrets/validation.ts" }, "store and cache import no use case and no server"],
      [{ from: "cli/session.ts", to: "store/db.ts" }, "the CLI imports only cli and api"],
      [{ from: "cli/main.ts", to: "main.ts" }, "the CLI imports only cli and api"],
      [{ from: "cli/session.ts", to: "../packages/client/src/index.ts" }, "imports stay inside src"],
      [{ from: "api/errors.ts", to: "crypto/aead.ts" }, "api imports only api"],
      [{ from: "lib/coalescing-batcher.ts", to: "api/errors.ts" }, "lib imports only lib"],
      [{ from: "server/server.ts", to: "app/config.ts" }, "only src/main.ts imports app"],
      [{ from: "secrets/secret-service.ts", to: "../bench/run.ts" }, "imports stay inside src"],
    ];
    for (const [edge, rule] of forbidden) expect(brokenRules(edge), `${edge.from} → ${edge.to}`).toContain(rule);

    const allowed: Edge[] = [
      { from: "main.ts", to: "app/service.ts" },
      { from: "app/service.ts", to: "server/server.ts" },
      { from: "server/handlers/secret-handlers.ts", to: "secrets/secret-service.ts" },
      { from: "secrets/secret-service.ts", to: "store/secret-store.ts" },
      { from: "cache/redis-cache.ts", to: "crypto/key-bytes.ts" },
      { from: "cli/token-command.ts", to: "api/limits.ts" },
      { from: "server/status.ts", to: "api/gen/google/rpc/status_pb.ts" },
      { from: "lib/a.ts", to: "lib/b.ts" },
    ];
    for (const edge of allowed) expect(brokenRules(edge), `${edge.from} → ${edge.to}`).toEqual([]);
  });

  it("find a loop between folders, however long, and nothing in a chain", () => {
    const edge = (from: string, to: string): Edge => ({ from: `${from}/x.ts`, to: `${to}/y.ts` });
    expect(folderCycles([edge("secrets", "keys"), edge("keys", "store")])).toEqual([]);
    expect(folderCycles([edge("secrets", "keys"), edge("keys", "store"), edge("store", "secrets")])).toContain("secrets → keys → store → secrets");
  });

  it("read every form of import, and nothing that only mentions one", () => {
    const text = [
      'import { a } from "./a.js";',
      "import type { B } from '../b/b.js';",
      "import {",
      "  c,",
      "  type D,",
      '} from "./c.js";',
      'export { e } from "./e.js";',
      'export * from "./f.js";',
      'import "./side-effect.js";',
      'const g = await import("./g.js");',
      'import { readFileSync } from "node:fs";',
      'const note = "values come from the store";',
      "const list = Array.from(items);",
    ].join("\n");
    expect(importSpecifiers(text).sort()).toEqual(
      ["../b/b.js", "./a.js", "./c.js", "./e.js", "./f.js", "./g.js", "./side-effect.js", "node:fs"].sort(),
    );
  });
});

describe("src/", () => {
  const { files, edges, unresolved } = importGraph();

  it("has the folders the rules know, and every relative import names a file", () => {
    const folders = new Set(files.map((f) => relative(SRC, f)).filter((f) => f.includes("/")).map(folderOf));
    expect([...folders].sort()).toEqual(FOLDERS);
    expect(unresolved).toEqual([]);
    // The graph was read: the composition root alone imports several folders.
    expect(edges.filter((e) => e.from === "main.ts").length).toBeGreaterThan(2);
  });

  it("has no loop between folders", () => {
    expect(folderCycles(edges)).toEqual([]);
  });

  it("has no import that goes against a rule", () => {
    const broken = edges.flatMap((e) => brokenRules(e).map((rule) => `${e.from} → ${e.to}: ${rule}`));
    expect(broken).toEqual([]);
  });
});
