import { status } from "@grpc/grpc-js";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { CallError, type TestClient } from "./grpc-client.js";

/**
 * Cache coherence as docs/design.md defines it, checked from outside: no read returns a
 * state older than a write that had already returned to its caller when the read
 * began, on any replica; creates and deletes count as writes ("not found" is a
 * state too).
 *
 * Each tracked name has one sequential writer, whose write number `seq` is part of
 * the value (`valueOf(name, seq)`), so a read tells which write it saw.
 */
export class CoherenceChecker {
  /** Per name: the seq of the last write that returned. */
  readonly #returned = new Map<string, number>();
  /** Per name: whether the secret existed after write seq (index 0: before any write). */
  readonly #exists = new Map<string, boolean[]>();
  /** One line per stale read seen. */
  readonly stale: string[] = [];

  /** Start tracking a name that does not exist yet. */
  track(name: string): void {
    this.#exists.set(name, [false]);
    this.#returned.set(name, 0);
  }

  /** Write `seq` of `name` returned OK, leaving the secret existing or not. */
  written(name: string, seq: number, existsAfter: boolean): void {
    const states = this.#exists.get(name);
    if (!states) throw new Error(`${name} is not tracked`);
    states[seq] = existsAfter;
    this.#returned.set(name, seq);
  }

  /** The last write that has returned: take it just before a read starts. */
  before(name: string): number {
    return this.#returned.get(name) ?? 0;
  }

  /** A read that began after write `before` returned saw the value of write `seq`. */
  checkValue(name: string, before: number, seq: number): void {
    if (!(seq >= before)) this.stale.push(`${name}: read seq ${seq} after write ${before} returned`);
  }

  /** A read that began after write `before` returned found no secret. */
  checkNotFound(name: string, before: number): void {
    // NOT_FOUND is fresh only if the secret was absent at some state from `before` on
    // (the write still in flight counts as possibly absent).
    const states = this.#exists.get(name) ?? [];
    let absentSince = false;
    for (let s = before; s < states.length + 1 && !absentSince; s++) absentSince = states[s] !== true;
    if (!absentSince) this.stale.push(`${name}: NOT_FOUND after write ${before} (exists) returned`);
  }
}

/** The value that write `seq` of `name` stores. */
export function valueOf(name: string, seq: number): string {
  return `${name}:${seq}`;
}

/** The write number a value came from. */
export function seqOf(value: string | undefined): number {
  return Number(String(value).split(":")[1]);
}

type Client = TestClient<typeof SecretService>;

export interface CoherenceLoadOptions {
  token: string;
  /** Names `${prefix}_${i}` for i < names, each with one sequential writer. */
  prefix: string;
  names: number;
  /** The client that write `seq` of name `i` goes to. */
  writerFor(nameIndex: number, seq: number): Client;
  /** Concurrent reader loops. */
  readers: number;
  /** The client that read `n` of reader loop `r` goes to. */
  readerFor(reader: number, n: number): Client;
  /** Names created before the load with `valueOf(name, 1)` and never written during it (reads of them should be cache hits). */
  stableNames: string[];
  /** The load runs until every target is reached, or for at most maxLoadMs. */
  targetWrites: number;
  targetReads: number;
  targetStableReads: number;
  maxLoadMs: number;
  /** Pause between the operations of each loop (default 0). */
  pauseMs?: number;
}

export interface CoherenceLoadResult {
  writes: number;
  /** Reads of written names (values and NOT_FOUND). */
  reads: number;
  notFoundReads: number;
  stableReads: number;
  /** Writes by kind. */
  creates: number;
  updates: number;
  deletes: number;
  resolves: number;
  stale: string[];
  errors: unknown[];
}

/**
 * Mixed load with the zero-stale-reads check: each written name cycles
 * create → update → update → delete → create …; readers access (and every fifth
 * read resolve) the written names, and every third read is of a stable name whose
 * value must never change.
 */
export async function runCoherenceLoad(o: CoherenceLoadOptions): Promise<CoherenceLoadResult> {
  const checker = new CoherenceChecker();
  const r: CoherenceLoadResult = {
    writes: 0,
    reads: 0,
    notFoundReads: 0,
    stableReads: 0,
    creates: 0,
    updates: 0,
    deletes: 0,
    resolves: 0,
    stale: checker.stale,
    errors: [],
  };
  let stop = false;
  const pause = () => (o.pauseMs ? new Promise((res) => setTimeout(res, o.pauseMs)) : undefined);

  const writers = Array.from({ length: o.names }, async (_, i) => {
    const name = `${o.prefix}_${i}`;
    checker.track(name);
    for (let seq = 1; !stop && seq < 10_000; seq++) {
      const step = (seq - 1) % 4;
      const client = o.writerFor(i, seq);
      try {
        if (step === 0) await client.createSecret({ name, value: valueOf(name, seq) }, o.token);
        else if (step === 3) await client.deleteSecret({ name }, o.token);
        else await client.updateSecret({ name, value: valueOf(name, seq) }, o.token);
      } catch (e) {
        r.errors.push(e);
        return;
      }
      checker.written(name, seq, step !== 3);
      r.writes += 1;
      if (step === 0) r.creates += 1;
      else if (step === 3) r.deletes += 1;
      else r.updates += 1;
      await pause();
    }
  });

  const readers = Array.from({ length: o.readers }, async (_, reader) => {
    for (let n = 0; !stop && n < 1_000_000; n++) {
      const client = o.readerFor(reader, n);
      if (n % 3 === 2 && o.stableNames.length > 0) {
        const stable = o.stableNames[n % o.stableNames.length] as string;
        try {
          if ((await client.accessSecret({ name: stable }, o.token)).value !== valueOf(stable, 1)) r.stale.push(`${stable}: wrong value`);
          r.stableReads += 1;
        } catch (e) {
          r.errors.push(e);
        }
        await pause();
        continue;
      }
      const name = `${o.prefix}_${(reader + n) % o.names}`;
      const before = checker.before(name);
      try {
        let value: string | undefined;
        if (n % 5 === 0) {
          value = (await client.resolveSecrets({ names: [name] }, o.token)).values[name];
          r.resolves += 1;
        } else {
          value = (await client.accessSecret({ name }, o.token)).value;
        }
        checker.checkValue(name, before, seqOf(value));
      } catch (e) {
        if (!(e instanceof CallError) || e.code !== status.NOT_FOUND) {
          r.errors.push(e);
          continue;
        }
        r.notFoundReads += 1;
        checker.checkNotFound(name, before);
      }
      r.reads += 1;
      await pause();
    }
  });

  const deadline = Date.now() + o.maxLoadMs;
  while (
    Date.now() < deadline &&
    r.errors.length === 0 &&
    (r.reads < o.targetReads || r.writes < o.targetWrites || r.stableReads < o.targetStableReads)
  ) {
    await new Promise((res) => setTimeout(res, 50));
  }
  stop = true;
  await Promise.all([...writers, ...readers]);
  return r;
}
