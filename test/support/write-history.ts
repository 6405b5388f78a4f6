import { status } from "@grpc/grpc-js";

/**
 * What the secret behind one name may hold after a history of writes, checked from
 * outside: the model behind test/faults/key-races.test.ts.
 *
 * Each name has one sequential writer, so its writes are totally ordered by when
 * they were issued. A shred (ShredDeveloper) takes effect at one instant inside its
 * call; it may land between any two of a name's writes that its call overlaps, and
 * the model tries each such place. A write's outcome constrains the state it saw:
 *
 * - OK: it applied. A create needed the name absent; an update or delete needed it
 *   present. A history where no order satisfies this lost an acknowledged write.
 * - ALREADY_EXISTS on a create, NOT_FOUND on an update or delete: it did not apply,
 *   and the name was present, respectively absent.
 * - Anything else (ABORTED, UNAVAILABLE, FAILED_PRECONDITION, and the statuses the
 *   harness reports as failures of their own): it may or may not have applied.
 *
 * The result is the set of states the name may be in afterwards; empty means the
 * outcomes contradict each other (an acknowledged write was lost or undone).
 */

/** A secret's value, or `null` when the name is absent. */
export type NameState = string | null;

export type WriteKind = "create" | "update" | "delete";

/** One write to a name as the client saw it: issued at `start`, answered at `end` (ms, one clock). */
export interface WriteRecord {
  kind: WriteKind;
  /** The value a create or update sent. */
  value?: string;
  start: number;
  end: number;
  /** The gRPC status code of the answer (status.OK when it succeeded). */
  code: status;
  /** Which replica served it (for the failure message only). */
  replica: number;
}

/** A shred's call window and whether it is known to have happened. */
export interface ShredWindow {
  start: number;
  end: number;
  /** true: it returned OK. false: it failed, so it may or may not have taken effect. */
  certain: boolean;
}

function applied(state: NameState, w: WriteRecord): NameState | undefined {
  if (w.kind === "create") return state === null ? (w.value ?? "") : undefined;
  if (state === null) return undefined;
  return w.kind === "update" ? (w.value ?? "") : null;
}

/** The states after `w`, from the states before it (see the module comment). */
export function afterWrite(before: ReadonlySet<NameState>, w: WriteRecord): Set<NameState> {
  const out = new Set<NameState>();
  for (const s of before) {
    if (w.code === status.OK) {
      const next = applied(s, w);
      if (next !== undefined) out.add(next);
    } else if (w.kind === "create" && w.code === status.ALREADY_EXISTS) {
      if (s !== null) out.add(s);
    } else if (w.kind !== "create" && w.code === status.NOT_FOUND) {
      if (s === null) out.add(s);
    } else {
      out.add(s);
      const next = applied(s, w);
      if (next !== undefined) out.add(next);
    }
  }
  return out;
}

/**
 * The states a name may be in after `history` (in issue order, from an absent name),
 * with an optional shred placed at every point its window allows.
 */
export function possibleFinalStates(history: readonly WriteRecord[], shred?: ShredWindow): Set<NameState> {
  const run = (shredAt: number | undefined): Set<NameState> => {
    let states = new Set<NameState>([null]);
    for (let i = 0; i <= history.length; i++) {
      if (i === shredAt) states = new Set([null]);
      const w = history[i];
      if (w) states = afterWrite(states, w);
      if (states.size === 0) break;
    }
    return states;
  };
  if (!shred) return run(undefined);
  const all = shred.certain ? new Set<NameState>() : run(undefined);
  for (let k = 0; k <= history.length; k++) {
    // The shred can come after write k-1 only if that write began before the shred
    // ended, and before write k only if that write ended after the shred began.
    const prev = history[k - 1];
    const next = history[k];
    if (prev && prev.start > shred.end) continue;
    if (next && next.end < shred.start) continue;
    for (const s of run(k)) all.add(s);
  }
  return all;
}

/** One line per write, times relative to `t0`, for failure messages. */
export function describeHistory(history: readonly WriteRecord[], t0: number, shred?: ShredWindow): string {
  const ms = (t: number) => (t - t0).toFixed(0);
  const lines = history.map(
    (w) => `${w.kind}${w.value === undefined ? "" : ` ${JSON.stringify(w.value)}`} [${ms(w.start)}..${ms(w.end)} ms] r${w.replica} → ${status[w.code]}`,
  );
  if (shred) lines.push(`shred [${ms(shred.start)}..${ms(shred.end)} ms]${shred.certain ? "" : " (failed: maybe applied)"}`);
  return lines.join("; ");
}
