import { readdirSync, readFileSync } from "node:fs";
import path from "node:path";

import { describe, expect, it } from "vitest";
import { parse as parseYaml } from "yaml";

import { ExpressionMessages } from "../../packages/client/src/expression.js";
import {
  collectSecretReferences,
  resolveTaskSecrets,
  type TaskReferenceError,
  TaskReferencesError,
  type TaskSecretsClient,
  TooManySecretReferencesError,
} from "../../packages/client/src/task-references.js";
import { taskFixturesDirectory } from "../support/fixtures.js";

const fixturesDirectory = taskFixturesDirectory;

/** 1-based line and column of the first occurrence of `needle` in `text`. */
function positionOf(text: string, needle: string): { line: number; column: number } {
  const index = text.indexOf(needle);
  if (index === -1) throw new Error(`not in the text: ${needle}`);
  const before = text.slice(0, index).split("\n");
  return { line: before.length, column: before[before.length - 1]!.length + 1 };
}

describe("collectSecretReferences on the shared fixtures", () => {
  const dir = fixturesDirectory();
  const fixtures = readdirSync(dir)
    .filter((f) => f.endsWith(".yaml"))
    .sort();

  it("finds the fixtures, including the two known ones", () => {
    expect(fixtures).toEqual(expect.arrayContaining(["invoice-sync.yaml", "weather-digest.yaml"]));
  });

  for (const file of fixtures) {
    const text = readFileSync(path.join(dir, file), "utf8");
    const expected = JSON.parse(readFileSync(path.join(dir, file.replace(/\.yaml$/, ".expected.json")), "utf8")) as {
      names: string[];
    };

    it(`${file}: YAML text gives exactly the expected names`, () => {
      expect(collectSecretReferences(text)).toEqual({ names: expected.names, errors: [] });
    });

    it(`${file}: the parsed task gives the same names`, () => {
      expect(collectSecretReferences(parseYaml(text))).toEqual({ names: expected.names, errors: [] });
    });
  }

  it("gives the literal expected names of invoice-sync and weather-digest", () => {
    const read = (f: string): string => readFileSync(path.join(dir, f), "utf8");
    expect(collectSecretReferences(read("invoice-sync.yaml")).names).toEqual([
      "api_key",
      "billing_api_key",
      "ledger_base_url",
      "ledger_basic_auth",
    ]);
    expect(collectSecretReferences(read("weather-digest.yaml")).names).toEqual(["chat_bot_token", "weather_api_key"]);
  });
});

