import * as grpc from "@grpc/grpc-js";
import { describe, expect, it } from "vitest";
import { parseCallLogPolicy } from "../../../src/app/config.js";
import { createLogger } from "../../../src/observability/logger.js";
import { createCallLog, type CallLogPolicy } from "../../../src/server/interceptors/call-log.js";
import { newCallState } from "../../../src/server/interceptors/call-state.js";
import { LogCapture } from "../../support/test-service.js";

// SECRETS_LOG_CALLS: which finished calls get their log line. Every call still gets its
// x-request-id trailer and its metrics observation.

const call = { getPeer: () => "127.0.0.1:4000" };

/** Finishes `ok` OK calls and `failed` NOT_FOUND / INTERNAL ones; returns the lines written and the observations made. */
async function run(policy: CallLogPolicy, ok: number, failed: number) {
  const capture = new LogCapture();
  let observed = 0;
  const finish = createCallLog(createLogger("info", capture), () => void (observed += 1), policy);
  const trailers: string[] = [];
  const end = (code: grpc.status) => {
    const state = newCallState("/secrets.v1.SecretService/AccessSecret");
    trailers.push(String(finish(call, state, { code }).get("x-request-id")[0]));
  };
  for (let i = 0; i < ok; i++) end(grpc.status.OK);
  for (let i = 0; i < failed; i++) end(i % 2 === 0 ? grpc.status.NOT_FOUND : grpc.status.INTERNAL);
  await new Promise((r) => setImmediate(r));
  return { lines: capture.lines(), observed, trailers };
}

describe("the per-call log line (SECRETS_LOG_CALLS)", () => {
  it("all: one line per call", async () => {
    const { lines, observed } = await run({ kind: "all" }, 10, 4);
    expect(lines).toHaveLength(14);
    expect(observed).toBe(14);
  });

  it("errors: only the calls that failed, each still with its request id, metric and trailer", async () => {
    const { lines, observed, trailers } = await run({ kind: "errors" }, 10, 4);
    expect(lines.map((l) => l["code"])).toEqual(["NOT_FOUND", "INTERNAL", "NOT_FOUND", "INTERNAL"]);
    expect(observed).toBe(14);
    expect(new Set(trailers).size).toBe(14);
  });

  it("sample:N: every failure and one in N of the calls that succeeded", async () => {
    const { lines } = await run({ kind: "sample", every: 5 }, 20, 3);
    expect(lines.filter((l) => l["code"] === "OK")).toHaveLength(4);
    expect(lines.filter((l) => l["code"] !== "OK")).toHaveLength(3);
  });

  it("reads the variable, and refuses anything else in one line", () => {
    expect(parseCallLogPolicy("all")).toEqual({ kind: "all" });
    expect(parseCallLogPolicy("errors")).toEqual({ kind: "errors" });
    expect(parseCallLogPolicy("sample:100")).toEqual({ kind: "sample", every: 100 });
    for (const bad of ["", "none", "sample:", "sample:1", "sample:0", "sample:-3", "sample:2000000", "sample:1.5", "ALL"]) {
      expect(() => parseCallLogPolicy(bad)).toThrow(/^SECRETS_LOG_CALLS must be all, errors or sample:N/);
    }
  });
});
