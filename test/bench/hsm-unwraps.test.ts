import { expect, it } from "vitest";
import { describeHsmUnwraps, measureHsmUnwraps } from "../../bench/hsm-unwraps.js";
import { describeWithSoftHsm } from "../support/softhsm.js";

describeWithSoftHsm("bench: data-key unwraps through the HSM", () => {
  it("measures both providers at 1 and 2 in flight, and reports them", async () => {
    const report = await measureHsmUnwraps({ seconds: 0.3, sessions: 2 });
    if ("skipped" in report) throw new Error(`skipped: ${report.skipped}`);
    expect(report.rates.map((r) => r.inFlight)).toEqual([1, 2]);
    for (const r of report.rates) {
      expect(r.hsmPerSecond).toBeGreaterThan(0);
      expect(r.localPerSecond).toBeGreaterThan(0);
    }
    const lines = describeHsmUnwraps(report);
    expect(lines).toHaveLength(3);
    expect(lines[1]).toMatch(/^ {2}1 in flight: \d+ unwraps\/s through the HSM, \d+\/s with the key in memory \(\d+\.\d\d×\)$/);
  });
});
