import { status } from "@grpc/grpc-js";
import type { WatchEvent, WatchUpdate } from "@secrets-service/client";
import { SecretsError } from "../../packages/client/src/errors.js";

/**
 * Scripted WatchSecrets streams for unit tests of the SDK's watch and watched cache:
 * each `open` makes a stream the test feeds with updates and failures.
 */

/** One fake stream: what it was opened with, and the test's end of it. */
export interface FakeStream {
  readonly startRevision: number;
  readonly token: string;
  readonly signal: AbortSignal;
  /** Set once the consumer stopped reading it (a return or a failure). */
  readonly closed: boolean;
  push(update: WatchUpdate): void;
  fail(error: Error): void;
}

/** A stream opener that records every stream it makes. */
export function fakeStreams(): {
  streams: FakeStream[];
  open: (startRevision: number, token: string, signal: AbortSignal | undefined) => AsyncGenerator<WatchUpdate, void, undefined>;
} {
  const streams: FakeStream[] = [];
  const open = (startRevision: number, token: string, signal: AbortSignal | undefined) => {
    const queue: (WatchUpdate | Error)[] = [];
    let wake: (() => void) | undefined;
    const aborted = signal ?? new AbortController().signal;
    const stream = {
      startRevision,
      token,
      signal: aborted,
      closed: false,
      push: (u: WatchUpdate) => {
        queue.push(u);
        wake?.();
      },
      fail: (e: Error) => {
        queue.push(e);
        wake?.();
      },
    };
    streams.push(stream);
    return (async function* () {
      try {
        for (;;) {
          while (queue.length === 0) {
            if (aborted.aborted) throw failure(status.CANCELLED);
            await new Promise<void>((resolve) => {
              wake = resolve;
              aborted.addEventListener("abort", () => resolve(), { once: true });
            });
          }
          const item = queue.shift() as WatchUpdate | Error;
          if (item instanceof Error) throw item;
          yield item;
        }
      } finally {
        stream.closed = true;
      }
    })();
  };
  return { streams, open };
}

/** A SecretsError as the transport reports a status. */
export function failure(code: status, reason?: string): SecretsError {
  return new SecretsError({ code, details: "scripted failure", reason });
}

export const snapshot = (revision: number, secrets: { name: string; version: number }[] = []): WatchUpdate => ({ kind: "snapshot", secrets, revision });

export function events(...changes: [WatchEvent["type"], string, number, number][]): WatchUpdate {
  const list = changes.map(([type, name, version, revision]) => ({ type, name, version, revision, time: new Date(0) }));
  return { kind: "events", events: list, revision: list.at(-1)?.revision ?? 0 };
}

/** Lets pending callbacks run, zero-length backoff timers included. */
export async function settle(): Promise<void> {
  for (let i = 0; i < 5; i++) await new Promise((r) => setTimeout(r, 1));
}
