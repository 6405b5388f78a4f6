/**
 * What the master-key rewrap phase reads off its polls. After RotateMasterKey
 * returns, the bench asks, every few hundred ms, both the server (GetKeyStatus's
 * `data_keys_to_rewrap`) and Postgres itself (live data keys not under the new
 * master key) how many keys are left. The rewrap is done at the first poll where
 * both say 0; a server that says 0 while Postgres still counts keys, or a count
 * that rises (keys moved back under an old master key), is reported, not hidden.
 */

/** One poll, `atMs` after RotateMasterKey returned; a count is undefined when its query failed. */
export interface ProgressSample {
  atMs: number;
  status: number | undefined;
  postgres: number | undefined;
}

export interface RewrapProgress {
  /** Whether a poll saw both counts at 0. */
  finished: boolean;
  /** When that poll returned; undefined if none did. */
  doneAtMs: number | undefined;
  /**
   * Keys per second: `toRewrap` over `doneAtMs`. Unfinished, `toRewrap` over the
   * time of the last poll, which bounds the rate from above (not all were done by then).
   */
  keysPerSecond: number;
  /** The first poll at which GetKeyStatus, and Postgres, said 0. */
  statusZeroAtMs: number | undefined;
  postgresZeroAtMs: number | undefined;
  /** Postgres's count at the first poll at which GetKeyStatus said 0: anything but 0 means the status was ahead of the truth. */
  postgresWhenStatusZero: number | undefined;
  /** Keys left at the last poll, by Postgres (or, failing that, by the status). */
  left: number | undefined;
  /** Sum of the increases of Postgres's count from one poll to the next: keys that went back under another master key. */
  postgresRise: number;
}

export function summarizeProgress(samples: readonly ProgressSample[], toRewrap: number): RewrapProgress {
  let statusZeroAtMs: number | undefined;
  let postgresZeroAtMs: number | undefined;
  let postgresWhenStatusZero: number | undefined;
  let doneAtMs: number | undefined;
  let postgresRise = 0;
  let previous: number | undefined;
  for (const s of samples) {
    if (s.status === 0 && statusZeroAtMs === undefined) {
      statusZeroAtMs = s.atMs;
      postgresWhenStatusZero = s.postgres;
    }
    if (s.postgres === 0 && postgresZeroAtMs === undefined) postgresZeroAtMs = s.atMs;
    if (s.status === 0 && s.postgres === 0 && doneAtMs === undefined) doneAtMs = s.atMs;
    if (s.postgres !== undefined) {
      if (previous !== undefined && s.postgres > previous) postgresRise += s.postgres - previous;
      previous = s.postgres;
    }
  }
  const last = samples.at(-1);
  const seconds = (doneAtMs ?? last?.atMs ?? 0) / 1000;
  return {
    finished: doneAtMs !== undefined,
    doneAtMs,
    keysPerSecond: seconds > 0 ? toRewrap / seconds : toRewrap === 0 ? 0 : Number.POSITIVE_INFINITY,
    statusZeroAtMs,
    postgresZeroAtMs,
    postgresWhenStatusZero,
    left: last?.postgres ?? last?.status,
    postgresRise,
  };
}
