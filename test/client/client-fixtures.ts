import { createServer, type Server, type Socket } from "node:net";
import { SecretsError } from "@secrets-service/client";
import { expectFailure } from "../support/expect-failure.js";
import type { LogCapture } from "../support/fixtures.js";

/** The server's log lines for calls of `method` (e.g. "AccessSecret") made by `developer`. */
export function callsOf(logs: LogCapture, method: string, developer: string): Record<string, unknown>[] {
  return logs
    .lines()
    .filter((l) => l["method"] === `/secrets.v1.SecretService/${method}` && l["developer"] === developer);
}

/** Runs `fn` expecting a SecretsError; returns it for assertions. */
export function expectSecretsError(fn: () => Promise<unknown>): Promise<SecretsError> {
  return expectFailure(SecretsError, fn);
}

/** A random value that cannot appear in output by chance. */
export function randomValue(label: string): string {
  return `val_${label}_${Math.random().toString(36).slice(2)}${Math.random().toString(36).slice(2)}`;
}

/** Collects an async iterable. */
export async function all<T>(items: AsyncIterable<T>): Promise<T[]> {
  const out: T[] = [];
  for await (const item of items) out.push(item);
  return out;
}

/** A TCP server that accepts connections and never answers: a hung service. */
export async function blackhole(): Promise<{ address: string; close(): Promise<void> }> {
  const sockets = new Set<Socket>();
  const server: Server = createServer((s) => {
    sockets.add(s);
    s.on("error", () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
  const port = (server.address() as { port: number }).port;
  return {
    address: `127.0.0.1:${port}`,
    close: () =>
      new Promise((resolve) => {
        for (const s of sockets) s.destroy();
        server.close(() => resolve());
      }),
  };
}
