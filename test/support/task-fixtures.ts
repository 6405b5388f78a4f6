import { existsSync } from "node:fs";
import path from "node:path";
import { fileURLToPath } from "node:url";

const repoRoot = fileURLToPath(new URL("../..", import.meta.url));

/**
 * The shared task fixtures live in `shared/` beside the repository (CI clones the
 * repository with a copy of `shared/` beside it); `/work/shared` is where they stand
 * on a development machine. Missing fixtures fail the test, never skip it.
 */
export function taskFixturesDirectory(): string {
  const candidates = [path.join(repoRoot, "..", "shared", "fixtures", "tasks"), "/work/shared/fixtures/tasks"];
  const found = candidates.find((dir) => existsSync(dir));
  if (found === undefined) throw new Error(`task fixtures not found in any of: ${candidates.join(", ")}`);
  return found;
}
