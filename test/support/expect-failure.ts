/**
 * Runs `fn` expecting it to fail with an instance of `type`, and returns that error
 * for assertions. Success fails the test; any other error is rethrown as it is.
 */
export async function expectFailure<E extends Error>(type: abstract new (...args: never[]) => E, fn: () => Promise<unknown>): Promise<E> {
  try {
    await fn();
  } catch (e) {
    if (e instanceof type) return e;
    throw e;
  }
  throw new Error("expected the call to fail, and it succeeded");
}
