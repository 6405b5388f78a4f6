import { smartBatcher } from "../lib/coalescing-batcher.js";
import type { Db } from "./db.js";
import { findSealedCurrentOfMany, findSealedVersion, type SealedVersionRow } from "./secret-store.js";

/**
 * Reads of current sealed values (the cache misses of AccessSecret and
 * ResolveSecrets, and every such read when there is no value cache), coalesced
 * across concurrent calls (lib/coalescing-batcher.ts): under load one statement serves many
 * calls, which is what a lookup costs most on a machine where Postgres shares the
 * cores: the round trip and the statement's parse and plan, not the index probe.
 * Rows are handed back by the developer id and name read from the row itself, so a
 * caller only ever receives its own developer's secrets.
 */

export type CurrentReader = (developerId: string, names: readonly string[]) => Promise<SealedVersionRow[]>;

interface Read {
  developerId: string;
  names: readonly string[];
}

/** Batches on the wire at once: one per Postgres core this machine class has. */
const MAX_IN_FLIGHT = 2;
/** Most (developer, name) pairs in one statement; more wait for the next. */
const MAX_BATCH_NAMES = 1_000;
/** A batch unanswered this long no longer holds back the reads behind it. */
const STALL_MS = 25;

export function createCurrentReader(db: Db): CurrentReader {
  /**
   * The rows a batch asks for, each pair (developer, name) once: a batch of one name
   * (the usual one at low load) through the one-version function (schema migration
   * 5), any other through the several-secrets one (migration 8); Postgres keeps
   * both plans instead of planning a join on every call.
   */
  async function rowsOf(batch: readonly Read[]): Promise<(SealedVersionRow & { developerId: string })[]> {
    const pairs: { developerId: string; name: string }[] = [];
    const seen = new Map<string, Set<string>>();
    for (const r of batch) {
      let names = seen.get(r.developerId);
      if (names === undefined) seen.set(r.developerId, (names = new Set()));
      for (const name of r.names) {
        if (names.has(name)) continue;
        names.add(name);
        pairs.push({ developerId: r.developerId, name });
      }
    }
    const only = pairs.length === 1 ? pairs[0] : undefined;
    if (only !== undefined) {
      const row = await findSealedVersion(db, only.developerId, only.name, 0);
      return row === undefined ? [] : [{ ...row, developerId: only.developerId }];
    }
    return findSealedCurrentOfMany(db, pairs);
  }

  /** The batch's rows, each read's own: by developer and name. */
  async function readBatch(batch: readonly Read[]): Promise<SealedVersionRow[][]> {
    const rows = await rowsOf(batch);
    const byDeveloper = new Map<string, Map<string, SealedVersionRow>>();
    for (const { developerId, ...row } of rows) {
      let names = byDeveloper.get(developerId);
      if (names === undefined) byDeveloper.set(developerId, (names = new Map()));
      names.set(row.name, row);
    }
    return batch.map((r) => {
      const own = byDeveloper.get(r.developerId);
      // Each secret once, as a query of its own would return it.
      return own === undefined ? [] : [...new Set(r.names)].flatMap((name) => own.get(name) ?? []);
    });
  }

  const read = smartBatcher<Read, SealedVersionRow[]>({
    maxInFlight: MAX_IN_FLIGHT,
    stallMs: STALL_MS,
    maxBatchSize: MAX_BATCH_NAMES,
    sizeOf: (r) => r.names.length,
    send: readBatch,
  });
  return (developerId, names) => (names.length === 0 ? Promise.resolve([]) : read({ developerId, names }));
}