describe("collectSecretReferences: what counts as a reference", () => {
  it("finds secret_name keys at any depth and expressions in sequences and mappings", () => {
    const task = {
      secret_name: "top",
      main: [{ tool: "x", secret_name: "on_step" }, [[{ deeper: { secret_name: "deep" } }]], "$ secrets.in_list"],
      evaluate: { a: { b: { c: "$ f'{secrets.nested}'" } } },
    };
    expect(collectSecretReferences(task)).toEqual({
      names: ["deep", "in_list", "nested", "on_step", "top"],
      errors: [],
    });
  });

  it("collapses duplicates and sorts the names", () => {
    const yaml = [
      "a: $ secrets.zeta + secrets['alpha'] + secrets.zeta",
      "b: {secret_name: alpha}",
      "c: $ f'{secrets.Mid}{secrets.mid}'",
    ].join("\n");
    expect(collectSecretReferences(yaml).names).toEqual(["Mid", "alpha", "mid", "zeta"]);
  });

  it("treats strings without the `$ ` prefix as text", () => {
    const task = {
      a: "secrets.plain",
      b: "$secrets.no_space",
      c: "$\tsecrets.tab",
      d: " $ secrets.leading_space",
      e: "use secrets['x'] here",
    };
    expect(collectSecretReferences(task)).toEqual({ names: [], errors: [] });
  });

  it("never treats map keys as expressions", () => {
    expect(collectSecretReferences({ "$ secrets.key": 1, "$ secrets['k2']": "text" })).toEqual({
      names: [],
      errors: [],
    });
    expect(collectSecretReferences(`"$ secrets.key": 1\n"$ secrets['1bad']": x\n`)).toEqual({ names: [], errors: [] });
  });

  it("ignores non-string scalars", () => {
    const yaml = "a: 1\nb: true\nc: null\nd: 2024-01-01\ne: 1.5\nf: ~\ng: [1, false]\n";
    expect(collectSecretReferences(yaml)).toEqual({ names: [], errors: [] });
    expect(collectSecretReferences({ a: 1, b: true, c: null, d: undefined, e: new Date(0), f: 10n })).toEqual({
      names: [],
      errors: [],
    });
    expect(collectSecretReferences(42)).toEqual({ names: [], errors: [] });
    expect(collectSecretReferences(null)).toEqual({ names: [], errors: [] });
  });

  it("does not count string literals, doubled braces or comments in expressions", () => {
    const yaml = [
      `a: $ "secrets.in_string" + secrets.real_one`,
      `b: $ f'{{secrets.literal_braces}} {secrets.field}'`,
      `c: "$ secrets.commented  # + secrets.in_comment"`,
      `d: $ mysecrets.x + secrets_manager.y + a.secrets.z + secrets [ "spaced" ]`,
    ].join("\n");
    expect(collectSecretReferences(yaml)).toEqual({
      names: ["commented", "field", "real_one", "spaced"],
      errors: [],
    });
  });

  it("reads a multi-line expression in a block scalar, with a triple-quoted string spanning lines", () => {
    const yaml = [
      "step:",
      "  run: |",
      "    $ '''",
      "    secrets.not_a_reference",
      "    ''' + secrets.after_the_string",
    ].join("\n");
    expect(collectSecretReferences(yaml)).toEqual({ names: ["after_the_string"], errors: [] });
  });

  it("walks deeply nested structures without running out of stack", () => {
    let task: unknown = { secret_name: "at_the_bottom" };
    for (let i = 0; i < 20_000; i += 1) task = i % 2 === 0 ? [task] : { level: task };
    expect(collectSecretReferences(task)).toEqual({ names: ["at_the_bottom"], errors: [] });

    let yaml = "$ secrets.deep_yaml";
    for (let i = 0; i < 60; i += 1) yaml = `{k${i}: [${yaml}]}`;
    expect(collectSecretReferences(yaml)).toEqual({ names: ["deep_yaml"], errors: [] });
  });

  it("walks a shared or cyclic object once", () => {
    const shared = { url: "$ secrets.shared" };
    const cyclic: Record<string, unknown> = { a: shared, b: shared };
    cyclic.self = cyclic;
    expect(collectSecretReferences(cyclic)).toEqual({ names: ["shared"], errors: [] });
  });

  it("walks Maps", () => {
    const task = new Map<string, unknown>([["step", new Map([["secret_name", "from_map"]])]]);
    expect(collectSecretReferences(task).names).toEqual(["from_map"]);
  });

  it("reads an anchored mapping once, not again at each alias", () => {
    const yaml = "base: &b {secret_name: '9bad', url: $ secrets.good}\none: *b\ntwo: {<<: *b}\n";
    const { names, errors } = collectSecretReferences(yaml);
    expect(names).toEqual(["good"]);
    expect(errors.map((e) => e.path)).toEqual(["base.secret_name"]);
  });

  it("reads both values of a duplicated key rather than refusing the task", () => {
    expect(collectSecretReferences("a: $ secrets.first\na: $ secrets.second\n")).toEqual({
      names: ["first", "second"],
      errors: [],
    });
  });

  it("finds nothing in an empty document", () => {
    expect(collectSecretReferences("")).toEqual({ names: [], errors: [] });
    expect(collectSecretReferences("# only a comment\n")).toEqual({ names: [], errors: [] });
  });

  it("reads a document that is a single expression", () => {
    expect(collectSecretReferences("$ secrets.root")).toEqual({ names: ["root"], errors: [] });
  });

  it("reads JSON text", () => {
    const json = JSON.stringify({ steps: [{ secret_name: "json_name", args: { u: "$ secrets['from_json']" } }] }, null, 2);
    expect(collectSecretReferences(json)).toEqual({ names: ["from_json", "json_name"], errors: [] });
  });
});

