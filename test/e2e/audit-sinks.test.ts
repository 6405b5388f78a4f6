/**
 * A whole service with JSON-lines audit sinks (a file and a Unix socket) in strict
 * mode: every event reaches both, once and in chain order, with no value in them;
 * while the socket's reader is down, a value read is refused at once (AUDIT_UNAVAILABLE)
 * and other calls are served, and value reads answer again once the reader is back.
 * Without strict mode, value reads are served while the sink is down.
 */
import { mkdtemp, readFile, rm } from "node:fs/promises";
import { createServer, type Server, type Socket } from "node:net";
import os from "node:os";
import path from "node:path";

import { afterAll, beforeAll, describe, expect, it } from "vitest";

import * as grpc from "@grpc/grpc-js";

import { expectCallError, startTestService, type TestService } from "../support/fixtures.js";

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

  it("refuses a value read at once while the socket's reader is down, and answers once it is back", async () => {
    await stopListening();
    // The client's deadline is 20 s: a refusal that waited for it would be DEADLINE_EXCEEDED.
    const err = await expectCallError(() => svc.secrets.accessSecret({ name: "api_key" }, token));
    expect(grpc.status[err.code]).toBe("UNAVAILABLE");
    expect(err.reason).toBe("AUDIT_UNAVAILABLE");
    expect(err.details).not.toContain(VALUE);
    // Calls that are not strict go on being served, their events held until the sink is back.
    expect((await svc.secrets.getSecret({ name: "api_key" }, token)).secret?.name).toBe("api_key");
    await listen();
    // The sink reconnects with backoff; reads are refused until it has.
    await expect
      .poll(async () => (await svc.secrets.accessSecret({ name: "api_key" }, token).catch(() => ({ value: "" }))).value, { timeout: 15_000, interval: 100 })
      .toBe(VALUE);
    await expect.poll(() => received.split("\n").filter((l) => l.includes('"action":"GetSecret"')).length, { timeout: 10_000 }).toBe(2);
  });
});

describe("a service with a Unix socket audit sink, not strict", () => {
  let dir: string;
  let svc: TestService;

  beforeAll(async () => {
    dir = await mkdtemp(path.join(os.tmpdir(), "secrets-e2e-sinks-"));
    // Nobody ever listens on the socket.
    svc = await startTestService({ SECRETS_AUDIT_SINKS: `unix:${path.join(dir, "audit.sock")}` });
  });
  afterAll(async () => {
    await svc?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  it("keeps serving value reads while the sink is down", async () => {
    const token = await svc.token("sink-dev", { scopes: ["secrets:access", "secrets:write"] });
    await svc.secrets.createSecret({ name: "api_key", value: VALUE }, token);
    for (let i = 0; i < 3; i++) expect((await svc.secrets.accessSecret({ name: "api_key" }, token)).value).toBe(VALUE);
  });
});
