/**
 * AuditService over real gRPC: the handlers translate proto ↔ domain (int64 ids,
 * Timestamps) and errors arrive as statuses with ErrorInfo. Served by a minimal
 * server with the project's call interceptor and a fake token verifier.
 */
import * as grpc from "@grpc/grpc-js";
import { timestampFromDate } from "@bufbuild/protobuf/wkt";
import { pino } from "pino";
import { afterAll, beforeAll, describe, expect, it } from "vitest";

import type { Principal, Scope } from "../../../src/auth/principal.js";
import type { TokenVerifier } from "../../../src/auth/token-verifier.js";
import { AppError } from "../../../src/api/errors.js";
import { AuditService as AuditServiceDesc } from "../../../src/api/gen/secrets/v1/audit_pb.js";
import { createAuditLog } from "../../../src/audit/audit-log.js";
import { createAuditService } from "../../../src/audit/audit-service.js";
import { auditHandlers } from "../../../src/server/handlers/audit-handlers.js";
import { createCallInterceptor } from "../../../src/server/interceptors/call-interceptor.js";
import { callStateOf } from "../../../src/server/interceptors/call-state.js";
import { serviceDefinition, serviceHandlers } from "../../../src/server/grpc-adapter.js";
import { toStatus } from "../../../src/server/status.js";
import { listWriterEvents } from "../../../src/store/audit-store.js";
import { createTestClient, expectCallError, type TestClient } from "../../support/grpc-client.js";
import { createTestDb, testDatabaseKind, type TestDb } from "../../support/test-db.js";
import { auditEvent, newId } from "../../audit/audit-support.js";

const T0 = Date.parse("2030-04-01T00:00:00.000Z");

