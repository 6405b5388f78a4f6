/**
 * The status map (src/server/status.ts), the one place an error becomes a gRPC
 * status: each kind's code, the rich details every status carries, and what an
 * internal error is allowed to say.
 */
import * as grpc from "@grpc/grpc-js";
import { fromBinary } from "@bufbuild/protobuf";
import { anyUnpack } from "@bufbuild/protobuf/wkt";
import { describe, expect, it } from "vitest";

import { AppError, ERROR_DOMAIN, integrityFailure, REASONS, type ErrorKind, type Reason } from "../../src/api/errors.js";
import { ErrorInfoSchema, RequestInfoSchema } from "../../src/api/gen/google/rpc/error_details_pb.js";
import { StatusSchema } from "../../src/api/gen/google/rpc/status_pb.js";
import { publicError, statusCodeOf, toStatus } from "../../src/server/status.js";

const REQUEST_ID = "7d3c7a52-5d0e-4f4e-9a51-0c8f7d1e2b3a";

/** The google.rpc.Status in a status's grpc-status-details-bin trailer, with its ErrorInfo and RequestInfo. */
function details(status: grpc.StatusObject) {
  const bin = status.metadata.get("grpc-status-details-bin");
  expect(bin).toHaveLength(1);
  const rich = fromBinary(StatusSchema, bin[0] as Buffer);
  const infos = rich.details.map((a) => anyUnpack(a, ErrorInfoSchema)).filter((x) => x !== undefined);
  const requests = rich.details.map((a) => anyUnpack(a, RequestInfoSchema)).filter((x) => x !== undefined);
  expect(rich.details).toHaveLength(2);
  expect(infos).toHaveLength(1);
  expect(requests).toHaveLength(1);
  return { rich, info: infos[0], requestInfo: requests[0] };
}

describe("status map", () => {
  it("gives each error kind the gRPC status of the same name, for every reason of the catalogue", () => {
    const kinds = new Set<ErrorKind>(Object.values(REASONS));
    expect(kinds.size).toBe(11);
    const codes = new Set<grpc.status>();
    for (const kind of kinds) {
      const code = grpc.status[kind.toUpperCase() as keyof typeof grpc.status];
      expect([kind, statusCodeOf(kind)]).toEqual([kind, code]);
      codes.add(statusCodeOf(kind));
    }
    expect(codes.size).toBe(kinds.size);
    for (const [reason, kind] of Object.entries(REASONS)) {
      expect([reason, toStatus(new AppError(reason as Reason, "m"), REQUEST_ID).code]).toEqual([reason, statusCodeOf(kind)]);
    }
  });

  it("sends an AppError's message, reason, metadata and the request id", () => {
    const status = toStatus(new AppError("SECRET_NOT_FOUND", "secret not found", { names: "a,b" }), REQUEST_ID);
    expect(status.code).toBe(grpc.status.NOT_FOUND);
    expect(status.details).toBe("secret not found");
    const { rich, info, requestInfo } = details(status);
    expect(rich.code).toBe(grpc.status.NOT_FOUND);
    expect(rich.message).toBe("secret not found");
    expect(info).toMatchObject({ reason: "SECRET_NOT_FOUND", domain: ERROR_DOMAIN, metadata: { names: "a,b" } });
    expect(requestInfo?.requestId).toBe(REQUEST_ID);
  });

  it("answers anything that is not an AppError INTERNAL, saying nothing of its cause", () => {
    const cause = new Error("connection to db-7.internal:5432 refused for user svc_secrets");
    const status = toStatus(cause, REQUEST_ID);
    expect(status.code).toBe(grpc.status.INTERNAL);
    expect(status.details).toBe(`internal error (request id ${REQUEST_ID})`);
    const { rich, info, requestInfo } = details(status);
    expect(rich.message).toBe(status.details);
    expect(info).toMatchObject({ reason: "INTERNAL", domain: ERROR_DOMAIN, metadata: {} });
    expect(requestInfo?.requestId).toBe(REQUEST_ID);
    const bin = status.metadata.get("grpc-status-details-bin")[0] as Buffer;
    expect(bin.toString("latin1")).not.toContain("db-7");
  });

  it("keeps an internal AppError's reason but neither its message nor its metadata", () => {
    const status = toStatus(integrityFailure("data key dev-1 v2", new Error("tag mismatch")), REQUEST_ID);
    expect(status.code).toBe(grpc.status.INTERNAL);
    expect(status.details).toBe(`internal error (request id ${REQUEST_ID})`);
    const { info } = details(status);
    expect(info?.reason).toBe("INTEGRITY_FAILURE");
    expect(info?.metadata).toEqual({});
    const bin = status.metadata.get("grpc-status-details-bin")[0] as Buffer;
    expect(bin.toString("latin1")).not.toContain("dev-1");

    const shown = publicError(new AppError("INTERNAL", "pool exhausted at 64 clients"));
    expect([shown.reason, shown.message]).toEqual(["INTERNAL", "internal error"]);
  });

  it("passes a non-internal AppError through publicError unchanged", () => {
    const error = new AppError("RATE_LIMITED", "slow down", { retryAfterMs: "250" });
    expect(publicError(error)).toBe(error);
    expect(publicError("a thrown string")).toMatchObject({ reason: "INTERNAL", kind: "internal", message: "internal error" });
  });
});
