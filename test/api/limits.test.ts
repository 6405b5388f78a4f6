import { readFileSync } from "node:fs";
import { join } from "node:path";
import { describe, expect, it } from "vitest";

import { LIMITS, NAME_PATTERN, NAME_PREFIX_PATTERN, SUBJECT_PATTERN } from "../../src/api/limits.js";
import { SUBJECT_PATTERN as PRINCIPAL_SUBJECT_PATTERN } from "../../src/auth/principal.js";
import { RESOLVE_MAX_NAMES, SECRET_NAME_PATTERN, VALUE_MAX_BYTES, nameProblem } from "../../packages/client/src/limits.js";
import { PROJECT_ROOT } from "../support/server-process.js";

// The one name rule and the limits, shared by the service, the SDK and the CLI.

describe("API limits and naming rules", () => {
  it("are the rules docs/api.md states", () => {
    const doc = readFileSync(join(PROJECT_ROOT, "docs", "api.md"), "utf8");
    expect(doc).toContain(`match \`${NAME_PATTERN.source}\``);
    expect(doc).toContain(`must match \`${SUBJECT_PATTERN.source}\``);
    expect(doc).toContain(`1–${LIMITS.resolveMaxNames} names`);
  });

  it("accept names of 1 to 128 letters, digits and underscores that start with a letter, and nothing else", () => {
    for (const name of ["a", "Z", "a_1", `a${"_".repeat(127)}`]) expect(NAME_PATTERN.test(name), name).toBe(true);
    for (const name of ["", "1a", "_a", "a-b", "a b", "ä", "a\n", `a${"b".repeat(128)}`]) {
      expect(NAME_PATTERN.test(name), JSON.stringify(name)).toBe(false);
      expect(nameProblem(name), JSON.stringify(name)).toMatch(/^invalid secret name: /);
    }
    expect(nameProblem("a_1")).toBeUndefined();
    expect(nameProblem(`a${"b".repeat(128)}`)).toBe("invalid secret name: it is longer than 128 characters");
  });

  it("accept as a name prefix the empty string and any start of a valid name", () => {
    for (const prefix of ["", "a", "a_", `a${"b".repeat(127)}`]) expect(NAME_PREFIX_PATTERN.test(prefix), prefix).toBe(true);
    for (const prefix of ["_", "1", "a-", `a${"b".repeat(128)}`]) expect(NAME_PREFIX_PATTERN.test(prefix), prefix).toBe(false);
  });

  it("are the ones the SDK and auth export, not copies", () => {
    expect(SECRET_NAME_PATTERN).toBe(NAME_PATTERN);
    expect(PRINCIPAL_SUBJECT_PATTERN).toBe(SUBJECT_PATTERN);
    expect(VALUE_MAX_BYTES).toBe(LIMITS.valueMaxBytes);
    expect(RESOLVE_MAX_NAMES).toBe(LIMITS.resolveMaxNames);
  });
});
