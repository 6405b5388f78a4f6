import { mkdtempSync, rmSync } from "node:fs";
import { createServer } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { createAuditLog } from "../../src/audit/audit-log.js";
import { listAuditPartitions } from "../../src/store/audit-store.js";
import { auditEvent, failingDb, newId } from "../audit/audit-support.js";
import { expectCallError, startTestService, type TestClient, type TestService } from "../support/fixtures.js";
import { createTestDb, type TestDb } from "../support/test-db.js";

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
    expect(sample(text, "secrets_audit_write_failures_total")).toBe(0);
    expect(text).not.toMatch(/^secrets_audit_sink_up/m); // no sink configured
    expect(sample(text, "secrets_key_jobs_pending", '{job="rewrap"}')).toBe(0);
    expect(sample(text, "secrets_key_jobs_pending", '{job="reencrypt"}')).toBe(0);
    expect(sample(text, "secrets_key_provider_up")).toBe(1);
    expect(sample(text, "process_cpu_seconds_total")).toBeGreaterThan(0);
    expect(text).not.toContain("metrics-value");
  });
});

describe("audit trail metrics", () => {
  const DAY = 86_400_000;
  const OLD_EVENTS = 3;
  let t: TestDb;
  let audit: TestService;
  let auditDb: ReturnType<typeof failingDb>;
  let partitionsPastRetention: number;
  let dir: string;
  let socketPath: string;
  const reader = createServer((c) => c.resume());
  const scrape = async () => (await fetch(`http://127.0.0.1:${audit.service.metricsPort}/metrics`)).text();

  beforeAll(async () => {
    t = await createTestDb();
    // Events ten days old, in a partition of their own, for the retention run at start-up to drop.
    const old = createAuditLog({ db: t.db, writerId: newId("old"), intervalMs: 5 });
    for (let i = 0; i < OLD_EVENTS; i++) await old.record(auditEvent({ developerId: newId("dev"), time: new Date(Date.now() - 10 * DAY) }));
    await old.close();
    partitionsPastRetention = (await listAuditPartitions(t.db)).filter((p) => p.end <= Date.now() - DAY).length;
    dir = mkdtempSync(join(tmpdir(), "metrics-"));
    socketPath = join(dir, "sink.sock");
    // Audit writes fail until the test releases them; nobody reads the sink's socket yet.
    auditDb = failingDb(t.db);
    audit = await startTestService(
      { SECRETS_METRICS_ADDR: "127.0.0.1:0", SECRETS_AUDIT_RETENTION_DAYS: "1", SECRETS_AUDIT_SINKS: `unix:${socketPath}` },
      { database: { db: auditDb.db, url: t.url ?? "" } },
    );
  });

  afterAll(async () => {
    auditDb?.release();
    await audit?.stop();
    if (reader.listening) await new Promise((resolve) => reader.close(resolve));
    await t?.cleanup();
    if (dir) rmSync(dir, { recursive: true, force: true });
  });

  it("counts the retention run at start-up and the partitions and events it dropped", async () => {
    await expect.poll(async () => sample(await scrape(), "secrets_audit_retention_runs_total", '{result="ok"}'), { timeout: 10_000 }).toBe(1);
    const text = await scrape();
    for (const result of ["failed", "export_failed", "skipped"]) expect(sample(text, "secrets_audit_retention_runs_total", `{result="${result}"}`)).toBe(0);
    expect(partitionsPastRetention).toBeGreaterThanOrEqual(1);
    expect(sample(text, "secrets_audit_partitions_dropped_total")).toBe(partitionsPastRetention);
    expect(sample(text, "secrets_audit_events_dropped_total")).toBe(OLD_EVENTS);
  });

  it("reads the sink down while its socket has no reader, and up once it has", async () => {
    const sink = `{sink="unix:${socketPath}"}`;
    await expect.poll(async () => sample(await scrape(), "secrets_audit_sink_up", sink)).toBe(0);
    await new Promise<void>((resolve) => reader.listen(socketPath, resolve));
    // The sink reconnects with backoff (50 ms doubling).
    await expect.poll(async () => sample(await scrape(), "secrets_audit_sink_up", sink), { timeout: 10_000 }).toBe(1);
  });

  it("counts each failed attempt to write a batch until the database takes it", async () => {
    expect(sample(await scrape(), "secrets_audit_write_failures_total")).toBe(0);
    const token = await audit.token(newId("dev"));
    // Answered: the event waits in the queue while the database refuses it.
    await audit.secrets.createSecret({ name: "audited", value: "audit-metrics-value" }, token);
    await expect.poll(async () => sample(await scrape(), "secrets_audit_write_failures_total"), { timeout: 10_000 }).toBeGreaterThanOrEqual(2);
    expect(sample(await scrape(), "secrets_audit_queue_depth")).toBe(1);
    auditDb.release();
    await expect.poll(async () => sample(await scrape(), "secrets_audit_queue_depth"), { timeout: 10_000 }).toBe(0);
    const failures = sample(await scrape(), "secrets_audit_write_failures_total");
    expect(failures).toBeGreaterThanOrEqual(2);
    // Written: no more failures are counted.
    await audit.secrets.createSecret({ name: "audited_too", value: "audit-metrics-value" }, token);
    await expect.poll(async () => sample(await scrape(), "secrets_audit_queue_depth")).toBe(0);
    expect(sample(await scrape(), "secrets_audit_write_failures_total")).toBe(failures);
  });
});
