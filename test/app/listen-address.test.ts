import { connect, createServer } from "node:net";
import { describe, expect, it } from "vitest";
import { ConfigError } from "../../src/app/config.js";
import { holdListenAddress, listenRefusal } from "../../src/app/listen-address.js";
import { freePort } from "../support/free-port.js";

// The listen address is held from the first step of start-up until grpc-js binds it.

/** Whether another listener can take `port` on 127.0.0.1 right now (it is closed again at once). */
async function canListen(port: number): Promise<boolean> {
  const server = createServer();
  return new Promise((resolve) => {
    server.once("error", () => resolve(false));
    server.listen(port, "127.0.0.1", () => server.close(() => resolve(true)));
  });
}

describe("holdListenAddress", () => {
  it("holds the port until released, and refuses a port already held with one line naming the fix", async () => {
    const port = await freePort();
    const address = `127.0.0.1:${port}`;
    const hold = await holdListenAddress(address);
    expect(await canListen(port)).toBe(false);

    const refused = await holdListenAddress(address).then(
      () => undefined,
      (e: unknown) => e,
    );
    expect(refused).toBeInstanceOf(ConfigError);
    expect((refused as Error).message).toBe(`${address} is in use; stop the other server or set SECRETS_GRPC_ADDR`);
    expect((await listenRefusal(address))?.message).toBe((refused as Error).message);

    await hold.release();
    await hold.release();
    expect(await canListen(port)).toBe(true);
    expect(await listenRefusal(address)).toBeUndefined();
  });

  it("drops a client that connects while the address is held, so release does not wait for it", async () => {
    const port = await freePort();
    const hold = await holdListenAddress(`127.0.0.1:${port}`);
    const client = connect(port, "127.0.0.1");
    client.on("error", () => undefined);
    const closed = new Promise<void>((resolve) => client.once("close", () => resolve()));
    await new Promise<void>((resolve) => client.once("connect", () => resolve()));
    // A client that keeps its connection open (as a retrying gRPC client does) must not hold up start-up.
    const released = await Promise.race([hold.release().then(() => true), new Promise<boolean>((r) => setTimeout(() => r(false), 2_000))]);
    expect(released).toBe(true);
    await closed;
    expect(await canListen(port)).toBe(true);
  });

  it("holds nothing for port 0, where the system picks a free port", async () => {
    const hold = await holdListenAddress("127.0.0.1:0");
    await expect(hold.release()).resolves.toBeUndefined();
  });
});
