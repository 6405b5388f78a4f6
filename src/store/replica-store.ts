import type { Queryable } from "./db.js";

/**
 * The SQL of replica coordination: heartbeats (who is live and which master keys it
 * holds) and key evictions that every live replica applies and acknowledges.
 */

/** A replica is live while its heartbeat is younger than this. */
export const LIVE_REPLICA_SECONDS = 30;

export interface ReplicaRow {
  id: string;
  keyIds: string[];
  heartbeatAt: Date;
}

export async function heartbeat(q: Queryable, replicaId: string, keyIds: readonly string[]): Promise<void> {
  await q.query(
    `INSERT INTO replicas (id, key_ids, heartbeat_at) VALUES ($1, $2::text[], now())
     ON CONFLICT (id) DO UPDATE SET key_ids = EXCLUDED.key_ids, heartbeat_at = now()`,
    [replicaId, keyIds],
  );
}

export async function removeReplica(q: Queryable, replicaId: string): Promise<void> {
  await q.query("DELETE FROM replicas WHERE id = $1", [replicaId]);
}

export async function liveReplicas(q: Queryable): Promise<ReplicaRow[]> {
  const { rows } = await q.query<{ id: string; key_ids: string[]; heartbeat_at: Date }>(
    `SELECT id, key_ids, heartbeat_at FROM replicas
     WHERE heartbeat_at > now() - make_interval(secs => $1) ORDER BY id`,
    [LIVE_REPLICA_SECONDS],
  );
  return rows.map((r) => ({ id: r.id, keyIds: r.key_ids, heartbeatAt: r.heartbeat_at }));
}

/** Publishes an eviction of a developer's unwrapped keys; returns its id. */
export async function publishEviction(q: Queryable, developerId: string): Promise<number> {
  const { rows } = await q.query<{ id: number }>("INSERT INTO key_evictions (developer_id) VALUES ($1) RETURNING id", [developerId]);
  return (rows[0] as { id: number }).id;
}

/**
 * Evictions this replica has not acknowledged, oldest first. Found by the
 * acknowledgements rather than by a cursor over ids, which commit out of order.
 */
export async function unacknowledgedEvictions(q: Queryable, replicaId: string): Promise<{ id: number; developerId: string }[]> {
  const { rows } = await q.query<{ id: number; developer_id: string }>(
    `SELECT e.id, e.developer_id FROM key_evictions e
     WHERE NOT EXISTS (SELECT 1 FROM key_eviction_acks a WHERE a.eviction_id = e.id AND a.replica_id = $1)
     ORDER BY e.id LIMIT 1000`,
    [replicaId],
  );
  return rows.map((r) => ({ id: r.id, developerId: r.developer_id }));
}

/** Acknowledges every eviction published so far (a replica starting with no keys in memory). */
export async function acknowledgeAllEvictions(q: Queryable, replicaId: string): Promise<void> {
  await q.query(
    "INSERT INTO key_eviction_acks (eviction_id, replica_id) SELECT id, $1 FROM key_evictions ON CONFLICT DO NOTHING",
    [replicaId],
  );
}

/** How many replicas acknowledged an eviction. */
export async function countAcknowledgements(q: Queryable, evictionId: number): Promise<number> {
  const { rows } = await q.query<{ n: number }>("SELECT count(*) AS n FROM key_eviction_acks WHERE eviction_id = $1", [evictionId]);
  return rows[0]?.n ?? 0;
}

export async function acknowledgeEvictions(q: Queryable, replicaId: string, ids: readonly number[]): Promise<void> {
  if (ids.length === 0) return;
  await q.query(
    `INSERT INTO key_eviction_acks (eviction_id, replica_id)
     SELECT unnest($1::bigint[]), $2 ON CONFLICT DO NOTHING`,
    [ids, replicaId],
  );
}

/** Live replicas that have not yet acknowledged an eviction. */
export async function replicasMissingAck(q: Queryable, evictionId: number): Promise<string[]> {
  const { rows } = await q.query<{ id: string }>(
    `SELECT r.id FROM replicas r
     WHERE r.heartbeat_at > now() - make_interval(secs => $2)
       AND NOT EXISTS (SELECT 1 FROM key_eviction_acks a WHERE a.eviction_id = $1 AND a.replica_id = r.id)
     ORDER BY r.id`,
    [evictionId, LIVE_REPLICA_SECONDS],
  );
  return rows.map((r) => r.id);
}

/** Forgets evictions every replica has long applied (the DEK cache TTL bounds the rest). */
export async function pruneEvictions(q: Queryable, olderThanSeconds: number): Promise<void> {
  await q.query("DELETE FROM key_evictions WHERE created_at < now() - make_interval(secs => $1)", [olderThanSeconds]);
}
