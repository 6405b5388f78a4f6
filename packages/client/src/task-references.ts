/**
 * Which secrets a task definition references, found without running it, and resolving them in one call.
 *
 * A task names a secret in two ways (docs/design.md, "Task references"): a `secret_name: NAME` key on a mapping at
 * any depth, and `secrets.NAME` / `secrets['NAME']` inside an expression, a string scalar that begins with
 * `$ `. Everything else — other strings, map keys, numbers, booleans — references nothing.
 *
 * Error messages say where a reference stands and what is wrong with it, never the offending text itself:
 * a "name" that breaks the naming rule is sometimes a value pasted in the wrong place.
 *
 * Expressions are scanned by expression.ts; a position inside a YAML scalar is mapped back to its line and
 * column by yaml-source-offsets.ts.
 */
import {
  type Document,
  isAlias,
  isMap,
  isScalar,
  isSeq,
  LineCounter,
  parseDocument,
  type Scalar,
} from "yaml";

import { EXPRESSION_PREFIX, isExpression, scanExpression } from "./expression.js";
import { nameProblem, RESOLVE_MAX_NAMES } from "./limits.js";
import { scalarSourceOffset } from "./yaml-source-offsets.js";

/** The key that names a secret on a step (a tool call). */
export const SECRET_NAME_KEY = "secret_name";

/**
 * A reference that cannot be resolved, and where it stands.
 *
 * `path` locates the value in the task (`main[0].evaluate.billing_url`; `""` is the document itself).
 * `offset` is within that string value, counting its `$ ` prefix (0 for errors that are not inside an
 * expression). For YAML text, `line` and `column` (1-based; columns in UTF-16 units) point at the reference
 * in the source — at the start of its scalar when the position inside cannot be mapped back.
 */
export interface TaskReferenceError {
  readonly path: string;
  readonly line?: number;
  readonly column?: number;
  readonly offset: number;
  readonly message: string;
}

/** Every secret a task references (distinct, sorted) and every reference that cannot be resolved. */
export interface SecretReferences {
  readonly names: string[];
  readonly errors: TaskReferenceError[];
}

/** Thrown by `resolveTaskSecrets` when a task has references that cannot be resolved; lists them all. */
export class TaskReferencesError extends Error {
  override readonly name = "TaskReferencesError";

  constructor(readonly errors: readonly TaskReferenceError[]) {
    super(
      `task has ${errors.length} secret reference error${errors.length === 1 ? "" : "s"}:\n` +
        errors.map((e) => `  ${formatLocation(e)}: ${e.message}`).join("\n"),
    );
  }
}

/** Thrown by `resolveTaskSecrets` when a task references more secrets than one ResolveSecrets call allows. */
export class TooManySecretReferencesError extends Error {
  override readonly name = "TooManySecretReferencesError";

  constructor(
    readonly count: number,
    readonly limit: number = RESOLVE_MAX_NAMES,
  ) {
    super(
      `task references ${count} secrets, more than the ${limit} that the server resolves in one call; ` +
        "split the task or reference fewer secrets",
    );
  }
}

/** The part of `SecretsClient` that `resolveTaskSecrets` needs, so that a fake is one line. */
export interface TaskSecretsClient {
  readonly secrets: { resolve(names: string[]): Promise<Record<string, string>> };
}

/**
 * The secrets a task references. `task` is either YAML (or JSON) text — then errors carry line and column —
 * or an already-parsed task (objects, arrays, Maps and scalars). Never throws for a malformed task: YAML
 * syntax errors and malformed expressions come back as errors with their locations.
 */
export function collectSecretReferences(task: unknown): SecretReferences {
  const collector = new Collector();
  if (typeof task === "string") walkYamlText(task, collector);
  else walkValue(task, collector);
  return { names: [...collector.names].sort(), errors: collector.errors };
}