describe(`AuditService over gRPC on ${testDatabaseKind()}`, () => {
  let t: TestDb;
  let server: grpc.Server;
  let client: TestClient<typeof AuditServiceDesc>;
  const alice = newId("alice");
  const bob = newId("bob");
  const writerId = newId("w");
  const tokens = new Map<string, Principal>();

  const token = (developerId: string, scopes: Scope[]): string => {
    const value = newId("token");
    tokens.set(value, { developerId, scopes: new Set(scopes), allowlist: null, tokenId: undefined, expiresAt: Date.now() / 1000 + 600 });
    return value;
  };

  beforeAll(async () => {
    t = await createTestDb();
    const log = createAuditLog({ db: t.db, writerId });
    for (let i = 0; i < 4; i++) {
      await log.record(
        auditEvent({
          developerId: alice,
          time: new Date(T0 + i * 1000 + 123),
          callerTokenId: `jti-${i}`,
          callerIdentity: "spiffe://cluster/runner",
          action: i % 2 === 0 ? "AccessSecret" : "UpdateSecret",
          secretName: "api_key",
          version: i + 1,
          outcome: i === 3 ? "ABORTED" : "OK",
        }),
      );
    }
    await log.record(auditEvent({ developerId: bob, time: new Date(T0) }));
    await log.close();

    const verifier: TokenVerifier = {
      verify: async (value) => {
        const p = tokens.get(value);
        if (!p) throw new AppError("TOKEN_INVALID", "invalid token");
        return p;
      },
    };
    server = new grpc.Server({
      interceptors: [
        createCallInterceptor({ verifier, log: pino({ level: "silent" }), protectedPrefixes: [`/${AuditServiceDesc.typeName}/`] }),
      ],
    });
    server.addService(
      serviceDefinition(AuditServiceDesc),
      serviceHandlers(AuditServiceDesc, auditHandlers(createAuditService({ db: t.db })), (error, ctx) =>
        toStatus(error, callStateOf(ctx.metadata).requestId),
      ),
    );
    const port = await new Promise<number>((resolve, reject) =>
      server.bindAsync("127.0.0.1:0", grpc.ServerCredentials.createInsecure(), (e, p) => (e ? reject(e) : resolve(p))),
    );
    client = createTestClient(AuditServiceDesc, `127.0.0.1:${port}`);
  });
  afterAll(async () => {
    client?.close();
    await new Promise<void>((resolve) => (server ? server.tryShutdown(() => resolve()) : resolve()));
    await t?.cleanup();
  });

  it("returns every field of the stored events, newest first", async () => {
    const res = await client.listAuditEvents({}, token(alice, ["secrets:read"]));
    const stored = (await listWriterEvents(t.db, writerId, 0, 10)).filter((r) => r.developerId === alice).reverse();
    expect(res.events).toHaveLength(4);
    expect(res.nextPageToken).toBe("");
    res.events.forEach((e, i) => {
      const r = stored[i];
      if (!r) throw new Error("missing row");
      expect(e.id).toBe(BigInt(r.id));
      expect(e.time).toEqual(timestampFromDate(r.time));
      expect(e.time?.nanos).toBe(123_000_000);
      expect({
        developerId: e.developerId,
        callerSubject: e.callerSubject,
        callerTokenId: e.callerTokenId,
        callerIdentity: e.callerIdentity,
        action: e.action,
        secretName: e.secretName,
        version: e.version,
        outcome: e.outcome,
        requestId: e.requestId,
        peer: e.peer,
        writerId: e.writerId,
        writerSequence: e.writerSequence,
        hash: e.hash,
      }).toEqual({
        developerId: r.developerId,
        callerSubject: r.callerSubject,
        callerTokenId: r.callerTokenId,
        callerIdentity: r.callerIdentity,
        action: r.action,
        secretName: r.secretName,
        version: r.version,
        outcome: r.outcome,
        requestId: r.requestId,
        peer: r.peer,
        writerId: r.writerId,
        writerSequence: BigInt(r.writerSequence),
        hash: r.hash,
      });
    });
  });

  it("passes filters, Timestamps and paging through", async () => {
    const tok = token(alice, ["secrets:read"]);
    const first = await client.listAuditEvents(
      {
        startTime: timestampFromDate(new Date(T0 + 1000)),
        endTime: timestampFromDate(new Date(T0 + 3000)),
        pageSize: 1,
      },
      tok,
    );
    expect(first.events.map((e) => e.version)).toEqual([3]);
    const second = await client.listAuditEvents(
      {
        startTime: timestampFromDate(new Date(T0 + 1000)),
        endTime: timestampFromDate(new Date(T0 + 3000)),
        pageSize: 1,
        pageToken: first.nextPageToken,
      },
      tok,
    );
    expect(second.events.map((e) => e.version)).toEqual([2]);
    expect(second.nextPageToken).toBe("");
    const aborted = await client.listAuditEvents({ action: "UpdateSecret", outcome: "ABORTED", secretName: "api_key" }, tok);
    expect(aborted.events.map((e) => e.version)).toEqual([4]);
  });

  it("lets an operator read another developer's events by developer_id", async () => {
    const res = await client.listAuditEvents({ developerId: bob }, token(newId("ops"), ["secrets:operator"]));
    expect(res.events.map((e) => e.developerId)).toEqual([bob]);
  });

  it("answers PERMISSION_DENIED / SCOPE_MISSING for another developer's events without operator", async () => {
    const e = await expectCallError(() => client.listAuditEvents({ developerId: bob }, token(alice, ["secrets:read"])));
    expect(e.code).toBe(grpc.status.PERMISSION_DENIED);
    expect(e.reason).toBe("SCOPE_MISSING");
  });

  it("answers INVALID_ARGUMENT with the reason and field for bad filters", async () => {
    const tok = token(alice, ["secrets:read"]);
    const cases: [Parameters<typeof client.listAuditEvents>[0], string, string][] = [
      [{ pageSize: -5 }, "INVALID_PAGE_SIZE", "page_size"],
      [{ secretName: "bad-name" }, "INVALID_NAME", "secret_name"],
      [{ outcome: "Nope" }, "INVALID_ARGUMENT", "outcome"],
      [{ pageToken: "%%%" }, "INVALID_PAGE_TOKEN", "page_token"],
      [{ startTime: { seconds: 400_000_000_000n, nanos: 0 } }, "INVALID_ARGUMENT", "start_time"],
    ];
    for (const [request, reason, field] of cases) {
      const e = await expectCallError(() => client.listAuditEvents(request, tok));
      expect(e.code).toBe(grpc.status.INVALID_ARGUMENT);
      expect(e.reason).toBe(reason);
      expect(e.errorInfo?.metadata["field"]).toBe(field);
    }
  });

  it("answers UNAUTHENTICATED without a token", async () => {
    const e = await expectCallError(() => client.listAuditEvents({}));
    expect(e.code).toBe(grpc.status.UNAUTHENTICATED);
  });
});