describe("collectSecretReferences: errors and where they stand", () => {
  const yaml = [
    "name: errors", // 1
    "main:", // 2
    "  - evaluate:", // 3
    "      ok: $ secrets.good_one", // 4
    "      bad: $ 'x' + secrets['1bad']", // 5
    "  - tool: chat", // 6
    '    secret_name: "no spaces"', // 7
    "  - evaluate:", // 8
    "      dash: $ f'{secrets[\"has-dash\"]}'", // 9
  ].join("\n");

  it("reports names that break the naming rule with path, line, column and offset, and keeps the good ones", () => {
    const { names, errors } = collectSecretReferences(yaml);
    expect(names).toEqual(["good_one"]);
    expect(errors).toEqual([
      {
        path: "main[0].evaluate.bad",
        ...positionOf(yaml, "secrets['1bad']"),
        offset: "$ 'x' + ".length,
        message: "invalid secret name: it must start with a letter (A-Z or a-z)",
      },
      {
        path: "main[1].secret_name",
        // Offset 0 of the value: its first character, inside the quotes.
        ...positionOf(yaml, "no spaces"),
        offset: 0,
        message: "invalid secret name: it may contain only letters, digits and underscores",
      },
      {
        path: "main[2].evaluate.dash",
        ...positionOf(yaml, `secrets["has-dash"]`),
        offset: "$ f'{".length,
        message: "invalid secret name: it may contain only letters, digits and underscores",
      },
    ]);
    expect(errors.map((e) => e.line)).toEqual([5, 7, 9]);
  });

  it("never repeats the offending name in a message", () => {
    for (const e of collectSecretReferences(yaml).errors) {
      expect(e.message).not.toMatch(/1bad|no spaces|has-dash/);
    }
  });

  it("reports the same errors without line and column for a parsed task", () => {
    const errors = collectSecretReferences(parseYaml(yaml)).errors;
    expect(errors.map(({ path, offset }) => ({ path, offset }))).toEqual([
      { path: "main[0].evaluate.bad", offset: 8 },
      { path: "main[1].secret_name", offset: 0 },
      { path: "main[2].evaluate.dash", offset: 5 },
    ]);
    for (const e of errors) expect(e).not.toHaveProperty("line");
  });

  it("rejects empty and over-long names", () => {
    const task = { a: { secret_name: "" }, b: { secret_name: `x${"y".repeat(128)}` }, c: { secret_name: `x${"y".repeat(127)}` } };
    const { names, errors } = collectSecretReferences(task);
    expect(names).toEqual([`x${"y".repeat(127)}`]);
    expect(errors).toEqual([
      { path: "a.secret_name", offset: 0, message: "invalid secret name: it is empty" },
      { path: "b.secret_name", offset: 0, message: "invalid secret name: it is longer than 128 characters" },
    ]);
  });

  it("reports a secret_name that is not a string, or is an expression", () => {
    const text = [
      "a: {secret_name: 42}",
      "b:",
      "  secret_name:",
      "c:",
      "  secret_name: {nested: $ secrets.inside}",
      "d:",
      "  secret_name: $ secrets.computed",
    ].join("\n");
    const { names, errors } = collectSecretReferences(text);
    expect(names).toEqual(["computed", "inside"]);
    expect(errors.map(({ path, line, message }) => ({ path, line, message }))).toEqual([
      { path: "a.secret_name", line: 1, message: "secret_name must be a string naming a secret" },
      { path: "b.secret_name", line: 3, message: "secret_name must be a string naming a secret" },
      { path: "c.secret_name", line: 5, message: "secret_name must be a string naming a secret" },
      {
        path: "d.secret_name",
        line: 7,
        message: "dynamic secret reference cannot be resolved statically: secret_name is an expression",
      },
    ]);
  });

  it("reports dynamic references as errors", () => {
    const { names, errors } = collectSecretReferences("x: $ secrets[name_var] + secrets.ok\n");
    expect(names).toEqual(["ok"]);
    expect(errors).toEqual([
      { path: "x", line: 1, column: 6, offset: 2, message: ExpressionMessages.dynamicSubscript },
    ]);
  });

  it("reports an unterminated string with its location instead of throwing", () => {
    const text = "steps:\n  - url: $ secrets.before + 'https://x\n";
    const { names, errors } = collectSecretReferences(text);
    expect(names).toEqual(["before"]);
    expect(errors).toEqual([
      {
        path: "steps[0].url",
        ...positionOf(text, "'https"),
        offset: "$ secrets.before + ".length,
        message: ExpressionMessages.unterminatedString,
      },
    ]);
  });

  it("reports unbalanced braces in an f-string with their location", () => {
    const text = `a: "$ f'{secrets.x'"\nb: $ f'}{secrets.y}'\n`;
    const { errors } = collectSecretReferences(text);
    expect(errors).toEqual([
      { path: "a", line: 1, column: 9, offset: 4, message: ExpressionMessages.fieldNotClosed },
      { path: "b", line: 2, column: 8, offset: 4, message: ExpressionMessages.singleCloseBrace },
    ]);
  });

  it("maps the column inside a block scalar, a folded plain scalar and quoted scalars", () => {
    const text = [
      "block:", // 1
      "  run: |", // 2
      "    $ (secrets.first +", // 3
      "       secrets['bad-one'])", // 4
      "plain: $ secrets.a +", // 5
      "  secrets['bad-two']", // 6
      "single: '$ ''x'' + secrets[''bad-three'']'", // 7
      'double: "$ \\"\\u00e9\\" + secrets[\'bad-four\']"', // 8
      "folded: >", // 9
      "  $ secrets.b +", // 10
      "  secrets['bad-five']", // 11
    ].join("\n");
    const { errors } = collectSecretReferences(text);
    const at = errors.map(({ path, line, column }) => ({ path, line, column }));
    expect(at).toEqual([
      { path: "block.run", ...positionOf(text, "secrets['bad-one']") },
      { path: "plain", ...positionOf(text, "secrets['bad-two']") },
      { path: "single", ...positionOf(text, "secrets[''bad-three'']") },
      { path: "double", ...positionOf(text, "secrets['bad-four']") },
      { path: "folded", ...positionOf(text, "secrets['bad-five']") },
    ]);
  });

  it("quotes keys that are not identifiers in paths", () => {
    const { errors } = collectSecretReferences({ "odd key": [{ "a.b": { secret_name: "-" } }] });
    expect(errors.map((e) => e.path)).toEqual([`["odd key"][0]["a.b"].secret_name`]);
  });

  it("reports a YAML syntax error with its line instead of throwing, and without quoting the source", () => {
    // yaml's own message for this input quotes the token: "Unexpected scalar token in YAML stream: ...".
    const text = "- x\nk: sk_live_do_not_echo\n";
    const { errors } = collectSecretReferences(text);
    expect(errors.length).toBeGreaterThan(0);
    expect(errors[0]).toMatchObject({ path: "", offset: 0, line: 2, message: expect.stringMatching(/^YAML syntax error/) });
    for (const e of errors) expect(e.message).not.toContain("sk_live_do_not_echo");
  });
});

