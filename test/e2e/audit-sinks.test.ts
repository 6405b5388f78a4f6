/**
 * A whole service with JSON-lines audit sinks (a file and a Unix socket) in strict
 * mode: every event reaches both, once and in chain order, with no value in them;
 * while the socket's reader is down, a value read does not answer, and it does once
 * the reader is back.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import os from "node:os";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import { startTestService, type TestService } from "../support/fixtures.js";
import { isPending } from "../audit/audit-support.js";

const VALUE = "sink-test-value-5e21";

interface Line {
  action: string;
  outcome: string;
  writer_id: string;
  writer_sequence: number;
  prev_hash: string;
  hash: string;
}

describe("a service with JSON-lines audit sinks, strict", () => {
  let dir: string;
  let socketPath: string;
  let listener: Server | undefined;
  let received = "";
  const connections = new Set<Socket>();
  let svc: TestService;
  let token: string;

  const listen = () =>
    new Promise<void>((resolve) => {
      listener = createServer((c) => {
        connections.add(c);
        c.on("data", (d) => (received += d.toString()));
        c.on("close", () => connections.delete(c));
      });
      listener.listen(socketPath, resolve);
    });
  const stopListening = async () => {
    for (const c of connections) c.destroy();
    await new Promise((resolve) => listener?.close(resolve));
  };

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "secrets-e2e-sinks-"));
    socketPath = path.join(dir, "audit.sock");
    await listen();
    svc = await startTestService({
      SECRETS_AUDIT_SINKS: `file:${path.join(dir, "audit.jsonl")},unix:${socketPath}`,
      SECRETS_AUDIT_STRICT: "1",
    });
    token = await svc.token("sink-dev", { scopes: ["secrets:read", "secrets:access", "secrets:write"] });
  });
  afterAll(async () => {
    await svc?.stop();
    await stopListening();
    await rm(dir, { recursive: true, force: true });
  });

  it("sends every event to both sinks once, in chain order, and no value", async () => {
    await svc.secrets.createSecret({ name: "api_key", value: VALUE }, token);
    expect((await svc.secrets.accessSecret({ name: "api_key" }, token)).value).toBe(VALUE);
    await svc.secrets.getSecret({ name: "missing_one" }, token).catch(() => undefined);
    await svc.secrets.accessSecret({ name: "api_key" }, token); // strict: its event is in every sink when it answers
    const fromFile = await readFile(path.join(dir, "audit.jsonl"), "utf8");
    for (const text of [fromFile, received]) {
      expect(text).not.toContain(VALUE);
      const lines = text.split("\n").filter(Boolean).map((l) => JSON.parse(l) as Line);
      expect(lines.map((l) => [l.action, l.outcome])).toEqual([
        ["CreateSecret", "OK"],
        ["AccessSecret", "OK"],
        ["GetSecret", "NOT_FOUND"],
        ["AccessSecret", "OK"],
      ]);
      expect(lines.map((l) => l.writer_sequence)).toEqual([1, 2, 3, 4]);
      for (let i = 1; i < lines.length; i++) expect(lines[i]?.prev_hash).toBe(lines[i - 1]?.hash);
    }
    expect(received).toBe(fromFile);
  });

  it("holds a value read back while the socket's reader is down, and answers once it is back", async () => {
    await stopListening();
    const read = svc.secrets.accessSecret({ name: "api_key" }, token);
    expect(await isPending(read, 500)).toBe(true);
    await listen();
    expect((await read).value).toBe(VALUE);
    expect(received).toContain('"action":"AccessSecret"');
  });
});
