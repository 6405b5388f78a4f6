/**
 * The call interceptor's audit rule over real gRPC: an audited call's event is
 * queued before its result leaves, and a call whose event cannot be queued ends
 * UNAVAILABLE / AUDIT_UNAVAILABLE without its result; what the event is about comes
 * from the audit policy, applied to the request even when the handler fails or never
 * runs. Served by a minimal server with trivial SecretService handlers (which, like
 * the real ones, say nothing about auditing), a fake token verifier and a fake audit
 * log whose answers each test sets (the interceptor is what is under test).
 */
import * as grpc from "@grpc/grpc-js";
import { create, fromBinary, toBinary, type MessageShape } from "@bufbuild/protobuf";
import { pino } from "pino";
import { afterAll, beforeAll, beforeEach, describe, expect, it } from "vitest";

import type { Principal } from "../../../src/auth/principal.js";
import type { TokenVerifier } from "../../../src/auth/token-verifier.js";
import { AppError } from "../../../src/api/errors.js";
import { SecretService as SecretServiceDesc } from "../../../src/api/gen/secrets/v1/secrets_pb.js";
import type { AuditEventInput } from "../../../src/audit/audit-event.js";
import type { AuditLog } from "../../../src/audit/audit-log.js";
import { auditPolicy, type AuditRule } from "../../../src/audit/audit-policy.js";
import { createCallInterceptor } from "../../../src/server/interceptors/call-interceptor.js";
import { callStateOf } from "../../../src/server/interceptors/call-state.js";
import { serviceDefinition, serviceHandlers, type ServiceImpl } from "../../../src/server/grpc-adapter.js";
import { toStatus } from "../../../src/server/status.js";
import { isPending } from "../../audit/audit-support.js";
import { createTestClient, expectCallError, type TestClient } from "../../support/grpc-client.js";
import { LogCapture } from "../../support/test-service.js";

const VALUE = "interceptor-test-value-7c41";
const TOKEN = "interceptor-test-token-2b9e";
const DEVELOPER = "audited-dev";
const pathOf = (name: string) => `/${SecretServiceDesc.typeName}/${name}`;
const ACCESS_PATH = pathOf(SecretServiceDesc.method.accessSecret.name);

/** What the fake audit log answers; each test sets its own. */
interface Answers {
  tryRecord: "queued" | "full" | "throw";
  record: "resolve" | "reject" | "hold";
  recordDurable: "resolve" | "reject";
}

/** An AuditLog that records what it was given and answers as `answers` says. */
function fakeAuditLog() {
  const answers: Answers = { tryRecord: "queued", record: "resolve", recordDurable: "resolve" };
  const queued: AuditEventInput[] = [];
  const calls = { tryRecord: 0, record: 0, recordDurable: 0 };
  let held: (() => void) | undefined;
  let closed = false;
  const refused = () => new Error("audit log is closed");
  const log: AuditLog = {
    tryRecord(e) {
      calls.tryRecord += 1;
      if (answers.tryRecord === "throw") throw refused();
      if (answers.tryRecord === "full") return false;
      queued.push(e);
      return true;
    },
    record(e) {
      calls.record += 1;
      if (answers.record === "reject") return Promise.reject(refused());
      if (answers.record === "hold") {
        return new Promise<void>((resolve) => {
          held = () => {
            queued.push(e);
            resolve();
          };
        });
      }
      queued.push(e);
      return Promise.resolve();
    },
    recordDurable(e) {
      calls.recordDurable += 1;
      if (answers.recordDurable === "reject") return Promise.reject(refused());
      queued.push(e);
      return Promise.resolve();
    },
    flush: () => Promise.resolve(),
    close: () => {
      closed = true;
      return Promise.resolve();
    },
    get closed() {
      return closed;
    },
    get down() {
      return undefined;
    },
    get queueDepth() {
      return 0;
    },
  };
  return {
    log,
    answers,
    queued,
    calls,
    /** Lets a held record() through. */
    release: () => held?.(),
  };
}

