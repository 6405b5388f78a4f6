import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import * as grpc from "@grpc/grpc-js";
import { create } from "@bufbuild/protobuf";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { Health, HealthCheckRequestSchema, HealthCheckResponse_ServingStatus as Serving } from "../../src/api/gen/grpc/health/v1/health_pb.js";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { serviceDefinition } from "../../src/server/grpc-adapter.js";
import { expectCallError, PROJECT_ROOT, startTestService, type TestClient, type TestService } from "../support/fixtures.js";

// The transport: server streaming (Health.Watch), reflection v1alpha, message size
// limits, and what the log line of a rejected name holds.

const run = promisify(execFile);
let svc: TestService;
let client: TestClient<typeof SecretService>;

beforeAll(async () => {
  svc = await startTestService();
  client = svc.secrets;
});

afterAll(async () => {
  await svc?.stop();
});

describe("transport", () => {
  it("reflection v1alpha lists the services too (older grpcurl)", async () => {
    const { stdout } = await run(join(PROJECT_ROOT, "node_modules", ".bin", "buf"), [
      "curl",
      "--protocol",
      "grpc",
      "--http2-prior-knowledge",
      "--reflect-protocol",
      "grpc-v1alpha",
      "--list-services",
      `http://${svc.address}`,
    ]);
    expect(stdout.split("\n")).toEqual(expect.arrayContaining(["secrets.v1.SecretService", "grpc.health.v1.Health"]));
  });

  it("a message over 8 MiB is RESOURCE_EXHAUSTED and writes nothing", async () => {
    const token = await svc.token("big-dev");
    const err = await expectCallError(() => client.createSecret({ name: "huge", value: "x".repeat(9 * 1024 * 1024) }, token));
    expect(err.code).toBe(grpc.status.RESOURCE_EXHAUSTED);
    expect((await expectCallError(() => client.getSecret({ name: "huge" }, token))).code).toBe(grpc.status.NOT_FOUND);
  });

  it("the log line of a rejected name has its length and a hash, not the name", async () => {
    const token = await svc.token("log-dev");
    const pasted = "sk_live_0123456789abcdef pasted";
    const err = await expectCallError(() => client.getSecret({ name: pasted }, token));
    expect(err.reason).toBe("INVALID_NAME");
    const requestId = err.trailers.get("x-request-id")[0];
    const line = svc.logs.lines().find((l) => l["requestId"] === requestId);
    expect(line?.["rejectedName"]).toMatchObject({ length: pasted.length, sha256: expect.stringMatching(/^[0-9a-f]{12}$/) });
    expect(svc.logs.text).not.toContain("sk_live_0123456789abcdef");
  });

  it("Health.Watch streams the current status and then every change (server streaming)", async () => {
    const Ctor = grpc.makeGenericClientConstructor(serviceDefinition(Health), "Health");
    const raw = new Ctor(svc.address, grpc.credentials.createInsecure()) as unknown as {
      watch(req: unknown): grpc.ClientReadableStream<{ status: Serving }>;
      close(): void;
    };
    const stream = raw.watch(create(HealthCheckRequestSchema, { service: "secrets.v1.SecretService" }));
    const seen: Serving[] = [];
    const twoMessages = new Promise<void>((resolve, reject) => {
      stream.on("data", (m: { status: Serving }) => {
        seen.push(m.status);
        if (seen.length === 1) svc.service.stop().catch(reject); // flips health to NOT_SERVING
        if (seen.length === 2) resolve();
      });
      stream.on("error", (e: grpc.ServiceError) => (seen.length >= 2 ? resolve() : reject(e)));
    });
    const ended = new Promise<void>((resolve) => stream.on("status", () => resolve()));
    await twoMessages;
    expect(seen).toEqual([Serving.SERVING, Serving.NOT_SERVING]);
    // Shutdown ends Watch streams instead of waiting out the grace period for them.
    await ended;
    await svc.service.stop();
    expect(svc.logs.text).not.toContain("forcing shutdown");
    stream.cancel();
    raw.close();
  });
});
