import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import pg from "pg";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import type { SecretService } from "../../src/api/gen/secrets/v1/secrets_pb.js";
import { masterKey, NO_RATE_LIMITS, type Replica, type ReplicaCluster, startReplicaCluster } from "../support/fixtures.js";
import { outcomeOf, tracedCall, type TracedResult } from "../support/traced-call.js";

// SIGTERM under load for a production-mode server process (Postgres + Redis):
// with many calls in flight, every call ends OK or UNAVAILABLE (a call the server
// had started is finished, never cut mid-way), the process exits 0, and the audit
// events of the OK calls are all in audit_events afterwards. To show that the
// shutdown itself flushes the audit queue (rather than the 100 ms batch timer
// happening to run first), the test holds a lock that blocks INSERTs into
// audit_events through the load and the SIGTERM, so events are still queued when
// the drain ends; it releases the lock only while the process is shutting down.
// Bounded: about a second of load, then the drain.

const LOOPS = 64;
const DEVELOPERS = 4;
const LOAD_MS = 1_500;
/** How long after SIGTERM the audit table stays locked. */
const LOCK_AFTER_SIGTERM_MS = 750;

type Result = TracedResult<keyof (typeof SecretService)["method"]> & { name: string; loop: number };

describe.runIf(process.env["DATABASE_URL"])("SIGTERM under load (production mode)", () => {
  let cluster: ReplicaCluster;
  let replica: Replica;
  let locker: pg.Client | undefined;
  const developers = Array.from({ length: DEVELOPERS }, (_, d) => `sigterm-dev-${d}-${randomUUID()}`);
  const tokens: string[] = [];

  beforeAll(async () => {
    cluster = await startReplicaCluster({ redis: true });
    replica = await cluster.start([masterKey("k1")], { SECRETS_MAX_VERSIONS: "10000", ...NO_RATE_LIMITS });
    for (const developer of developers) tokens.push(await cluster.token(developer, ["secrets:read", "secrets:write", "secrets:access"]));
  });

  afterAll(async () => {
    await locker?.end().catch(() => undefined);
    await cluster?.stop();
  });

  it("finishes the calls in flight, refuses the rest UNAVAILABLE, exits 0, and has flushed the audit events of every OK call", async () => {
    const client = replica.secrets;
    const tokenOf = (loop: number) => tokens[loop % DEVELOPERS] as string;
    for (let loop = 0; loop < LOOPS; loop++) await client.createSecret({ name: `u_${loop}`, value: "u-init" }, tokenOf(loop));
    const auditRows = async () =>
      Number((await cluster.db.query<{ n: number }>("SELECT count(*)::int AS n FROM audit_events WHERE developer_id = ANY($1)", [developers])).rows[0]?.n);
    await waitUntil(async () => (await auditRows()) >= LOOPS, 5_000);
    const rowsBefore = await auditRows();
    // INSERT takes ROW EXCLUSIVE, which SHARE conflicts with: the audit writer blocks from here on.
    locker = new pg.Client({ connectionString: cluster.dbUrl });
    await locker.connect();
    await locker.query("BEGIN");
    await locker.query("LOCK TABLE audit_events IN SHARE MODE");

    const results: Result[] = [];
    let killedAt = 0;
    const loops = Array.from({ length: LOOPS }, async (_, loop) => {
      for (let n = 0; n < 100_000; n++) {
        let r: Result;
        if (n % 3 === 0) {
          const name = `c_${loop}_${n}`;
          r = { ...(await tracedCall(client, "createSecret", { name, value: `c-${loop}-${n}` }, tokenOf(loop))), name, loop };
        } else if (n % 3 === 1) {
          const name = `u_${loop}`;
          r = { ...(await tracedCall(client, "updateSecret", { name, value: `u-${loop}-${n}` }, tokenOf(loop))), name, loop };
        } else {
          // Another loop's secret of the same developer.
          const name = `u_${(loop + DEVELOPERS * (n % 7)) % LOOPS}`;
          r = { ...(await tracedCall(client, "accessSecret", { name }, tokenOf(loop))), name, loop };
        }
        results.push(r);
        // After SIGTERM each loop goes on until the server refuses it.
        if (killedAt > 0 && !r.ok) return;
      }
    });

    await new Promise((r) => setTimeout(r, LOAD_MS));
    killedAt = Date.now();
    replica.process.kill("SIGTERM");
    await new Promise((r) => setTimeout(r, LOCK_AFTER_SIGTERM_MS));
    // The drain is over (the calls are fast) but the process waits: its audit events are not written yet.
    const stillRunning = replica.process.child.exitCode === null;
    const rowsWhileLocked = await auditRows();
    await locker.query("COMMIT");
    const exitCode = await Promise.race([
      replica.process.exited,
      new Promise((r) => setTimeout(() => r("still running 20 s after SIGTERM"), 20_000)),
    ]);
    await Promise.all(loops);
    expect(exitCode).toBe(0);
    expect(replica.process.stdout()).toMatch(/"msg":"stopped"/);
    expect(replica.process.stdout()).not.toMatch(/audit events not written/);
    expect(stillRunning, "the process exited with its audit events unwritten").toBe(true);
    expect(rowsWhileLocked, "audit events were written despite the lock").toBe(rowsBefore);

    // Every call ended OK or UNAVAILABLE; calls already in flight at SIGTERM completed.
    const bad = results.filter((r) => !r.ok && r.error.code !== status.UNAVAILABLE);
    expect(bad.map((r) => `${r.method} ${r.name}: ${outcomeOf(r)} ${r.ok ? "" : r.error.details}`)).toEqual([]);
    const spanning = results.filter((r) => r.startedAt < killedAt && r.endedAt >= killedAt);
    // Each loop starts its next call as soon as one ends, so about LOOPS calls are outstanding at any time.
    expect(spanning.length).toBeGreaterThanOrEqual(LOOPS / 2);
    expect(spanning.filter((r) => r.ok).length, "no call in flight at SIGTERM completed").toBeGreaterThan(0);
    const ok = results.filter((r) => r.ok);
    expect(ok.length).toBeGreaterThan(LOOPS);
    expect(results.filter((r) => !r.ok).length, "every loop was refused in the end").toBeGreaterThanOrEqual(LOOPS);

    // Nothing was cut mid-way: the writes that were made are exactly the acknowledged ones.
    const { rows: secrets } = await cluster.db.query<{ name: string; current_version: number }>(
      "SELECT name, current_version FROM secrets WHERE developer_id = ANY($1)",
      [developers],
    );
    const stored = new Map(secrets.map((s) => [s.name, Number(s.current_version)]));
    const createdOk = ok.filter((r) => r.method === "createSecret").map((r) => r.name);
    expect([...stored.keys()].filter((n) => n.startsWith("c_")).sort()).toEqual([...createdOk].sort());
    for (let loop = 0; loop < LOOPS; loop++) {
      const acked = ok.filter((r) => r.method === "updateSecret" && r.loop === loop).length;
      expect(stored.get(`u_${loop}`), `u_${loop}: versions made vs updates acknowledged`).toBe(1 + acked);
    }

    // The audit events of all OK calls were written before the process exited.
    const { rows: events } = await cluster.db.query<{ request_id: string; action: string; secret_name: string; outcome: string }>(
      "SELECT request_id, action, secret_name, outcome FROM audit_events WHERE developer_id = ANY($1)",
      [developers],
    );
    const byRequest = new Map(events.map((e) => [e.request_id, e]));
    const missing: string[] = [];
    for (const r of ok) {
      const e = r.requestId === undefined ? undefined : byRequest.get(r.requestId);
      const action = r.method.charAt(0).toUpperCase() + r.method.slice(1);
      if (!e || e.outcome !== "OK" || e.action !== action || e.secret_name !== r.name) missing.push(`${action} ${r.name} (${r.requestId})`);
    }
    expect(missing).toEqual([]);
    console.info(
      `sigterm: ${results.length} calls, ${ok.length} OK, ${spanning.length} spanning SIGTERM ` +
        `(${spanning.filter((r) => r.ok).length} of them OK), ${events.length - rowsBefore} audit events written by the shutdown flush, exit ${String(exitCode)}`,
    );
  }, 60_000);
});

async function waitUntil(condition: () => Promise<boolean>, timeoutMs: number): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  while (!(await condition())) {
    if (Date.now() > deadline) throw new Error(`condition not met within ${timeoutMs} ms`);
    await new Promise((r) => setTimeout(r, 50));
  }
}
