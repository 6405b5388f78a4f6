import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { expectCallError, startTestService, type TestClient, type TestService } from "../support/fixtures.js";

// The operator's HTTP port: Prometheus metrics, liveness and readiness.

let svc: TestService;
let client: TestClient<typeof SecretService>;
let base: string;

beforeAll(async () => {
  svc = await startTestService({ SECRETS_METRICS_ADDR: "127.0.0.1:0" });
  client = svc.secrets;
  base = `http://127.0.0.1:${svc.service.metricsPort}`;
});

afterAll(async () => {
  await svc?.stop();
});

function sample(text: string, name: string, labels = ""): number | undefined {
  const escaped = `${name}${labels}`.replace(/[{}()[\]|.*+?^$\\]/g, "\\$&");
  const m = text.match(new RegExp(`^${escaped} ([0-9.e+-]+)$`, "m"));
  return m ? Number(m[1]) : undefined;
}

describe("metrics and probes", () => {
  it("/healthz and /readyz answer 200; other paths and methods are refused", async () => {
    expect((await fetch(`${base}/healthz`)).status).toBe(200);
    const ready = await fetch(`${base}/readyz`);
    expect(ready.status).toBe(200);
    expect(await ready.text()).toBe("ready\n");
    expect((await fetch(`${base}/secrets`)).status).toBe(404);
    expect((await fetch(`${base}/metrics`, { method: "POST" })).status).toBe(405);
  });

  it("counts calls by method and status, latency, cache lookups, DEKs in memory, pool, audit queue and key jobs", async () => {
    const token = await svc.token("metrics-dev");
    await client.createSecret({ name: "measured", value: "metrics-value" }, token);
    for (let i = 0; i < 3; i++) await client.accessSecret({ name: "measured" }, token);
    await expectCallError(() => client.accessSecret({ name: "unknown_one" }, token));
    const text = await (await fetch(`${base}/metrics`)).text();

    expect(sample(text, "secrets_grpc_calls_total", '{method="/secrets.v1.SecretService/AccessSecret",code="OK"}')).toBe(3);
    expect(sample(text, "secrets_grpc_calls_total", '{method="/secrets.v1.SecretService/AccessSecret",code="NOT_FOUND"}')).toBe(1);
    expect(sample(text, "secrets_grpc_call_duration_seconds_count", '{method="/secrets.v1.SecretService/AccessSecret"}')).toBe(4);
    if (svc.db.kind === "pglite") {
      // The embedded database runs the in-process cache: the first access misses, the next two hit.
      expect(sample(text, "secrets_cache_lookups_total", '{result="hit"}')).toBeGreaterThanOrEqual(2);
      expect(sample(text, "secrets_cache_lookups_total", '{result="miss"}')).toBeGreaterThanOrEqual(1);
    } else {
      // Postgres without Redis: no value cache, so no lookups are counted.
      expect(sample(text, "secrets_cache_lookups_total", '{result="hit"}')).toBeUndefined();
    }
    expect(sample(text, "secrets_dek_cache_entries")).toBe(1);
    expect(sample(text, "secrets_db_pool_connections", '{state="total"}')).toBeGreaterThanOrEqual(1);
    expect(sample(text, "secrets_audit_queue_depth")).toBeGreaterThanOrEqual(0);
    expect(sample(text, "secrets_key_jobs_pending", '{job="rewrap"}')).toBe(0);
    expect(sample(text, "secrets_key_jobs_pending", '{job="reencrypt"}')).toBe(0);
    expect(sample(text, "secrets_key_provider_up")).toBe(1);
    expect(sample(text, "process_cpu_seconds_total")).toBeGreaterThan(0);
    expect(text).not.toContain("metrics-value");
  });
});
