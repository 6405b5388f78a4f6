import { mkdtemp, readFile, rm } from "node:fs/promises";
import os from "node:os";
import path from "node:path";

import { pino } from "pino";
import { describe, expect, it } from "vitest";

import { batchLines, type LineDestination } from "../../src/observability/log-lines.js";

function recorder(): LineDestination & { events: string[] } {
  const events: string[] = [];
  return {
    events,
    write: (text) => events.push(`write:${text}`),
    flush: (cb) => {
      events.push("flush");
      cb?.();
    },
    flushSync: () => events.push("flushSync"),
  };
}

describe("batchLines", () => {
  it("hands lines over in order, one string per batch of at least minLength characters", () => {
    const d = recorder();
    const b = batchLines(d, 1000);
    const lines = Array.from({ length: 95 }, (_, i) => `${String(i).padStart(99, "x")}\n`);
    for (const line of lines) b.write(line);
    expect(d.events).toHaveLength(9); // 95 lines of 100 characters: nine batches of ten, five lines held
    b.drain();
    expect(d.events).toHaveLength(10);
    expect(d.events.map((e) => e.slice("write:".length)).join("")).toBe(lines.join(""));
    b.drain();
    expect(d.events).toHaveLength(10); // nothing held: nothing handed over
  });

  it("flush and flushSync hand over what is held before the destination flushes", () => {
    const d = recorder();
    const b = batchLines(d, 1 << 20);
    b.write("a\n");
    b.flush();
    b.write("b\n");
    b.flushSync();
    expect(d.events).toEqual(["write:a\n", "flush", "write:b\n", "flushSync"]);
  });

  it("carries pino's lines to a file through sonic-boom", async () => {
    const dir = await mkdtemp(path.join(os.tmpdir(), "secrets-log-lines-"));
    try {
      const file = path.join(dir, "out.log");
      const dest = pino.destination({ dest: file, sync: false, mkdir: true });
      await new Promise((r) => dest.once("ready", r));
      const stream = batchLines(dest, 8192);
      const log = pino({ base: null }, stream);
      for (let i = 0; i < 500; i++) log.info({ i }, "line");
      stream.flushSync();
      const lines = (await readFile(file, "utf8")).trimEnd().split("\n").map((l) => JSON.parse(l) as { i: number; msg: string });
      expect(lines.map((l) => l.i)).toEqual(Array.from({ length: 500 }, (_, i) => i));
      expect(lines.every((l) => l.msg === "line")).toBe(true);
      dest.end();
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});
