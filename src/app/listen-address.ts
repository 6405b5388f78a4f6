import { createServer, type Server } from "node:net";
import { ConfigError, hostOf } from "./config.js";

/**
 * Start-up's first step: make sure the gRPC address can be listened on before
 * anything is created (a data directory, generated keys, migrations). A plain TCP
 * listener takes the address and holds it through start-up, so that a port already
 * in use stops start-up at once, with one line naming the fix; it is released just
 * before grpc-js binds the same address. Port 0 (any free port) needs no check.
 */

/** A held listen address; `release` is idempotent. */
export interface AddressHold {
  release(): Promise<void>;
}

const NOTHING_HELD: AddressHold = { release: async () => undefined };

/** Listens on `address` (SECRETS_GRPC_ADDR, `host:port`) or fails with a ConfigError saying why and what to do. */
export async function holdListenAddress(address: string): Promise<AddressHold> {
  const host = hostOf(address);
  const port = Number(address.slice(address.lastIndexOf(":") + 1));
  if (host === undefined || port === 0) return NOTHING_HELD;
  // Nothing is served while held: a client that connects (one retrying against a
  // restarting service, say) is dropped at once, and so cannot keep close() waiting.
  const server = createServer((socket) => socket.destroy());
  await new Promise<void>((resolve, reject) => {
    server.once("error", (e: NodeJS.ErrnoException) => reject(refusal(address, e)));
    server.listen({ host, port, exclusive: true }, resolve);
  });
  let released: Promise<void> | undefined;
  return {
    release: () => (released ??= closed(server)),
  };
}

/**
 * Whether `address` is taken now: asked again when grpc-js fails to bind, so that
 * losing the address to another process between release and bind gives the same
 * one line rather than grpc-js's text.
 */
export async function listenRefusal(address: string): Promise<ConfigError | undefined> {
  try {
    await (await holdListenAddress(address)).release();
    return undefined;
  } catch (e) {
    if (e instanceof ConfigError) return e;
    throw e;
  }
}

function refusal(address: string, e: NodeJS.ErrnoException): Error {
  switch (e.code) {
    case "EADDRINUSE":
      return new ConfigError(`${address} is in use; stop the other server or set SECRETS_GRPC_ADDR`);
    case "EACCES":
      return new ConfigError(`${address} needs privileges to listen on; use a port above 1023 in SECRETS_GRPC_ADDR`);
    case "EADDRNOTAVAIL":
      return new ConfigError(`${address} is not an address of this machine; set SECRETS_GRPC_ADDR`);
    default:
      return e;
  }
}

function closed(server: Server): Promise<void> {
  return new Promise((resolve) => server.close(() => resolve()));
}
