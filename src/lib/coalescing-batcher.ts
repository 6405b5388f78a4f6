/**
 * "Smart batching" of lookups that share a round trip: the Redis cache's MGETs
 * (cache/redis-cache.ts) and the reads of current values from Postgres
 * (store/current-reader.ts).
 *
 * A request made while fewer than `maxInFlight` batches are on the wire goes out at
 * the end of this event-loop turn, with the others made in it (the requests of one
 * socket read arrive in one turn); requests made while the wire is full wait, and go
 * out together as soon as a batch comes back. Under load one round trip serves many
 * calls, which is what a lookup costs most on a machine whose cores Redis and
 * Postgres share: the system calls of a round trip, not the lookup. At one call in
 * flight it adds one setImmediate. A batch unanswered for `stallMs` no longer counts
 * against `maxInFlight`, so a stalled server delays the requests behind it by at
 * most that, not by its own timeout.
 *
 * Each batch is one command or statement, so every request in it is served by one
 * atomic read made after the request was made: what a read of its own would have
 * seen. A failed batch fails every request in it with its error.
 */

export interface SmartBatchOptions<Req, Res> {
  /** Batches on the wire at once. */
  maxInFlight: number;
  /** A batch unanswered this long no longer holds back the requests behind it. */
  stallMs: number;
  /** Most units (see sizeOf) in one batch; more wait for the next. A larger request goes alone. */
  maxBatchSize: number;
  sizeOf(request: Req): number;
  /** Sends one batch; resolves with one result per request, in the batch's order. */
  send(batch: readonly Req[]): Promise<Res[]>;
}

export interface SmartBatcher<Req, Res> {
  (request: Req): Promise<Res>;
  /** Nothing queued and nothing on the wire. */
  readonly idle: boolean;
}

interface Pending<Req, Res> {
  request: Req;
  resolve: (result: Res) => void;
  reject: (e: unknown) => void;
}

export function smartBatcher<Req, Res>(options: SmartBatchOptions<Req, Res>): SmartBatcher<Req, Res> {
  const { maxInFlight, stallMs, maxBatchSize, sizeOf } = options;
  const queue: Pending<Req, Res>[] = [];
  /** The batches on the wire, by when each was sent. */
  const inFlight = new Set<{ sentAt: number }>();
  let scheduled = false;

  const wireFull = () => {
    if (inFlight.size < maxInFlight) return false;
    const now = Date.now();
    for (const b of inFlight) if (now - b.sentAt <= stallMs) return true;
    return false;
  };

  function schedule(): void {
    if (scheduled || queue.length === 0 || wireFull()) return;
    scheduled = true;
    setImmediate(send);
  }

  function send(): void {
    scheduled = false;
    if (queue.length === 0) return;
    let size = 0;
    let n = 0;
    while (n < queue.length && (n === 0 || size + sizeOf((queue[n] as Pending<Req, Res>).request) <= maxBatchSize)) {
      size += sizeOf((queue[n] as Pending<Req, Res>).request);
      n += 1;
    }
    const batch = queue.splice(0, n);
    const onWire = { sentAt: Date.now() };
    inFlight.add(onWire);
    options
      .send(batch.map((p) => p.request))
      .then(
        (results) => {
          for (const [i, p] of batch.entries()) p.resolve(results[i] as Res);
        },
        (e: unknown) => {
          for (const p of batch) p.reject(e);
        },
      )
      .finally(() => {
        inFlight.delete(onWire);
        // Those queued have waited a round trip already: they go at once, together.
        if (!scheduled && queue.length > 0 && !wireFull()) send();
      });
    schedule(); // more than one batch's worth may be waiting
  }

  const submit = (request: Req) =>
    new Promise<Res>((resolve, reject) => {
      queue.push({ request, resolve, reject });
      schedule();
    });
  return Object.defineProperty(submit, "idle", { get: () => queue.length === 0 && inFlight.size === 0 }) as SmartBatcher<Req, Res>;
}
