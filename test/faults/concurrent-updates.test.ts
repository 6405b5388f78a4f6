import { randomUUID } from "node:crypto";
import { status } from "@grpc/grpc-js";
import { afterAll, beforeAll, describe, expect, it } from "vitest";
import { CallError, masterKey, NO_RATE_LIMITS, type Replica, type ReplicaCluster, startReplicaCluster } from "../support/fixtures.js";

// Optimistic concurrency across processes: 16 client loops over 2 replica
// processes (one Postgres, one Redis) each read the current version and update
// with expected_version = that version. Exactly one winner per version, every
// loser ABORTED (VERSION_MISMATCH), no lost update, no gap in the history.
// Bounded: until TARGET_VERSIONS versions exist, or MAX_LOAD_MS.

const LOOPS = 16;
const REPLICAS = 2;
const TARGET_VERSIONS = 120;
const MAX_LOAD_MS = 30_000;

interface Win {
  loop: number;
  replica: number;
  expected: number;
  version: number;
  value: string;
}

describe.runIf(process.env["DATABASE_URL"])("concurrent UpdateSecret with expected_version across replicas", () => {
  let cluster: ReplicaCluster;
  const replicas: Replica[] = [];
  let token: string;

  beforeAll(async () => {
    cluster = await startReplicaCluster({ redis: true });
    const keyring = [masterKey("k1")];
    for (let i = 0; i < REPLICAS; i++) {
      replicas.push(await cluster.start(keyring, { SECRETS_MAX_VERSIONS: "10000", ...NO_RATE_LIMITS }));
    }
    token = await cluster.token(`cas-dev-${randomUUID()}`, ["secrets:read", "secrets:write", "secrets:access"]);
  });

  afterAll(async () => {
    await cluster?.stop();
  });

  it("exactly one winner per version, every loser ABORTED VERSION_MISMATCH, no lost update, no gaps", async () => {
    const name = "contended";
    await replicas[0]?.secrets.createSecret({ name, value: "initial" }, token);

    const wins: Win[] = [];
    const losers: CallError[] = [];
    const errors: unknown[] = [];
    let attempts = 0;
    let done = false;
    const deadline = Date.now() + MAX_LOAD_MS;

    const loops = Array.from({ length: LOOPS }, async (_, loop) => {
      const replica = loop % REPLICAS;
      const client = (replicas[replica] as Replica).secrets;
      for (let n = 0; !done && n < 10_000; n++) {
        if (Date.now() > deadline) return;
        try {
          const current = (await client.getSecret({ name }, token)).secret?.version ?? 0;
          if (current >= TARGET_VERSIONS) {
            done = true;
            return;
          }
          const value = `loop${loop}-attempt${n}-after-v${current}`;
          attempts += 1;
          try {
            const updated = await client.updateSecret({ name, value, expectedVersion: current }, token);
            wins.push({ loop, replica, expected: current, version: updated.secret?.version ?? -1, value });
          } catch (e) {
            if (e instanceof CallError && e.code === status.ABORTED && e.reason === "VERSION_MISMATCH") losers.push(e);
            else throw e;
          }
        } catch (e) {
          errors.push(e);
          return;
        }
      }
    });
    await Promise.all(loops);

    expect(errors).toEqual([]);
    const client = (replicas[0] as Replica).secrets;
    const final = (await client.getSecret({ name }, token)).secret?.version ?? 0;
    // Enough versions to mean something even on a busy shared machine (the target is where it stops early).
    expect(final, `only ${final} versions within ${MAX_LOAD_MS} ms`).toBeGreaterThanOrEqual(TARGET_VERSIONS / 2);

    // Each winner made the version after the one it expected.
    expect(wins.filter((w) => w.version !== w.expected + 1)).toEqual([]);
    // Exactly one winner per version 2..final: no lost update (every version a winner made), no double win.
    const byVersion = new Map<number, Win[]>();
    for (const w of wins) byVersion.set(w.version, [...(byVersion.get(w.version) ?? []), w]);
    const doubles = [...byVersion].filter(([, ws]) => ws.length !== 1).map(([v, ws]) => `v${v}: ${ws.length} winners`);
    expect(doubles).toEqual([]);
    expect([...byVersion.keys()].sort((a, b) => a - b)).toEqual(Array.from({ length: final - 1 }, (_, i) => i + 2));
    expect(attempts).toBe(wins.length + losers.length);
    // There was contention, from both replicas.
    expect(losers.length).toBeGreaterThan(wins.length / 4);
    for (let r = 0; r < REPLICAS; r++) expect(wins.some((w) => w.replica === r), `replica ${r} won some versions`).toBe(true);

    // The history has no gaps, and every version holds its winner's value.
    const listed: number[] = [];
    let pageToken = "";
    for (let page = 0; page < 100; page++) {
      const res = await client.listSecretVersions({ name, pageSize: 50, pageToken }, token);
      listed.push(...res.versions.map((v) => v.version));
      pageToken = res.nextPageToken;
      if (!pageToken) break;
    }
    expect(listed).toEqual(Array.from({ length: final }, (_, i) => final - i));
    for (const w of wins) {
      const other = (replicas[(w.replica + 1) % REPLICAS] as Replica).secrets;
      expect((await other.accessSecret({ name, version: w.version }, token)).value, `v${w.version}`).toBe(w.value);
    }
    expect((await client.accessSecret({ name }, token)).value).toBe(byVersion.get(final)?.[0]?.value);
    console.info(`concurrent updates: ${attempts} attempts, ${wins.length} winners, ${losers.length} ABORTED, final version ${final}`);
  }, 60_000);
});
