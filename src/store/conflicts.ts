import { AppError } from "../api/errors.js";
import { DbError } from "./db.js";

/**
 * Transient aborts of a write, retried inside the service (store/key-store.ts has the
 * lock order that keeps them rare): a serialization failure (40001), a deadlock
 * Postgres broke (40P01), and a version insert or key deletion whose foreign key a
 * concurrent commit made stale (23503 on secret_versions' data key). Past the
 * attempts the caller gets ABORTED with WRITE_CONFLICT, never INTERNAL, and nothing
 * of the write is stored.
 */
export const MAX_WRITE_ATTEMPTS = 5;

export function isTransientConflict(e: unknown): boolean {
  if (!(e instanceof DbError)) return false;
  return e.code === "40001" || e.code === "40P01" || (e.code === "23503" && e.constraint === "secret_versions_data_key_fkey");
}

/** The error a write gets when it kept losing races. */
export function writeConflict(cause?: unknown): AppError {
  return new AppError(
    "WRITE_CONFLICT",
    "the write kept conflicting with a concurrent change (a key rotation or shred); nothing was written, retry it",
    {},
    cause === undefined ? undefined : { cause },
  );
}

/**
 * Runs `attempt` (a whole transaction) until it succeeds or fails otherwise than by a
 * transient conflict; between attempts it waits a short random time that doubles.
 */
export async function retryConflicts<T>(attempt: () => Promise<T>, random: () => number = Math.random): Promise<T> {
  for (let n = 1; ; n++) {
    try {
      return await attempt();
    } catch (e) {
      if (!isTransientConflict(e)) throw e;
      if (n >= MAX_WRITE_ATTEMPTS) throw writeConflict(e);
      await new Promise((r) => setTimeout(r, random() * 5 * 2 ** n));
    }
  }
}
