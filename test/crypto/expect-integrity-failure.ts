/**
 * Assertions for "this ciphertext must not open": the failure has to be the AppError reason
 * INTEGRITY_FAILURE with the generic message, not a plain Error and never a plaintext.
 */
import { expect } from "vitest";
import { AppError } from "../../src/api/errors.js";

/** Asserts that `run` throws an integrity failure (and returns nothing). */
export function expectIntegrityFailure(run: () => unknown): void {
  let thrown: unknown;
  try {
    run();
  } catch (e) {
    thrown = e;
  }
  assertIntegrityFailure(thrown);
}

/** Asserts that `run` rejects with an integrity failure. */
export async function expectIntegrityFailureAsync(run: () => Promise<unknown>): Promise<void> {
  let thrown: unknown;
  try {
    await run();
  } catch (e) {
    thrown = e;
  }
  assertIntegrityFailure(thrown);
}

function assertIntegrityFailure(thrown: unknown): void {
  expect(thrown, "expected an integrity failure, but nothing was thrown").toBeInstanceOf(AppError);
  const error = thrown as AppError;
  expect(error.reason).toBe("INTEGRITY_FAILURE");
  expect(error.message).toBe("internal error");
}