describe("call interceptor: audit before the result", () => {
  let server: grpc.Server;
  let client: TestClient<typeof SecretServiceDesc>;
  let logs: LogCapture;
  /** The authorization entries the last AccessSecret handler saw in its call's metadata. */
  let handlerSawAuthorization: unknown[] | undefined;
  const audit = fakeAuditLog();

  beforeAll(async () => {
    logs = new LogCapture();
    const principal: Principal = {
      developerId: DEVELOPER,
      scopes: new Set(["secrets:read", "secrets:access"]),
      allowlist: null,
      tokenId: "jti-1",
      expiresAt: Date.now() / 1000 + 600,
    };
    const verifier: TokenVerifier = {
      verify: async (token) => {
        if (token !== TOKEN) throw new AppError("TOKEN_INVALID", "invalid token");
        return principal;
      },
    };
    const unimplemented = async (): Promise<never> => {
      throw new AppError("NOT_IMPLEMENTED", "not in this test");
    };
    const impl = Object.fromEntries(SecretServiceDesc.methods.map((m) => [m.localName, unimplemented])) as unknown as ServiceImpl<typeof SecretServiceDesc>;
    impl.accessSecret = async (req, ctx) => {
      handlerSawAuthorization = ctx.metadata.get("authorization");
      return { name: req.name, version: 1, value: VALUE };
    };
    impl.resolveSecrets = async (req) => ({ values: Object.fromEntries(req.names.map((n) => [n, VALUE])) });
    impl.getSecret = async () => {
      throw new AppError("SECRET_NOT_FOUND", "secret not found");
    };
    // Fails the way an early validation does, before any work.
    impl.updateSecret = async () => {
      throw new AppError("INVALID_ARGUMENT", "invalid request", { field: "value" });
    };
    // The service's policy, strict mode on, with AccessSecret not waiting for the commit:
    // one server then shows both the queued path (AccessSecret) and the committed one (ResolveSecrets).
    const policy = new Map(auditPolicy);
    const access = policy.get(ACCESS_PATH) as AuditRule;
    policy.set(ACCESS_PATH, { ...access, returnsValues: false });

    server = new grpc.Server({
      interceptors: [
        createCallInterceptor({
          verifier,
          log: pino({ level: "info" }, logs),
          protectedPrefixes: [`/${SecretServiceDesc.typeName}/`],
          audit: { log: audit.log, policy, strict: true },
        }),
      ],
    });
    server.addService(
      serviceDefinition(SecretServiceDesc),
      serviceHandlers(SecretServiceDesc, impl, (error, ctx) => toStatus(error, callStateOf(ctx.metadata).requestId)),
    );
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    client = createTestClient(SecretServiceDesc, `127.0.0.1:${port}`);
  });

  afterAll(async () => {
    audit.release(); // a failed test may leave a call waiting on a held record()
    client?.close();
    await new Promise<void>((resolve) => (server ? server.tryShutdown(() => resolve()) : resolve()));
  });

  beforeEach(() => {
    Object.assign(audit.answers, { tryRecord: "queued", record: "resolve", recordDurable: "resolve" } satisfies Answers);
    audit.queued.length = 0;
    Object.assign(audit.calls, { tryRecord: 0, record: 0, recordDurable: 0 });
    logs.chunks.length = 0;
  });

  /** The refusal every failed-audit case must end in, with no value anywhere in it. */
  function expectRefused(err: Awaited<ReturnType<typeof expectCallError>>): string {
    expect(grpc.status[err.code]).toBe("UNAVAILABLE");
    expect(err.reason).toBe("AUDIT_UNAVAILABLE");
    expect(err.details).not.toContain(VALUE);
    const requestId = err.trailers.get("x-request-id")[0];
    expect(requestId).toMatch(/^[0-9a-f-]{36}$/);
    return requestId as string;
  }

  /** The server's log lines of one call; none holds the value or the token. */
  function linesOf(requestId: string): Record<string, unknown>[] {
    expect(logs.text).not.toContain(VALUE);
    expect(logs.text).not.toContain(TOKEN);
    return logs.lines().filter((l) => l["requestId"] === requestId);
  }

  it("queues a successful call's event once, at once when there is room, and answers", async () => {
    const res = await client.accessSecret({ name: "api_key" }, TOKEN);
    expect(res.value).toBe(VALUE);
    expect(audit.calls).toEqual({ tryRecord: 1, record: 0, recordDurable: 0 });
    expect(audit.queued).toHaveLength(1);
    expect(audit.queued[0]).toMatchObject({ developerId: DEVELOPER, callerSubject: DEVELOPER, action: "AccessSecret", secretName: "api_key", outcome: "OK" });
    // The handler has the principal; the token itself does not stay with the call.
    expect(handlerSawAuthorization).toEqual([]);
  });

  it("holds a successful call's response message until a full queue takes its event (back-pressure)", async () => {
    audit.answers.tryRecord = "full";
    audit.answers.record = "hold";
    // Read as a stream, so the response message is seen when it arrives, not only with the status.
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${TOKEN}`);
    const method = SecretServiceDesc.method.accessSecret;
    const stream = client.raw.makeServerStreamRequest(
      `/${SecretServiceDesc.typeName}/${method.name}`,
      (m: MessageShape<typeof method.input>) => Buffer.from(toBinary(method.input, m)),
      (b: Buffer) => fromBinary(method.output, b),
      create(method.input, { name: "api_key" }),
      metadata,
    );
    const messages: MessageShape<typeof method.output>[] = [];
    stream.on("data", (m: MessageShape<typeof method.output>) => messages.push(m));
    const ended = new Promise<grpc.StatusObject>((resolve) => stream.on("status", resolve));
    stream.on("error", () => {});

    expect(await isPending(ended, 200)).toBe(true);
    expect(messages).toHaveLength(0);
    expect(audit.queued).toHaveLength(0);
    audit.release();
    expect((await ended).code).toBe(grpc.status.OK);
    expect(messages.map((m) => m.value)).toEqual([VALUE]);
    expect(audit.queued.map((e) => e.outcome)).toEqual(["OK"]);
    expect(audit.calls.record).toBe(1);
  });

  it("withholds the result when the event cannot be queued (tryRecord throws)", async () => {
    audit.answers.tryRecord = "throw";
    const requestId = expectRefused(await expectCallError(() => client.accessSecret({ name: "api_key" }, TOKEN)));
    expect(audit.queued).toHaveLength(0);
    const lines = linesOf(requestId);
    expect(lines.find((l) => l["msg"] === "audit event could not be queued; response withheld")?.["level"]).toBe(50);
    expect(lines.find((l) => l["msg"] === "call")?.["code"]).toBe("UNAVAILABLE");
  });

  it("withholds the result when a full queue refuses the event (record rejects)", async () => {
    audit.answers.tryRecord = "full";
    audit.answers.record = "reject";
    const requestId = expectRefused(await expectCallError(() => client.accessSecret({ name: "api_key" }, TOKEN)));
    expect(linesOf(requestId).some((l) => l["msg"] === "audit event could not be queued; response withheld")).toBe(true);
  });

  it("records a failed call with its outcome, and answers its own status", async () => {
    const err = await expectCallError(() => client.getSecret({ name: "missing" }, TOKEN));
    expect(grpc.status[err.code]).toBe("NOT_FOUND");
    expect(audit.queued.map((e) => [e.action, e.secretName, e.outcome])).toEqual([["GetSecret", "missing", "NOT_FOUND"]]);
  });

  it("records what a call that fails validation early is about, from its request", async () => {
    const err = await expectCallError(() => client.updateSecret({ name: "api_key", value: "x", expectedVersion: 3 }, TOKEN));
    expect(grpc.status[err.code]).toBe("INVALID_ARGUMENT");
    expect(audit.queued.map((e) => [e.action, e.secretName, e.version, e.outcome])).toEqual([["UpdateSecret", "api_key", 3, "INVALID_ARGUMENT"]]);
  });

  it("records a request that does not decode with no subject, in the caller's trail", async () => {
    const metadata = new grpc.Metadata();
    metadata.set("authorization", `Bearer ${TOKEN}`);
    const code = await new Promise<grpc.status>((resolve) => {
      // 0xff 0xff 0xff: a field key whose varint never ends.
      client.raw.makeUnaryRequest(pathOf("ResolveSecrets"), (b: Buffer) => b, (b: Buffer) => b, Buffer.from([0xff, 0xff, 0xff]), metadata, (err) =>
        resolve(err ? err.code : grpc.status.OK),
      );
    });
    expect(grpc.status[code]).toBe("INVALID_ARGUMENT");
    expect(audit.queued).toHaveLength(1);
    expect(audit.queued[0]).toMatchObject({ developerId: DEVELOPER, action: "ResolveSecrets", secretName: "", version: 0, outcome: "INVALID_ARGUMENT" });
  });

  it("records a name that breaks the naming rule as its length and hash, never the name", async () => {
    const pasted = `${VALUE} trailing words`;
    await expectCallError(() => client.getSecret({ name: pasted }, TOKEN));
    expect(audit.queued).toHaveLength(1);
    expect(audit.queued[0]?.secretName).toMatch(new RegExp(`^<invalid:length=${pasted.length}:sha256=[0-9a-f]{12}>$`));
    expect(JSON.stringify(audit.queued)).not.toContain(VALUE);
  });

  it("replaces a failed call's status with AUDIT_UNAVAILABLE when its event cannot be queued, logging the original code", async () => {
    for (const answers of [{ tryRecord: "throw" }, { tryRecord: "full", record: "reject" }] as const) {
      Object.assign(audit.answers, answers);
      const err = await expectCallError(() => client.getSecret({ name: "missing" }, TOKEN));
      const requestId = expectRefused(err);
      expect(err.reason).not.toBe("SECRET_NOT_FOUND");
      const lines = linesOf(requestId);
      const refusal = lines.find((l) => l["msg"] === "audit event could not be queued; status replaced");
      expect(refusal).toMatchObject({ level: 50, code: "NOT_FOUND", method: "/secrets.v1.SecretService/GetSecret" });
      expect(lines.find((l) => l["msg"] === "call")?.["code"]).toBe("UNAVAILABLE");
    }
  });

  it("strict paths answer once the event is committed, and are refused when it cannot be", async () => {
    const ok = await client.resolveSecrets({ names: ["api_key"] }, TOKEN);
    expect(ok.values["api_key"]).toBe(VALUE);
    expect(audit.calls).toEqual({ tryRecord: 0, record: 0, recordDurable: 1 });

    audit.answers.recordDurable = "reject";
    const requestId = expectRefused(await expectCallError(() => client.resolveSecrets({ names: ["api_key"] }, TOKEN)));
    expect(linesOf(requestId).some((l) => l["msg"] === "audit event could not be committed; response withheld")).toBe(true);
  });

  it("an unauthenticated call has no event to queue and stays UNAUTHENTICATED", async () => {
    audit.answers.tryRecord = "throw";
    const err = await expectCallError(() => client.accessSecret({ name: "api_key" }, "not-the-token"));
    expect(grpc.status[err.code]).toBe("UNAUTHENTICATED");
    expect(audit.calls).toEqual({ tryRecord: 0, record: 0, recordDurable: 0 });
  });
});
