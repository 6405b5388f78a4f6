import { describe, expect, it } from "vitest";
import { createMetrics } from "../../src/observability/metrics.js";

describe("metrics", () => {
  it("secrets_key_provider_up reads the providers' health at each scrape: 1 when usable, 0 when not", async () => {
    let up = true;
    const metrics = createMetrics({ keyProviderUp: async () => up });
    expect(await metrics.registry.metrics()).toMatch(/^secrets_key_provider_up 1$/m);
    up = false;
    expect(await metrics.registry.metrics()).toMatch(/^secrets_key_provider_up 0$/m);
  });
});
