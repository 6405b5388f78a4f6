import { describe, expect, it } from "vitest";
import { AppError } from "../../src/api/errors.js";
import { MAX_WRITE_ATTEMPTS, retryConflicts } from "../../src/store/conflicts.js";
import { DbError } from "../../src/store/db.js";

/** An attempt that fails with `errors` in turn, then returns "written"; counts its calls. */
function attempts(errors: unknown[]) {
  let calls = 0;
  return {
    run: async () => {
      const e = errors[calls++];
      if (e !== undefined) throw e;
      return "written";
    },
    calls: () => calls,
  };
}

const noWait = () => 0;

describe("retryConflicts", () => {
  it("retries serialization failures, deadlocks and a stale data key reference, then succeeds", async () => {
    const a = attempts([
      new DbError("40001", "could not serialize"),
      new DbError("40P01", "deadlock detected"),
      new DbError("23503", "fk", "secret_versions_data_key_fkey"),
    ]);
    expect(await retryConflicts(a.run, noWait)).toBe("written");
    expect(a.calls()).toBe(4);
  });

  it("gives up after its attempts with ABORTED WRITE_CONFLICT, never the raw database error", async () => {
    const a = attempts(Array.from({ length: 10 }, () => new DbError("40P01", "deadlock detected")));
    const e = await retryConflicts(a.run, noWait).catch((x: unknown) => x);
    expect(e).toBeInstanceOf(AppError);
    expect((e as AppError).reason).toBe("WRITE_CONFLICT");
    expect((e as AppError).kind).toBe("aborted");
    expect(a.calls()).toBe(MAX_WRITE_ATTEMPTS);
  });

  it("does not retry anything else", async () => {
    for (const error of [new DbError("23505", "dup", "secrets_developer_name_key"), new DbError("23503", "fk", "other_fkey"), new Error("bug")]) {
      const a = attempts([error]);
      await expect(retryConflicts(a.run, noWait)).rejects.toBe(error);
      expect(a.calls()).toBe(1);
    }
  });
});
