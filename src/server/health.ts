import { EventEmitter, on } from "node:events";
import { Health, HealthCheckResponse_ServingStatus as ServingStatus } from "../gen/grpc/health/v1/health_pb.js";
import { AppError } from "../errors.js";
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
  readonly impl: ServiceImpl<typeof Health>;
}

export function createHealthStatus(services: readonly string[]): HealthStatus {
  const statuses = new Map<string, ServingStatus>([["", ServingStatus.SERVING]]);
  for (const s of services) statuses.set(s, ServingStatus.SERVING);
  const changes = new EventEmitter();
  changes.setMaxListeners(0);

  const set = (service: string, status: ServingStatus) => {
    if (statuses.get(service) === status) return;
    statuses.set(service, status);
    changes.emit(service, status);
  };

  return {
    set,
    setAll(status) {
      for (const service of [...statuses.keys()]) set(service, status);
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
      async *watch(req, ctx) {
        yield { status: statuses.get(req.service) ?? ServingStatus.SERVICE_UNKNOWN };
        try {
          for await (const [status] of on(changes, req.service, { signal: ctx.signal })) {
            yield { status: status as ServingStatus };
          }
        } catch (e) {
          if (!ctx.signal.aborted) throw e;
        }
      },
    },
  };
}
