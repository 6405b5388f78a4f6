/**
 * The coalescing batcher that the Redis cache's MGETs and the current-value reads
 * share (src/lib/coalescing-batcher.ts): what goes out together, what waits, how
 * results and failures come back, and the bound on a batch's size.
 */
import { describe, expect, it } from "vitest";

import { smartBatcher, type SmartBatchOptions } from "../../src/lib/coalescing-batcher.js";

/** Lets the current turn and its setImmediate callbacks run. */
const nextTurn = () => new Promise<void>((resolve) => setImmediate(resolve));
const sleep = (ms: number) => new Promise<void>((resolve) => setTimeout(resolve, ms));

/** A batch that `send` received and that the test answers when it chooses. */
interface SentBatch {
  requests: string[];
  answer(results?: string[]): void;
  fail(e: Error): void;
}

/** A batcher over string requests whose `send` the test controls; results default to "r:<request>". */
function controlled(options: Partial<SmartBatchOptions<string, string>> = {}) {
  const sent: SentBatch[] = [];
  const batcher = smartBatcher<string, string>({
    maxInFlight: 1,
    stallMs: 10_000,
    maxBatchSize: 100,
    sizeOf: () => 1,
    send: (batch) =>
      new Promise<string[]>((resolve, reject) => {
        sent.push({
          requests: [...batch],
          answer: (results) => resolve(results ?? batch.map((r) => `r:${r}`)),
          fail: reject,
        });
      }),
    ...options,
  });
  return { batcher, sent };
}

describe("coalescing batcher", () => {
  it("sends the requests of one turn as one batch, in order, and gives each its own result", async () => {
    const { batcher, sent } = controlled();
    const results = Promise.all(["a", "b", "c"].map((r) => batcher(r)));
    expect(sent).toHaveLength(0); // nothing goes out before the turn ends
    await nextTurn();
    expect(sent.map((b) => b.requests)).toEqual([["a", "b", "c"]]);
    sent[0]?.answer();
    expect(await results).toEqual(["r:a", "r:b", "r:c"]);
  });

  it("holds requests made while the wire is full and sends them together when a batch comes back", async () => {
    const { batcher, sent } = controlled({ maxInFlight: 1 });
    const first = batcher("a");
    await nextTurn();
    const later = [batcher("b"), batcher("c")];
    await nextTurn();
    await nextTurn();
    expect(sent).toHaveLength(1); // b and c wait behind the batch on the wire

    sent[0]?.answer();
    expect(await first).toBe("r:a");
    await nextTurn();
    expect(sent.map((b) => b.requests)).toEqual([["a"], ["b", "c"]]);
    sent[1]?.answer();
    expect(await Promise.all(later)).toEqual(["r:b", "r:c"]);
  });

  it("keeps up to maxInFlight batches on the wire at once", async () => {
    const { batcher, sent } = controlled({ maxInFlight: 2 });
    const pending = [batcher("a")];
    await nextTurn();
    pending.push(batcher("b"));
    await nextTurn();
    pending.push(batcher("c"));
    await nextTurn();
    expect(sent.map((b) => b.requests)).toEqual([["a"], ["b"]]);
    sent[0]?.answer();
    await pending[0];
    await nextTurn();
    expect(sent.map((b) => b.requests)).toEqual([["a"], ["b"], ["c"]]);
    sent[1]?.answer();
    sent[2]?.answer();
    expect(await Promise.all(pending)).toEqual(["r:a", "r:b", "r:c"]);
  });

  it("splits by size: a batch holds at most maxBatchSize units, and a larger request goes alone", async () => {
    const { batcher, sent } = controlled({ maxInFlight: 10, maxBatchSize: 4, sizeOf: (r) => r.length });
    const requests = ["aa", "bb", "c", "dddddd", "e"];
    const results = Promise.all(requests.map((r) => batcher(r)));
    for (let i = 0; i < 5; i++) await nextTurn(); // one batch goes out per turn
    expect(sent.map((b) => b.requests)).toEqual([["aa", "bb"], ["c"], ["dddddd"], ["e"]]);
    for (const b of sent) b.answer();
    expect(await results).toEqual(requests.map((r) => `r:${r}`));
  });

  it("fails every request of a failed batch with its error, and only those", async () => {
    const { batcher, sent } = controlled({ maxInFlight: 2 });
    const failed = [batcher("a"), batcher("b")];
    await nextTurn();
    const fine = batcher("c");
    await nextTurn();
    const boom = new Error("connection reset");
    sent[0]?.fail(boom);
    sent[1]?.answer();
    for (const p of failed) await expect(p).rejects.toBe(boom);
    expect(await fine).toBe("r:c");
  });

  it("stops counting a batch unanswered for stallMs against maxInFlight", async () => {
    const { batcher, sent } = controlled({ maxInFlight: 1, stallMs: 30 });
    const stalled = batcher("a");
    await nextTurn();
    const early = batcher("b");
    await nextTurn();
    expect(sent).toHaveLength(1); // the wire is full and "a" is not stalled yet

    await sleep(60);
    const late = batcher("c");
    await nextTurn();
    // "a" no longer holds the others back: b (waiting) and c go out together.
    expect(sent.map((b) => b.requests)).toEqual([["a"], ["b", "c"]]);
    sent[1]?.answer();
    expect(await Promise.all([early, late])).toEqual(["r:b", "r:c"]);
    sent[0]?.answer();
    expect(await stalled).toBe("r:a");
  });

  it("is idle only with nothing queued and nothing on the wire", async () => {
    const { batcher, sent } = controlled();
    expect(batcher.idle).toBe(true);
    const p = batcher("a");
    expect(batcher.idle).toBe(false); // queued
    await nextTurn();
    expect(batcher.idle).toBe(false); // on the wire
    sent[0]?.answer();
    await p;
    await nextTurn();
    expect(batcher.idle).toBe(true);
  });
});
