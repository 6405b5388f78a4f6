import { createServer, type Server } from "node:http";
import type { Registry } from "prom-client";

/**
 * The operator's HTTP side port (SECRETS_METRICS_ADDR): Prometheus text on
 * /metrics, liveness on /healthz, readiness on /readyz (the database answers and
 * its migrations are applied). It serves nothing else and never a secret.
 */
export interface MetricsHttp {
  readonly port: number;
  close(): Promise<void>;
}

export async function startMetricsHttp(
  address: string,
  deps: { registry: Registry; ready: () => Promise<boolean> },
): Promise<MetricsHttp> {
  const i = address.lastIndexOf(":");
  const host = address.slice(0, i).replace(/^\[|\]$/g, "");
  const port = Number(address.slice(i + 1));
  const server: Server = createServer((req, res) => {
    const path = (req.url ?? "/").split("?")[0];
    const send = (status: number, body: string, type = "text/plain; charset=utf-8") => {
      res.writeHead(status, { "content-type": type, "cache-control": "no-store" });
      res.end(body);
    };
    if (req.method !== "GET") return send(405, "method not allowed\n");
    if (path === "/healthz") return send(200, "ok\n");
    if (path === "/readyz") {
      deps.ready().then(
        (ok) => send(ok ? 200 : 503, ok ? "ready\n" : "not ready\n"),
        () => send(503, "not ready\n"),
      );
      return;
    }
    if (path === "/metrics") {
      deps.registry.metrics().then(
        (text) => send(200, text, deps.registry.contentType),
        () => send(500, "metrics unavailable\n"),
      );
      return;
    }
    send(404, "not found\n");
  });
  await new Promise<void>((resolve, reject) => {
    server.once("error", reject);
    server.listen(port, host, resolve);
  });
  const addr = server.address();
  return {
    port: typeof addr === "object" && addr ? addr.port : port,
    close: () => new Promise<void>((resolve) => server.close(() => resolve())),
  };
}
