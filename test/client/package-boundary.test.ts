import { execFile } from "node:child_process";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../support/server-process.js";

// The SDK and the CLI import only src/api (generated code, the error kinds, the
// limits and naming rules), packages and node builtins: never the server's folders; and src/api, which
// the server imports too, nothing outside itself. Checked on the import graph itself, and on the
// package's `exports` as a consumer resolves them.

const SRC = join(PROJECT_ROOT, "src");
const ALLOWED = [/^client\//, /^cli\//, /^api\//];

/** Every source file reachable through relative imports from `entry`. */
function reachable(entry: string): Set<string> {
  const seen = new Set<string>();
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.pop() as string;
    if (seen.has(file)) continue;
    seen.add(file);
    const text = readFileSync(file, "utf8");
    for (const m of text.matchAll(/(?:from|import)\s*\(?\s*"(\.{1,2}\/[^"]+)"/g)) {
      queue.push(resolve(dirname(file), (m[1] as string).replace(/\.js$/, ".ts")));
    }
  }
  return seen;
}

describe("package boundaries", () => {
  it.each(["client/index.ts", "cli/main.ts"])("%s reaches only client, cli and api", (entry) => {
    const files = [...reachable(join(SRC, entry))].map((f) => relative(SRC, f));
    expect(files.length).toBeGreaterThan(3);
    expect(files.filter((f) => !ALLOWED.some((re) => re.test(f)))).toEqual([]);
  });

  it("src/api, shared by the server and the SDK, imports nothing outside itself", () => {
    const files = readdirSync(join(SRC, "api"), { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts"));
    expect(files).toContain("limits.ts");
    for (const file of files) {
      const outside = [...reachable(join(SRC, "api", file))].map((f) => relative(SRC, f)).filter((f) => !f.startsWith("api/"));
      expect(outside, file).toEqual([]);
    }
  });

  it("exports ./client (with types) and the secrets bin from the build", async () => {
    const pkg = JSON.parse(readFileSync(join(PROJECT_ROOT, "package.json"), "utf8")) as { bin: Record<string, string>; exports: Record<string, unknown> };
    expect(pkg.bin).toEqual({ secrets: "dist/cli/main.js" });
    expect(pkg.exports["./client"]).toEqual({ types: "./dist/client/index.d.ts", default: "./dist/client/index.js" });
    const { stdout } = await promisify(execFile)(
      process.execPath,
      ["--input-type=module", "-e", "const m = await import('secrets-service/client'); console.log(Object.keys(m).sort().join(','))"],
      { cwd: PROJECT_ROOT },
    );
    for (const name of ["SecretsClient", "SecretsError", "collectSecretReferences", "resolveTaskSecrets", "redactSecrets"]) {
      expect(stdout.trim().split(",")).toContain(name);
    }
    expect(readFileSync(join(PROJECT_ROOT, "dist", "client", "index.d.ts"), "utf8")).toContain("SecretsClient");
  });
});