/**
 * The values of every secret `task` references, fetched in exactly one ResolveSecrets call.
 *
 * Throws `TaskReferencesError` (before any call) when a reference cannot be resolved, and
 * `TooManySecretReferencesError` past the server's per-call limit: splitting into several calls would give up
 * the all-or-nothing answer. A task without references resolves to `{}` without a call. Errors from the call
 * — NOT_FOUND listing every missing name, PERMISSION_DENIED — propagate unchanged.
 */
export async function resolveTaskSecrets(client: TaskSecretsClient, task: unknown): Promise<Record<string, string>> {
  const { names, errors } = collectSecretReferences(task);
  if (errors.length > 0) throw new TaskReferencesError(errors);
  if (names.length === 0) return {};
  if (names.length > RESOLVE_MAX_NAMES) throw new TooManySecretReferencesError(names.length);
  return client.secrets.resolve(names);
}

function formatLocation(error: TaskReferenceError): string {
  const where = error.path === "" ? "(document)" : error.path;
  if (error.line === undefined) return where;
  return error.column === undefined
    ? `${where} (line ${error.line})`
    : `${where} (line ${error.line}, column ${error.column})`;
}

/** Maps an offset within a string value to its line and column in the source, when there is a source. */
type Locate = (offset: number) => { line: number; column: number } | undefined;

const noSource: Locate = () => undefined;

class Collector {
  readonly names = new Set<string>();
  readonly errors: TaskReferenceError[] = [];

  error(path: string, offset: number, message: string, locate: Locate): void {
    const at = locate(offset);
    this.errors.push(at ? { path, line: at.line, column: at.column, offset, message } : { path, offset, message });
  }

  reference(name: string, path: string, offset: number, locate: Locate): void {
    const invalid = nameProblem(name);
    if (invalid === undefined) this.names.add(name);
    else this.error(path, offset, invalid, locate);
  }

  /** A string scalar anywhere in the task: text, or an expression to scan. */
  string(value: string, path: string, locate: Locate): void {
    if (!isExpression(value)) return;
    const base = EXPRESSION_PREFIX.length;
    const scan = scanExpression(value.slice(base));
    for (const ref of scan.references) this.reference(ref.name, path, base + ref.offset, locate);
    for (const problem of scan.problems) this.error(path, base + problem.offset, problem.message, locate);
  }

  /** The value of a `secret_name` key, whose path is `path`. */
  secretName(value: unknown, path: string, locate: Locate): void {
    if (typeof value !== "string") {
      this.error(path, 0, "secret_name must be a string naming a secret", locate);
    } else if (isExpression(value)) {
      // A name computed at run time cannot be resolved ahead of it; its own references still count.
      this.error(path, 0, "dynamic secret reference cannot be resolved statically: secret_name is an expression", locate);
      this.string(value, path, locate);
    } else {
      this.reference(value, path, 0, locate);
    }
  }
}

const PLAIN_KEY = /^[A-Za-z_][A-Za-z0-9_]*$/;

function keyPath(path: string, key: string): string {
  if (PLAIN_KEY.test(key)) return path === "" ? key : `${path}.${key}`;
  return `${path}[${JSON.stringify(key)}]`;
}

function indexPath(path: string, index: number): string {
  return `${path}[${index}]`;
}

// ---- already-parsed tasks

/** Walks a parsed task depth-first in document order, without recursion so depth is not limited by the stack. */
function walkValue(root: unknown, collector: Collector): void {
  type Entry = { kind: "value"; value: unknown; path: string } | { kind: "secret_name"; value: unknown; path: string };
  const stack: Entry[] = [{ kind: "value", value: root, path: "" }];
  // Containers already walked: shared subtrees are walked once, and a cycle ends.
  const seen = new WeakSet<object>();
  for (let entry = stack.pop(); entry !== undefined; entry = stack.pop()) {
    const { value, path } = entry;
    if (entry.kind === "secret_name") {
      collector.secretName(value, path, noSource);
      if (typeof value === "object" && value !== null) stack.push({ kind: "value", value, path });
      continue;
    }
    if (typeof value === "string") {
      collector.string(value, path, noSource);
      continue;
    }
    if (typeof value !== "object" || value === null || seen.has(value)) continue;
    seen.add(value);
    const children: Entry[] = [];
    if (Array.isArray(value)) {
      value.forEach((item, i) => children.push({ kind: "value", value: item, path: indexPath(path, i) }));
    } else {
      const pairs: [unknown, unknown][] = value instanceof Map ? [...value.entries()] : Object.entries(value);
      for (const [key, child] of pairs) {
        const childPath = keyPath(path, String(key));
        children.push({ kind: key === SECRET_NAME_KEY ? "secret_name" : "value", value: child, path: childPath });
      }
    }
    for (let i = children.length - 1; i >= 0; i -= 1) stack.push(children[i]!);
  }
}

