import { status } from "@grpc/grpc-js";
import { SecretsError } from "./errors.js";

/**
 * Retries for idempotent calls: UNAVAILABLE only (a refused or dropped connection,
 * or the service's database briefly unreachable), with capped exponential backoff
 * and full jitter (a random wait between 0 and the cap), so that many clients
 * reconnecting after a restart do not arrive in lock-step. A call that changes
 * something is never retried: a lost answer does not tell whether it was carried out.
 *
 * Invariants: at most `maxAttempts` attempts; never a wait that would end past the
 * call's deadline (the call then fails with the last error at once).
 */

/** How retries behave; every field has a default. */
export interface RetryOptions {
  /** Attempts in all, the first included (default 4; 1 turns retries off). */
  maxAttempts?: number;
  /** The first backoff cap (default 100 ms); it doubles for every retry. */
  initialBackoffMs?: number;
  /** The largest backoff cap (default 2,000 ms). */
  maxBackoffMs?: number;
}

/** Resolved retry settings. */
export interface RetryPolicy {
  readonly maxAttempts: number;
  readonly initialBackoffMs: number;
  readonly maxBackoffMs: number;
}

/** The defaults, filled in where `options` leaves them out. */
export function retryPolicy(options: RetryOptions | undefined): RetryPolicy {
  const policy = {
    maxAttempts: options?.maxAttempts ?? 4,
    initialBackoffMs: options?.initialBackoffMs ?? 100,
    maxBackoffMs: options?.maxBackoffMs ?? 2_000,
  };
  if (!Number.isInteger(policy.maxAttempts) || policy.maxAttempts < 1) throw new RangeError("retry.maxAttempts must be an integer of at least 1");
  if (!(policy.initialBackoffMs >= 0) || !(policy.maxBackoffMs >= policy.initialBackoffMs)) {
    throw new RangeError("retry backoffs must satisfy 0 <= initialBackoffMs <= maxBackoffMs");
  }
  return policy;
}

/** The wait before retry number `retry` (1 for the first retry): full jitter under a doubling cap. */
export function backoffMs(policy: RetryPolicy, retry: number, random: () => number = Math.random): number {
  const cap = Math.min(policy.maxBackoffMs, policy.initialBackoffMs * 2 ** (retry - 1));
  return Math.floor(random() * cap);
}

/**
 * Runs `attempt` until it succeeds, fails with something other than UNAVAILABLE,
 * runs out of attempts, or would run past `deadline` (epoch ms).
 */
export async function withRetries<T>(
  policy: RetryPolicy,
  deadline: number,
  signal: AbortSignal | undefined,
  attempt: () => Promise<T>,
): Promise<T> {
  for (let n = 1; ; n += 1) {
    try {
      return await attempt();
    } catch (e) {
      if (!(e instanceof SecretsError) || e.code !== status.UNAVAILABLE || n >= policy.maxAttempts) throw e;
      const wait = backoffMs(policy, n);
      if (Date.now() + wait >= deadline) throw e;
      await sleep(wait, signal);
    }
  }
}

/** Waits `ms`; fails CANCELLED at once when `signal` aborts. */
export function sleep(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve, reject) => {
    if (signal?.aborted) return reject(cancelled());
    const timer = setTimeout(() => {
      signal?.removeEventListener("abort", onAbort);
      resolve();
    }, ms);
    const onAbort = () => {
      clearTimeout(timer);
      reject(cancelled());
    };
    signal?.addEventListener("abort", onAbort, { once: true });
  });
}

/** The error of a call cancelled through its AbortSignal. */
export function cancelled(): SecretsError {
  return new SecretsError({ code: status.CANCELLED, details: "call cancelled by the caller" });
}
