import { execFile } from "node:child_process";
import { join } from "node:path";
import { promisify } from "node:util";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { parseAddress, SecretsClient, SecretsUnavailableError } from "@secrets-service/client";
import { PROJECT_ROOT } from "../support/server-process.js";
import { startTestService, type TestService } from "../support/test-service.js";
import { expectSecretsError } from "./client-fixtures.js";

// One address syntax for the SDK and the CLI: host:port, http://, https:// (TLS), a bare host on port
// 50051, and bracketed IPv6; anything else a TypeError that names the accepted forms.

describe("parseAddress", () => {
  it.each([
    ["127.0.0.1:50051", { host: "127.0.0.1", port: 50051, tls: undefined, target: "127.0.0.1:50051" }],
    ["http://127.0.0.1:8080", { host: "127.0.0.1", port: 8080, tls: false, target: "127.0.0.1:8080" }],
    ["http://127.0.0.1:8080/", { host: "127.0.0.1", port: 8080, tls: false, target: "127.0.0.1:8080" }],
    ["https://secrets.example.com:443", { host: "secrets.example.com", port: 443, tls: true, target: "secrets.example.com:443" }],
    ["HTTPS://secrets.example.com", { host: "secrets.example.com", port: 50051, tls: true, target: "secrets.example.com:50051" }],
    ["127.0.0.1", { host: "127.0.0.1", port: 50051, tls: undefined, target: "127.0.0.1:50051" }],
    ["secrets-svc", { host: "secrets-svc", port: 50051, tls: undefined, target: "secrets-svc:50051" }],
    ["[::1]:50051", { host: "::1", port: 50051, tls: undefined, target: "[::1]:50051" }],
    ["http://[::1]", { host: "::1", port: 50051, tls: false, target: "[::1]:50051" }],
  ])("reads %s", (address, expected) => {
    expect(parseAddress(address)).toEqual(expected);
  });

  it.each([
    ["", /names no host/],
    ["http://", /names no host/],
    ["127.0.0.1:50051/secrets", /path/],
    ["http://host:1/x", /path/],
    ["user@host:1", /credentials/],
    ["host:0", /port/],
    ["host:65536", /port/],
    ["host:http", /port/],
    ["host:", /port/],
    ["grpc://host:1", /scheme grpc:\/\//],
    ["unix:///tmp/socket", /scheme unix:\/\//],
    ["dns:host:1", /IPv6 address must be in brackets/],
    ["::1", /brackets/],
    ["[::1", /closing bracket/],
    ["[::1]x", /follows/],
    ["[host]:1", /not an IPv6 address/],
    ["-host:1", /host name/],
  ])("refuses %j, naming the accepted forms", (address, why) => {
    const parse = () => parseAddress(address);
    expect(parse).toThrow(TypeError);
    expect(parse).toThrow(why);
    expect(parse).toThrow("host:port, http://host:port, https://host:port, host (port 50051) or [ipv6]:port");
  });
});

describe("SecretsClient and the CLI on every address form", () => {
  let svc: TestService;
  let port: string;
  beforeAll(async () => {
    svc = await startTestService();
    port = svc.address.split(":")[1] as string;
  });
  afterAll(() => svc?.stop());

  it("call the service at http://host:port and host:port; dial 50051 for a bare host; use TLS for https://", async () => {
    const token = await svc.token("dev_addr");
    for (const address of [`http://127.0.0.1:${port}`, `127.0.0.1:${port}`, `http://[::ffff:127.0.0.1]:${port}`]) {
      const client = new SecretsClient({ address, token });
      try {
        await client.secrets.create({ name: `via_${address.length}`, value: "addr-value" });
        expect((await client.secrets.access(`via_${address.length}`)).value).toBe("addr-value");
      } finally {
        client.close();
      }
    }
    expect(new SecretsClient({ address: "127.0.0.1", token }).target).toBe("127.0.0.1:50051");

    // TLS against a plaintext service: the handshake fails, so https:// did turn TLS on.
    const tls = new SecretsClient({ address: `https://127.0.0.1:${port}`, token, deadlineMs: 3_000, retry: { maxAttempts: 1 } });
    try {
      const e = await expectSecretsError(() => tls.secrets.get("anything"));
      expect(e.codeName).toMatch(/UNAVAILABLE|DEADLINE_EXCEEDED/);
    } finally {
      tls.close();
    }
    expect(() => new SecretsClient({ address: `http://127.0.0.1:${port}`, token, tls: true })).toThrow(/http:\/\/ address is plaintext/);
    expect(() => new SecretsClient({ address: `127.0.0.1:${port}/v1`, token })).toThrow(TypeError);
  });

  it("reports a refused connection naming the address", async () => {
    const client = new SecretsClient({ address: "http://127.0.0.1:1", token: "t", retry: { maxAttempts: 1 } });
    try {
      const e = await expectSecretsError(() => client.secrets.get("anything"));
      expect(e).toBeInstanceOf(SecretsUnavailableError);
      expect(e.message).toBe("UNAVAILABLE: cannot reach 127.0.0.1:1: connection refused");
      expect(e.cause).toBe("connect ECONNREFUSED 127.0.0.1:1");
    } finally {
      client.close();
    }
  });

  const MAIN = join(PROJECT_ROOT, "dist", "cli", "main.js");
  const cli = async (addr: string) => {
    const env = { PATH: process.env["PATH"], SECRETS_ADDR: addr, SECRETS_TOKEN: await svc.token("dev_addr_cli") };
    return promisify(execFile)(process.execPath, [MAIN, "--timeout", "2000", "list"], { env, timeout: 20_000 }).then(
      (r) => ({ code: 0, ...r }),
      (e: { code: number; stdout: string; stderr: string }) => e,
    );
  };

  it("the CLI takes --addr http://host:port, dials 50051 for a bare host, and refuses a bad address as usage", async () => {
    expect((await cli(`http://127.0.0.1:${port}`)).code).toBe(0);
    const bare = await cli("127.0.0.1");
    if (bare.code !== 0) expect(bare.stderr).toContain("127.0.0.1:50051");
    expect(bare.stderr).not.toContain(":443");
    const bad = await cli("127.0.0.1:50051/path");
    expect(bad.code).toBe(2);
    expect(bad.stderr).toMatch(/^secrets: --addr \(SECRETS_ADDR\): invalid address .*path.*; use host:port/);
  });
});
