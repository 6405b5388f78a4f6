import { mkdtempSync, rmSync } from "node:fs";
import { createServer, type Socket } from "node:net";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { describe, expect, it } from "vitest";
import { openSinks, parseSinkSpecs } from "../../src/audit/audit-sink.js";
import { auditObserver, createMetrics, type Metrics } from "../../src/observability/metrics.js";

/** What a scrape reads for `name` with exactly these labels; undefined when there is no such series. */
async function reading(metrics: Metrics, name: string, labels: Record<string, string> = {}): Promise<number | undefined> {
  const metric = (await metrics.registry.getMetricsAsJSON()).find((m) => m.name === name);
  const wanted = Object.entries(labels);
  const series = metric?.values.find((v) => Object.keys(v.labels).length === wanted.length && wanted.every(([k, x]) => v.labels[k] === x));
  return series?.value;
}

describe("metrics", () => {
  it("secrets_key_provider_up reads the providers' health at each scrape: 1 when usable, 0 when not", async () => {
    let up = true;
    const metrics = createMetrics({ keyProviderUp: async () => up });
    expect(await metrics.registry.metrics()).toMatch(/^secrets_key_provider_up 1$/m);
    up = false;
    expect(await metrics.registry.metrics()).toMatch(/^secrets_key_provider_up 0$/m);
  });

  it("secrets_audit_sink_up reads each sink at each scrape: 0 while a socket sink has no reader, 1 once it has", async () => {
    const dir = mkdtempSync(join(tmpdir(), "metrics-sink-"));
    const socketPath = join(dir, "sink.sock");
    const sinks = openSinks(parseSinkSpecs(`unix:${socketPath}`), { reconnectInitialMs: 5, reconnectMaxMs: 20 });
    const metrics = createMetrics({ auditSinks: () => sinks });
    const sink = { sink: `unix:${socketPath}` };
    const connections = new Set<Socket>();
    const server = createServer((c) => {
      connections.add(c);
      c.resume();
    });
    try {
      // Nobody listens: the connection made at open fails.
      await expect.poll(() => reading(metrics, "secrets_audit_sink_up", sink)).toBe(0);
      await new Promise<void>((resolve) => server.listen(socketPath, resolve));
      await expect.poll(() => reading(metrics, "secrets_audit_sink_up", sink)).toBe(1);
      // The reader goes away: down again.
      for (const c of connections) c.destroy();
      await new Promise((resolve) => server.close(resolve));
      await expect.poll(() => reading(metrics, "secrets_audit_sink_up", sink)).toBe(0);
    } finally {
      for (const s of sinks) await s.close();
      if (server.listening) await new Promise((resolve) => server.close(resolve));
      rmSync(dir, { recursive: true, force: true });
    }
  });

  it("secrets_audit_sink_up has no series when no sink is configured", async () => {
    const metrics = createMetrics({ auditSinks: () => [] });
    expect(await metrics.registry.metrics()).not.toMatch(/^secrets_audit_sink_up/m);
  });

  it("counts the audit partition job's runs by result, and the partitions and events its runs dropped", async () => {
    const metrics = createMetrics();
    const audit = auditObserver(metrics);
    const runs = (result: string) => reading(metrics, "secrets_audit_retention_runs_total", { result });
    // Every result is there from the start, so that increase() sees a first failure.
    for (const result of ["ok", "failed", "export_failed", "skipped"]) expect(await runs(result)).toBe(0);

    audit.retentionRan({ ran: true, dropped: [{ events: 10 }, { events: 0 }] });
    audit.retentionRan({ ran: true, dropped: [] });
    audit.retentionRan({ ran: false, dropped: [] });
    // The export of the third partition failed after two older ones were exported and dropped.
    audit.retentionRan({ ran: true, dropped: [{ events: 4 }, { events: 1 }], exportFailed: { partition: "audit_log_20261201", error: new Error("ENOSPC") } });
    audit.retentionFailed();

    expect(await runs("ok")).toBe(2);
    expect(await runs("skipped")).toBe(1);
    expect(await runs("export_failed")).toBe(1);
    expect(await runs("failed")).toBe(1);
    expect(await reading(metrics, "secrets_audit_partitions_dropped_total")).toBe(4);
    expect(await reading(metrics, "secrets_audit_events_dropped_total")).toBe(15);
  });

  it("counts failed audit batch writes", async () => {
    const metrics = createMetrics();
    const audit = auditObserver(metrics);
    expect(await reading(metrics, "secrets_audit_write_failures_total")).toBe(0);
    audit.writeFailed();
    audit.writeFailed();
    expect(await reading(metrics, "secrets_audit_write_failures_total")).toBe(2);
  });
});