/** A client whose `resolve` answers from `values` (or fails as told) and records every call. */
function fakeClient(
  values: Record<string, string>,
  failure?: Error,
): TaskSecretsClient & { calls: string[][] } {
  const calls: string[][] = [];
  return {
    calls,
    secrets: {
      resolve(names: string[]): Promise<Record<string, string>> {
        calls.push([...names]);
        if (failure) return Promise.reject(failure);
        return Promise.resolve(Object.fromEntries(names.map((n) => [n, values[n] ?? ""])));
      },
    },
  };
}

/** The server's limit on names per ResolveSecrets call (docs/api.md). */
const MAX_RESOLVE_NAMES = 100;

describe("resolveTaskSecrets", () => {
  const task = [
    "main:",
    "  - tool: chat",
    "    secret_name: chat_token",
    "  - evaluate:",
    "      url: $ f'https://x.example/?k={secrets.api_key}&t={secrets[\"chat_token\"]}'",
    "      auth: $ 'Basic ' + secrets.basic",
  ].join("\n");

  it("resolves every referenced name in exactly one call", async () => {
    const client = fakeClient({ api_key: "v1", chat_token: "v2", basic: "v3" });
    await expect(resolveTaskSecrets(client, task)).resolves.toEqual({ api_key: "v1", basic: "v3", chat_token: "v2" });
    expect(client.calls).toEqual([["api_key", "basic", "chat_token"]]);
  });

  it("accepts a parsed task", async () => {
    const client = fakeClient({});
    await resolveTaskSecrets(client, parseYaml(task));
    expect(client.calls).toEqual([["api_key", "basic", "chat_token"]]);
  });

  it("makes no call for a task without references", async () => {
    const client = fakeClient({});
    await expect(resolveTaskSecrets(client, "name: nothing\nmain: [{log: secrets.x is text}]\n")).resolves.toEqual({});
    expect(client.calls).toEqual([]);
  });

  it("throws every reference error before any call, naming paths and never the offending text", async () => {
    const client = fakeClient({});
    const bad = `${task}\n      more: $ secrets['has-dash'] + secrets[name]\n`;
    const error = await resolveTaskSecrets(client, bad).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TaskReferencesError);
    const errors = (error as TaskReferencesError).errors;
    expect(errors.map((e: TaskReferenceError) => e.path)).toEqual(["main[1].evaluate.more", "main[1].evaluate.more"]);
    const message = (error as Error).message;
    expect(message).toContain("main[1].evaluate.more (line 7, column 15): invalid secret name");
    expect(message).toContain(ExpressionMessages.dynamicSubscript);
    expect(message).not.toContain("has-dash");
    expect(client.calls).toEqual([]);
  });

  it("lets the server's NOT_FOUND error through unchanged", async () => {
    const notFound = Object.assign(new Error("secrets not found: api_key, basic"), { code: 5, reason: "SECRET_NOT_FOUND" });
    const client = fakeClient({}, notFound);
    await expect(resolveTaskSecrets(client, task)).rejects.toBe(notFound);
    expect(client.calls).toHaveLength(1);
  });

  it("refuses more names than one call allows, without calling, and accepts exactly the limit", async () => {
    const names = Array.from({ length: MAX_RESOLVE_NAMES + 1 }, (_, i) => `s${i}`);
    const tooMany = { steps: names.map((n) => ({ secret_name: n })) };
    const client = fakeClient({});
    const error = await resolveTaskSecrets(client, tooMany).catch((e: unknown) => e);
    expect(error).toBeInstanceOf(TooManySecretReferencesError);
    expect((error as Error).message).toMatch(/references 101 secrets, more than the 100/);
    expect(client.calls).toEqual([]);

    const atLimit = { steps: names.slice(0, MAX_RESOLVE_NAMES).map((n) => ({ secret_name: n })) };
    await resolveTaskSecrets(client, atLimit);
    expect(client.calls).toHaveLength(1);
    expect(client.calls[0]).toHaveLength(MAX_RESOLVE_NAMES);
  });
});