// ---- YAML text

function walkYamlText(text: string, collector: Collector): void {
  const lineCounter = new LineCounter();
  // prettyErrors off: its messages quote the source line, which may hold a value.
  // uniqueKeys off: a duplicated key is walked twice rather than making the whole task unreadable.
  const doc = parseDocument(text, { lineCounter, prettyErrors: false, uniqueKeys: false });
  const position = (offset: number): { line: number; column: number } => {
    const { line, col } = lineCounter.linePos(offset);
    return { line, column: col };
  };
  for (const e of doc.errors) {
    collector.error("", 0, `YAML syntax error (${e.code})`, () => position(e.pos[0]));
  }
  walkYamlDocument(doc, text, collector, position);
}

function walkYamlDocument(
  doc: Document,
  text: string,
  collector: Collector,
  position: (offset: number) => { line: number; column: number },
): void {
  type Entry = { kind: "node" | "secret_name"; node: unknown; path: string; at: number | undefined };
  const stack: Entry[] = [{ kind: "node", node: doc.contents, path: "", at: undefined }];
  const nodeStart = (node: unknown): number | undefined =>
    node !== null && typeof node === "object" && "range" in node && Array.isArray(node.range)
      ? (node.range[0] as number)
      : undefined;
  const locateScalar =
    (scalar: Scalar, value: string): Locate =>
    (offset) => {
      const start = scalar.range?.[0];
      if (start === undefined) return undefined;
      return position(scalarSourceOffset(scalar, value, text, offset) ?? start);
    };
  const locateAt =
    (at: number | undefined): Locate =>
    () =>
      at === undefined ? undefined : position(at);

  for (let entry = stack.pop(); entry !== undefined; entry = stack.pop()) {
    const { node, path } = entry;
    if (entry.kind === "secret_name") {
      if (isScalar(node) && typeof node.value === "string") {
        const value = node.value;
        collector.secretName(value, path, locateScalar(node, value));
      } else {
        collector.secretName(isScalar(node) ? node.value : node, path, locateAt(nodeStart(node) ?? entry.at));
        if (isMap(node) || isSeq(node)) stack.push({ kind: "node", node, path, at: undefined });
      }
      continue;
    }
    // An alias is walked where its anchor stands; walking it again would only repeat the same references.
    if (isAlias(node)) continue;
    if (isScalar(node)) {
      if (typeof node.value === "string") collector.string(node.value, path, locateScalar(node, node.value));
      continue;
    }
    const children: Entry[] = [];
    if (isSeq(node)) {
      node.items.forEach((item, i) => children.push({ kind: "node", node: item, path: indexPath(path, i), at: undefined }));
    } else if (isMap(node)) {
      for (const pair of node.items) {
        // Keys are never expressions; a key that is not a scalar is shown as `?` in paths.
        const key = isScalar(pair.key) ? String(pair.key.value) : pair.key === null ? "" : "?";
        const kind = key === SECRET_NAME_KEY ? "secret_name" : "node";
        children.push({ kind, node: pair.value, path: keyPath(path, key), at: nodeStart(pair.key) });
      }
    }
    for (let i = children.length - 1; i >= 0; i -= 1) stack.push(children[i]!);
  }
}
