import { describe, expect, it } from "vitest";
import { createMemoryStore } from "../../src/cache/memory-cache.js";
import { nameKeys } from "../../src/cache/secret-cache.js";

// The in-process store's own bound and expiry (the coherence scheme over it is
// tested in coherent-cache.test.ts).

const keysOf = (name: string) => nameKeys("{dev}:", name);

function store(options: { maxEntries?: number; now?: () => number } = {}) {
  const s = createMemoryStore(options);
  return {
    fill: (name: string, ttlMs = 60_000) => s.fill([{ keys: keysOf(name), expected: "", value: Buffer.from(`entry-${name}`), ttlMs }]),
    /** The names whose entry the store still holds, of those asked for. */
    held: async (...names: string[]) => {
      const read = await s.read(names.map(keysOf));
      return names.filter((_, i) => read[i]?.entry !== null);
    },
    deletePrefix: (prefix: string) => s.deletePrefix(prefix),
  };
}

describe("in-process cache store", () => {
  it("keeps at most maxEntries entries, dropping the least recently used", async () => {
    const s = store({ maxEntries: 2 });
    await s.fill("a");
    await s.fill("b");
    expect(await s.held("a")).toEqual(["a"]); // a read is a use: b is now the least recently used
    await s.fill("c");
    expect(await s.held("a", "b", "c")).toEqual(["a", "c"]);
  });

  it("drops an entry once it is older than the ttl of its fill", async () => {
    let t = 1_000_000;
    const s = store({ now: () => t });
    await s.fill("short", 100);
    await s.fill("long", 1_000);
    t += 100;
    expect(await s.held("short", "long")).toEqual(["short", "long"]);
    t += 1;
    expect(await s.held("short", "long")).toEqual(["long"]);
    t += 900;
    expect(await s.held("short", "long")).toEqual([]);
  });

  it("returns the entry's bytes as filled", async () => {
    const s = createMemoryStore();
    await s.fill([{ keys: keysOf("x"), expected: "", value: Buffer.from("sealed-bytes"), ttlMs: 60_000 }]);
    const [read] = await s.read([keysOf("x")]);
    expect(read?.entry?.toString()).toBe("sealed-bytes");
  });

  it("deletes the entries under a prefix and counts them", async () => {
    const s = store();
    await s.fill("a");
    await s.fill("b");
    expect(await s.deletePrefix("{dev}:v:")).toBe(2);
    expect(await s.held("a", "b")).toEqual([]);
    expect(await s.deletePrefix("{dev}:v:")).toBe(0);
  });
});
