/**
 * JSON-lines audit sinks: every event once, in chain order, with the chain's hashes,
 * across a restart of the writer; a sink that fails gets the rest of its lines
 * retried without duplicates; strict (recordDurable) waits for every sink, and is
 * refused at once while one is known down; a sink that was down recovers; a file
 * sink rotates.
 */
import { execFile } from "node:child_process";
import { existsSync } from "node:fs";
import { mkdir, mkdtemp, readFile, readdir, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import os from "node:os";
import path from "node:path";
import { pathToFileURL } from "node:url";
import { promisify } from "node:util";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { AuditDownError, createAuditLog } from "../../src/audit/audit-log.js";
import { openSinks, parseSinkSpecs, type AuditSink } from "../../src/audit/audit-sink.js";
import { verifyAuditChains } from "../../src/audit/audit-verify.js";
import { PROJECT_ROOT } from "../support/server-process.js";
import { createTestDb, testDatabaseKind, type TestDb } from "../support/test-db.js";
import { auditEvent, heldDb, newId } from "./audit-support.js";

interface Line {
  writer_id: string;
  writer_sequence: number;
  request_id: string;
  prev_hash: string;
  hash: string;
}

const parse = (text: string): Line[] => text.split("\n").filter(Boolean).map((l) => JSON.parse(l) as Line);

describe(`audit sinks on ${testDatabaseKind()}`, () => {
  let t: TestDb;
  let dir: string;
  beforeAll(async () => {
    t = await createTestDb();
    dir = await mkdtemp(path.join(os.tmpdir(), "secrets-audit-sink-"));
  });
  afterAll(async () => {
    await t?.cleanup();
    await rm(dir, { recursive: true, force: true });
  });

  it("a file sink receives every event of a session once, in chain order, with Postgres's hashes, across a restart", async () => {
    const file = path.join(dir, "audit.jsonl");
    const developerId = newId("dev");
    const sent: string[] = [];
    const writers: string[] = [];
    for (const events of [25, 12]) {
      // Each round is a process: its own sink handle and writer.
      const sinks = openSinks(parseSinkSpecs(`file:${file}`));
      const writerId = newId("w");
      writers.push(writerId);
      const log = createAuditLog({ db: t.db, writerId, sinks, batchSize: 10, intervalMs: 1 });
      for (let i = 0; i < events; i++) {
        const e = auditEvent({ developerId, secretName: `name_${i}` });
        sent.push(e.requestId);
        await log.record(e);
      }
      await log.close();
      for (const s of sinks) await s.close();
    }
    const lines = parse(await readFile(file, "utf8"));
    expect(lines.map((l) => l.request_id)).toEqual(sent);
    const { rows } = await t.db.query<{ writer_id: string; writer_sequence: number; hash: string }>(
      "SELECT writer_id, writer_sequence, hash FROM audit_events WHERE developer_id = $1 ORDER BY id",
      [developerId],
    );
    expect(lines.map((l) => [l.writer_id, l.writer_sequence, l.hash])).toEqual(rows.map((r) => [r.writer_id, r.writer_sequence, r.hash]));
    for (const writerId of writers) {
      const chain = lines.filter((l) => l.writer_id === writerId);
      expect(chain.map((l) => l.writer_sequence)).toEqual(chain.map((_, i) => i + 1));
      for (let i = 1; i < chain.length; i++) expect(chain[i]?.prev_hash).toBe(chain[i - 1]?.hash);
    }
    expect((await verifyAuditChains(t.db)).problems).toEqual([]);
  });

  it("retries a failed sink write from where it stopped: no line twice, no row twice", async () => {
    const received: string[] = [];
    let failures = 2;
    const flaky: AuditSink = {
      name: "flaky",
      up: true,
      whenUp: () => Promise.resolve(),
      async write(text) {
        if (failures > 0) {
          failures -= 1;
          throw new Error("sink down (test)");
        }
        received.push(text);
      },
      close: async () => undefined,
    };
    const writerId = newId("w");
    const log = createAuditLog({ db: t.db, writerId, sinks: [flaky], batchSize: 5, intervalMs: 1, maxRetryDelayMs: 5 });
    for (let i = 0; i < 12; i++) await log.record(auditEvent({ developerId: newId("dev") }));
    await log.close();
    expect(parse(received.join("")).map((l) => l.writer_sequence)).toEqual(Array.from({ length: 12 }, (_, i) => i + 1));
    const { rows } = await t.db.query<{ n: number }>("SELECT count(*)::int8 AS n FROM audit_events WHERE writer_id = $1", [writerId]);
    expect(rows[0]?.n).toBe(12);
  });

  it("a batch that grows while a sink is down is stored once: only what Postgres lacks goes to it", async () => {
    const received: string[] = [];
    let down = true;
    let attempts = 0;
    const sink: AuditSink = {
      name: "switch",
      get up() {
        return !down;
      },
      whenUp: () => Promise.resolve(), // resolves at once even while down: the writer must still yield to I/O between retries
      async write(text) {
        attempts += 1;
        if (down) throw new Error("sink down (test)");
        received.push(text);
      },
      close: async () => undefined,
    };
    const errors: string[] = [];
    const writerId = newId("w");
    const log = createAuditLog({ db: t.db, writerId, sinks: [sink], intervalMs: 1, maxRetryDelayMs: 5, onError: (e) => errors.push(String(e)) });
    await log.record(auditEvent({ developerId: newId("dev") }));
    await expect.poll(() => attempts).toBeGreaterThan(1);
    // Queued behind the failing batch: the next attempt carries both events.
    await log.record(auditEvent({ developerId: newId("dev") }));
    const before = attempts;
    await expect.poll(() => attempts).toBeGreaterThan(before + 1);
    down = false;
    await log.close();
    expect(errors.filter((e) => !e.includes("switch"))).toEqual([]);
    expect(parse(received.join("")).map((l) => l.writer_sequence)).toEqual([1, 2]);
    const { rows } = await t.db.query<{ n: number }>("SELECT count(*)::int8 AS n FROM audit_events WHERE writer_id = $1", [writerId]);
    expect(rows[0]?.n).toBe(2);
  });

  it("strict: a durable record is refused at once while a Unix socket sink is down, and commits once it is back", async () => {
    const socketPath = path.join(dir, "sink.sock");
    const sinks = openSinks(parseSinkSpecs(`unix:${socketPath}`), { reconnectInitialMs: 5, reconnectMaxMs: 20 });
    const log = createAuditLog({ db: t.db, writerId: newId("w"), sinks, intervalMs: 1, maxRetryDelayMs: 10_000 });
    let got = "";
    const server: Server = createServer((c) => c.on("data", (d) => (got += d.toString())));
    try {
      // Nobody listens: the connection made at open fails and the sink is down.
      await expect.poll(() => log.down).toBe(`unix:${socketPath}`);
      await expect(log.recordDurable(auditEvent({ developerId: newId("dev") }))).rejects.toBeInstanceOf(AuditDownError);
      await new Promise<void>((resolve) => server.listen(socketPath, resolve));
      // It reconnects on its own, with no event to write.
      await expect.poll(() => log.down).toBeUndefined();
      await log.recordDurable(auditEvent({ developerId: newId("dev") }));
      await expect.poll(() => parse(got).map((l) => l.writer_sequence)).toEqual([1]);
      await log.close();
    } finally {
      for (const s of sinks) await s.close();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("strict: a durable record waiting when its sink fails is refused; its event is written once the sink is back", async () => {
    const socketPath = path.join(dir, "sink2.sock");
    const connections = new Set<Socket>();
    let got = "";
    const listen = () => {
      const server = createServer((c) => {
        connections.add(c);
        c.on("data", (d) => (got += d.toString()));
      });
      return new Promise<Server>((resolve) => server.listen(socketPath, () => resolve(server)));
    };
    let server = await listen();
    const sinks = openSinks(parseSinkSpecs(`unix:${socketPath}`), { reconnectInitialMs: 5, reconnectMaxMs: 20 });
    const held = heldDb(t.db);
    const log = createAuditLog({ db: held.db, writerId: newId("w"), sinks, intervalMs: 1, maxRetryDelayMs: 20 });
    try {
      await expect.poll(() => connections.size).toBe(1);
      const durable = log.recordDurable(auditEvent({ developerId: newId("dev") }));
      await expect.poll(() => held.waiting()).toBe(1);
      // The reader goes away while the event waits for Postgres.
      for (const c of connections) c.destroy();
      await new Promise((resolve) => server.close(resolve));
      await expect.poll(() => log.down).toBeDefined();
      held.release();
      await expect(durable).rejects.toBeInstanceOf(AuditDownError);
      server = await listen();
      await log.close();
      await expect.poll(() => parse(got).map((l) => l.writer_sequence)).toEqual([1]);
    } finally {
      for (const s of sinks) await s.close();
      await new Promise((resolve) => server.close(resolve));
    }
  });

  it("a file sink that cannot be written is down until it can, and then gets every line once", async () => {
    const sub = path.join(dir, "not-yet");
    const file = path.join(sub, "audit.jsonl");
    const sinks = openSinks(parseSinkSpecs(`file:${file}`));
    const log = createAuditLog({ db: t.db, writerId: newId("w"), sinks, intervalMs: 1, maxRetryDelayMs: 20 });
    try {
      for (let i = 0; i < 3; i++) await log.record(auditEvent({ developerId: newId("dev") }));
      await expect.poll(() => log.down).toBe(`file:${file}`);
      await expect(log.recordDurable(auditEvent({ developerId: newId("dev") }))).rejects.toBeInstanceOf(AuditDownError);
      await mkdir(sub);
      await log.flush();
      expect(log.down).toBeUndefined();
      await log.recordDurable(auditEvent({ developerId: newId("dev") }));
      await log.close();
      expect(parse(await readFile(file, "utf8")).map((l) => l.writer_sequence)).toEqual([1, 2, 3, 4]);
    } finally {
      for (const s of sinks) await s.close();
    }
  });

  it("a file sink rotates by size and keeps every line across its files", async () => {
    const file = path.join(dir, "rotating.jsonl");
    const sinks = openSinks(parseSinkSpecs(`file:${file}`), { fileMaxBytes: 2000, fileKeep: 50 });
    const log = createAuditLog({ db: t.db, writerId: newId("w"), sinks, batchSize: 3, intervalMs: 1 });
    for (let i = 0; i < 30; i++) await log.record(auditEvent({ developerId: newId("dev") }));
    await log.close();
    for (const s of sinks) await s.close();
    const files = (await readdir(dir)).filter((f) => f.startsWith("rotating.jsonl"));
    expect(files.length).toBeGreaterThan(2);
    // Oldest first: the highest suffix, down to the live file.
    const age = (f: string) => (f === "rotating.jsonl" ? 0 : Number(f.slice("rotating.jsonl.".length)));
    const ordered = files.sort((a, b) => age(b) - age(a));
    const lines: Line[] = [];
    for (const f of ordered) lines.push(...parse(await readFile(path.join(dir, f), "utf8")));
    expect(lines.map((l) => l.writer_sequence)).toEqual(Array.from({ length: 30 }, (_, i) => i + 1));
  });

  it("parses SECRETS_AUDIT_SINKS, and refuses anything else without echoing it", () => {
    expect(parseSinkSpecs(undefined)).toEqual([]);
    expect(parseSinkSpecs("stdout, file:/var/log/a.jsonl,unix:/run/a.sock")).toEqual([
      { kind: "stdout" },
      { kind: "file", path: "/var/log/a.jsonl" },
      { kind: "unix", path: "/run/a.sock" },
    ]);
    expect(() => parseSinkSpecs("tcp:secret-host:1")).toThrow(/SECRETS_AUDIT_SINKS must be/);
    expect(() => parseSinkSpecs("tcp:secret-host:1")).not.toThrow(/secret-host/);
  });

  it("writes whole lines to stdout, one write each", async () => {
    const built = path.join(PROJECT_ROOT, "dist", "audit", "audit-sink.js");
    if (!existsSync(built)) throw new Error(`${built} is missing: run npm run build`);
    const script = `
      import { openSinks } from ${JSON.stringify(pathToFileURL(built).href)};
      const [sink] = openSinks([{ kind: "stdout" }]);
      await sink.write('{"n":1}\\n{"n":2}\\n');
      await sink.close();
    `;
    const { stdout } = await promisify(execFile)(process.execPath, ["--input-type=module", "-e", script], { timeout: 20_000 });
    expect(stdout).toBe('{"n":1}\n{"n":2}\n');
  });
});
