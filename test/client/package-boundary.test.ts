import { execFile } from "node:child_process";
import { builtinModules } from "node:module";
import { readdirSync, readFileSync } from "node:fs";
import { dirname, join, relative, resolve } from "node:path";
import { promisify } from "node:util";
import { describe, expect, it } from "vitest";
import { PROJECT_ROOT } from "../support/server-process.js";

// The SDK package (packages/client) stands on its own: its files import only each other, node builtins and
// the dependencies its package.json declares, never the server. Its contract module, which the server's
// src/api re-exports, imports nothing at all. Checked on the import graph, and on the package's `exports`
// as a consumer resolves them.

const PACKAGE = join(PROJECT_ROOT, "packages", "client");
const PACKAGE_SRC = join(PACKAGE, "src");
const SRC = join(PROJECT_ROOT, "src");

interface PackageJson {
  name: string;
  dependencies?: Record<string, string>;
  exports: Record<string, unknown>;
  files?: string[];
  bin?: Record<string, string>;
}
const readPackage = (dir: string) => JSON.parse(readFileSync(join(dir, "package.json"), "utf8")) as PackageJson;

/** The specifiers a file imports: static, `export … from`, side-effect and dynamic. */
function specifiers(file: string): string[] {
  const text = readFileSync(file, "utf8");
  return [...text.matchAll(/^[ \t]*(?:import|export)\b[^;"']*?\bfrom[ \t]*"([^"]+)"|^[ \t]*import[ \t]*"([^"]+)"|\bimport\s*\(\s*"([^"]+)"\s*\)/gm)].map(
    (m) => (m[1] ?? m[2] ?? m[3]) as string,
  );
}

/** Every file reachable through relative imports from `entry`, and every bare specifier met on the way. */
function reachable(entry: string): { files: Set<string>; bare: Set<string> } {
  const files = new Set<string>();
  const bare = new Set<string>();
  const queue = [entry];
  while (queue.length > 0) {
    const file = queue.pop() as string;
    if (files.has(file)) continue;
    files.add(file);
    for (const spec of specifiers(file)) {
      if (spec.startsWith(".")) queue.push(resolve(dirname(file), spec.replace(/\.js$/, ".ts")));
      else bare.add(spec);
    }
  }
  return { files, bare };
}

/** The package a bare specifier names: "@scope/name/sub" → "@scope/name", "yaml" → "yaml". */
const packageOf = (spec: string) => spec.split("/").slice(0, spec.startsWith("@") ? 2 : 1).join("/");
const isBuiltin = (spec: string) => spec.startsWith("node:") || builtinModules.includes(spec);

describe("the SDK package", () => {
  const pkg = readPackage(PACKAGE);
  const declared = Object.keys(pkg.dependencies ?? {});

  it.each(["index.ts", "contract.ts"])("%s reaches only the package's files, builtins and declared dependencies", (entry) => {
    const { files, bare } = reachable(join(PACKAGE_SRC, entry));
    const outside = [...files].map((f) => relative(PACKAGE_SRC, f)).filter((f) => f.startsWith(".."));
    expect(outside).toEqual([]);
    const undeclared = [...bare].filter((s) => !isBuiltin(s) && !declared.includes(packageOf(s)));
    expect(undeclared).toEqual([]);
    if (entry === "index.ts") expect(files.size).toBeGreaterThan(5);
  });

  it("has a contract module that imports nothing, so the server loads no client code with it", () => {
    expect(specifiers(join(PACKAGE_SRC, "contract.ts"))).toEqual([]);
  });

  it("declares a client's dependencies and none of the server's", () => {
    expect(pkg.name).toBe("@secrets-service/client");
    expect(declared.sort()).toEqual(["@bufbuild/protobuf", "@grpc/grpc-js", "lru-cache", "yaml"]);
    const root = readPackage(PROJECT_ROOT);
    for (const dep of declared) expect(pkg.dependencies?.[dep], dep).toBe(root.dependencies?.[dep]);
    expect(pkg.files).toEqual(["dist", "README.md"]);
  });

  it("exports the SDK and its contract (with types) from the build, by package name", async () => {
    expect(pkg.exports["."]).toEqual({ types: "./dist/index.d.ts", default: "./dist/index.js" });
    expect(pkg.exports["./contract"]).toEqual({ types: "./dist/contract.d.ts", default: "./dist/contract.js" });
    const script = [
      "const m = await import('@secrets-service/client');",
      "const c = await import('@secrets-service/client/contract');",
      "console.log(JSON.stringify({ sdk: Object.keys(m), contract: Object.keys(c) }));",
    ].join("\n");
    const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script], { cwd: PROJECT_ROOT });
    const keys = JSON.parse(stdout) as { sdk: string[]; contract: string[] };
    for (const name of ["SecretsClient", "SecretsError", "SecretsTokenError", "parseAddress", "collectSecretReferences", "resolveTaskSecrets", "redactSecrets"]) {
      expect(keys.sdk).toContain(name);
    }
    expect(keys.contract).toEqual(expect.arrayContaining(["LIMITS", "NAME_PATTERN", "REASONS", "LIST_METADATA_KEYS"]));
    expect(readFileSync(join(PACKAGE, "dist", "index.d.ts"), "utf8")).toContain("SecretsClient");
  });
});

describe("the server's side of the boundary", () => {
  it("src/api imports nothing outside itself but the SDK package's contract", () => {
    const files = readdirSync(join(SRC, "api"), { recursive: true, encoding: "utf8" }).filter((f) => f.endsWith(".ts"));
    expect(files).toContain("limits.ts");
    for (const file of files) {
      const { files: seen, bare } = reachable(join(SRC, "api", file));
      expect([...seen].map((f) => relative(SRC, f)).filter((f) => !f.startsWith("api/")), file).toEqual([]);
      expect([...bare].filter((s) => s.startsWith("@secrets-service/") && s !== "@secrets-service/client/contract"), file).toEqual([]);
    }
  });

  it("keeps the secrets bin, and the CLI reaches only cli and api of src", () => {
    expect(readPackage(PROJECT_ROOT).bin).toEqual({ secrets: "dist/cli/main.js" });
    const files = [...reachable(join(SRC, "cli", "main.ts")).files].map((f) => relative(SRC, f));
    expect(files.length).toBeGreaterThan(3);
    expect(files.filter((f) => !/^(cli|api)\//.test(f))).toEqual([]);
  });
});
