import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../api/gen/grpc/health/v1/health_pb.js";
import { AppError } from "../api/errors.js";
import type { ServiceImpl } from "./grpc-adapter.js";

export { ServingStatus };

/**
 * grpc.health.v1.Health (Check, List, Watch) over the generated descriptor, so
 * that what is served is exactly what reflection describes. "" is the server as a
 * whole; each served service has its own entry.
 */
export interface HealthStatus {
  set(service: string, status: ServingStatus): void;
  /** Every known service at once (used on shutdown: NOT_SERVING). */
  setAll(status: ServingStatus): void;
  /** Ends every Watch stream after it has sent the latest status, so shutdown need not wait for them. */
  close(): void;
  readonly impl: ServiceImpl<typeof Health>;
}

export function createHealthStatus(services: readonly string[]): HealthStatus {
  const statuses = new Map<string, ServingStatus>([["", ServingStatus.SERVING]]);
  for (const s of services) statuses.set(s, ServingStatus.SERVING);
  /** Each open Watch stream's check: sends its service's status if it changed, or ends the stream once closed. */
  const watchers = new Set<() => void>();
  let closed = false;
  const wake = () => {
    for (const w of [...watchers]) w();
  };

  const set = (service: string, status: ServingStatus) => {
    if (statuses.get(service) === status) return;
    statuses.set(service, status);
    wake();
  };
  const current = (service: string) => statuses.get(service) ?? ServingStatus.SERVICE_UNKNOWN;

  return {
    set,
    setAll(status) {
      for (const service of [...statuses.keys()]) set(service, status);
    },
    close() {
      closed = true;
      wake();
    },
    impl: {
      async check(req) {
        const status = statuses.get(req.service);
        if (status === undefined) throw new AppError("SERVICE_UNKNOWN", "unknown service", { service: req.service });
        return { status };
      },
      async list() {
        return { statuses: Object.fromEntries([...statuses].map(([name, status]) => [name, { status }])) };
      },
      watch(req, _ctx, stream) {
        let last = current(req.service);
        stream.send({ status: last });
        const watcher = () => {
          const now = current(req.service);
          if (now !== last) {
            last = now;
            stream.send({ status: now });
          }
          if (closed) {
            watchers.delete(watcher);
            stream.end();
          }
        };
        if (closed) return stream.end();
        watchers.add(watcher);
        stream.onCancel(() => watchers.delete(watcher));
      },
    },
  };
}
