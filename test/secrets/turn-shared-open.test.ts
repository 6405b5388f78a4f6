import { setImmediate as nextTurn } from "node:timers/promises";
import { describe, expect, it } from "vitest";
import { shareOpensWithinTurn, type FoundEntry } from "../../src/secrets/turn-shared-open.js";

const entry = (over: Partial<FoundEntry> = {}): FoundEntry => ({
  kind: "found",
  secretId: "s-1",
  version: 3,
  dekVersion: 1,
  ciphertext: Buffer.from("sealed-bytes"),
  ...over,
});

/** An opener that counts its calls and gives each a fresh Buffer (as decryption does). */
function countingOpen() {
  const calls: string[] = [];
  const open = (developerId: string, name: string, hit: FoundEntry) => {
    calls.push(`${developerId}/${name}/${hit.version}`);
    return Buffer.from(`value of ${name} v${hit.version}`);
  };
  return { calls, open };
}

describe("opens shared within one event-loop turn", () => {
  it("opens an entry once for all the calls of a turn that ask for it (each copy of it from the reply is equal, not the same object)", () => {
    const { calls, open } = countingOpen();
    const shared = shareOpensWithinTurn(open);
    const values = Array.from({ length: 5 }, () => shared("dev-a", "stripe_key", entry()));
    expect(calls).toEqual(["dev-a/stripe_key/3"]);
    for (const v of values) expect(v).toBe(values[0]);
  });

  it("opens again for any difference: developer, name, secret id, version, data key version or ciphertext", () => {
    const { calls, open } = countingOpen();
    const shared = shareOpensWithinTurn(open);
    shared("dev-a", "stripe_key", entry());
    shared("dev-b", "stripe_key", entry());
    shared("dev-a", "other_key", entry());
    shared("dev-a", "stripe_key", entry({ secretId: "s-2" }));
    shared("dev-a", "stripe_key", entry({ version: 4 }));
    shared("dev-a", "stripe_key", entry({ dekVersion: 2 }));
    shared("dev-a", "stripe_key", entry({ ciphertext: Buffer.from("sealed-bytez") }));
    expect(calls).toHaveLength(7);
  });

  it("keeps nothing past the turn: the next turn opens again", async () => {
    const { calls, open } = countingOpen();
    const shared = shareOpensWithinTurn(open);
    const first = shared("dev-a", "stripe_key", entry());
    await nextTurn();
    const second = shared("dev-a", "stripe_key", entry());
    expect(calls).toHaveLength(2);
    expect(second).not.toBe(first);
    expect(second).toEqual(first);
  });

  it("shares neither a value still being opened (data key not in memory) nor a failure", async () => {
    let n = 0;
    const shared = shareOpensWithinTurn(() => Promise.resolve(Buffer.from(`v${++n}`)));
    const a = shared("dev-a", "stripe_key", entry());
    const b = shared("dev-a", "stripe_key", entry());
    expect(await a).toEqual(Buffer.from("v1"));
    expect(await b).toEqual(Buffer.from("v2"));

    let failures = 0;
    const failing = shareOpensWithinTurn(() => {
      failures += 1;
      throw new Error("authentication failed");
    });
    expect(() => failing("dev-a", "stripe_key", entry())).toThrow("authentication failed");
    expect(() => failing("dev-a", "stripe_key", entry())).toThrow("authentication failed");
    expect(failures).toBe(2);
  });
});
