/**
 * The versioned schema. Each migration runs once, in order, inside a transaction,
 * while `migrate` holds the advisory lock; applied versions are recorded in
 * `schema_migrations`. Never edit a released migration: add the next one. The
 * migrations are one ordered list, read top to bottom, so they stay one file however
 * long it grows.
 */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: "secrets, versions, data keys",
    sql: `
-- The master key (KEK) new data keys are wrapped under. One row; recorded here,
-- never inferred from the order of the configured keyring.
CREATE TABLE master_key_state (
  singleton      boolean PRIMARY KEY DEFAULT true CHECK (singleton),
  active_kek_id  text NOT NULL,
  updated_at     timestamptz NOT NULL DEFAULT now()
);

-- Per-developer data keys (DEKs), stored wrapped under a master key.
CREATE TABLE data_keys (
  developer_id      text NOT NULL,
  version           integer NOT NULL CHECK (version > 0),
  kek_id            text NOT NULL,
  wrapped_key       bytea NOT NULL,
  state             text NOT NULL CHECK (state IN ('active', 'retiring', 'retired')),
  encryption_count  bigint NOT NULL DEFAULT 0,
  created_at        timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (developer_id, version)
);
CREATE UNIQUE INDEX data_keys_one_active ON data_keys (developer_id) WHERE state = 'active';
CREATE INDEX data_keys_by_kek ON data_keys (kek_id);

CREATE TABLE secrets (
  id               uuid PRIMARY KEY,
  developer_id     text NOT NULL,
  name             text COLLATE "C" NOT NULL,
  description      text NOT NULL DEFAULT '',
  metadata         jsonb NOT NULL DEFAULT '{}'::jsonb CHECK (jsonb_typeof(metadata) = 'object'),
  current_version  integer NOT NULL CHECK (current_version > 0),
  created_at       timestamptz NOT NULL,
  updated_at       timestamptz NOT NULL,
  created_by       text NOT NULL,
  updated_by       text NOT NULL,
  CONSTRAINT secrets_developer_name_key UNIQUE (developer_id, name)
);
CREATE INDEX secrets_metadata_gin ON secrets USING gin (metadata jsonb_path_ops);

-- One row per version. A destroyed version keeps its row (no gaps in the history)
-- and loses its ciphertext.
CREATE TABLE secret_versions (
  secret_id    uuid NOT NULL REFERENCES secrets (id) ON DELETE CASCADE,
  developer_id text NOT NULL,
  version      integer NOT NULL CHECK (version > 0),
  state        text NOT NULL CHECK (state IN ('enabled', 'destroyed')),
  ciphertext   bytea,
  dek_version  integer,
  created_at   timestamptz NOT NULL,
  created_by   text NOT NULL,
  PRIMARY KEY (secret_id, version),
  CHECK ((state = 'enabled') = (ciphertext IS NOT NULL AND dek_version IS NOT NULL))
);
CREATE INDEX secret_versions_by_dek ON secret_versions (developer_id, dek_version) WHERE ciphertext IS NOT NULL;
`,
  },
  {
    version: 2,
    name: "replicas, key evictions, data key retirement, audit trail",
    sql: `
-- Live replicas: each writes a heartbeat every few seconds with the master key ids
-- it holds; "live" means a heartbeat younger than 30 s.
CREATE TABLE replicas (
  id            text PRIMARY KEY,
  key_ids       text[] NOT NULL,
  started_at    timestamptz NOT NULL DEFAULT now(),
  heartbeat_at  timestamptz NOT NULL DEFAULT now()
);

-- Evictions of a developer's unwrapped data keys (shredding, retirement), which
-- every live replica applies and acknowledges.
CREATE TABLE key_evictions (
  id            bigserial PRIMARY KEY,
  developer_id  text NOT NULL,
  created_at    timestamptz NOT NULL DEFAULT now()
);
CREATE TABLE key_eviction_acks (
  eviction_id  bigint NOT NULL REFERENCES key_evictions (id) ON DELETE CASCADE,
  replica_id   text NOT NULL,
  acked_at     timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (eviction_id, replica_id)
);

-- A retired data key keeps its row (history, counts) and loses its wrapped key.
ALTER TABLE data_keys ALTER COLUMN wrapped_key DROP NOT NULL;
ALTER TABLE data_keys ADD CONSTRAINT data_keys_retired_have_no_key CHECK ((state = 'retired') = (wrapped_key IS NULL));
ALTER TABLE data_keys ADD COLUMN retired_at timestamptz;
CREATE INDEX data_keys_not_retired ON data_keys (kek_id) WHERE state <> 'retired';

-- The audit trail: append-only (a trigger rejects UPDATE, DELETE and TRUNCATE).
-- Each writer (one per process) chains its events: hash = sha256(prev_hash, event).
CREATE TABLE audit_events (
  id               bigserial PRIMARY KEY,
  time             timestamptz NOT NULL,
  developer_id     text NOT NULL,
  caller_subject   text NOT NULL,
  caller_token_id  text NOT NULL DEFAULT '',
  caller_identity  text NOT NULL DEFAULT '',
  action           text NOT NULL,
  secret_name      text NOT NULL DEFAULT '',
  version          integer NOT NULL DEFAULT 0,
  outcome          text NOT NULL,
  request_id       text NOT NULL,
  peer             text NOT NULL DEFAULT '',
  writer_id        text NOT NULL,
  writer_sequence  bigint NOT NULL,
  prev_hash        text NOT NULL,
  hash             text NOT NULL,
  CONSTRAINT audit_events_writer_sequence_key UNIQUE (writer_id, writer_sequence)
);
CREATE INDEX audit_events_by_developer ON audit_events (developer_id, id DESC);

CREATE FUNCTION audit_events_append_only() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  RAISE EXCEPTION 'audit_events is append-only' USING ERRCODE = 'insufficient_privilege';
END
$fn$;
CREATE TRIGGER audit_events_no_update_delete BEFORE UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_events_no_truncate BEFORE TRUNCATE ON audit_events
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();
`,
  },
  {
    version: 3,
    name: "secret counts per developer",
    sql: `
-- How many secrets each developer stores, kept by statement triggers on secrets
-- whatever inserts or deletes them, so that a create's quota check reads one row
-- instead of counting the developer's secrets; the create locks that row until its
-- transaction ends, so two creates at the limit cannot both pass (insertSecret).
CREATE TABLE developer_secret_counts (
  developer_id  text PRIMARY KEY,
  secrets       integer NOT NULL CHECK (secrets >= 0)
);
INSERT INTO developer_secret_counts (developer_id, secrets)
  SELECT developer_id, count(*) FROM secrets GROUP BY developer_id;

CREATE FUNCTION secrets_count_inserted() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  INSERT INTO developer_secret_counts AS c (developer_id, secrets)
    SELECT developer_id, count(*) FROM added GROUP BY developer_id
    ON CONFLICT (developer_id) DO UPDATE SET secrets = c.secrets + EXCLUDED.secrets;
  RETURN NULL;
END
$fn$;
CREATE FUNCTION secrets_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  UPDATE developer_secret_counts AS c SET secrets = c.secrets - d.n
    FROM (SELECT developer_id, count(*) AS n FROM removed GROUP BY developer_id) AS d
    WHERE c.developer_id = d.developer_id;
  RETURN NULL;
END
$fn$;
-- A secret never changes developer: the counts could not follow it.
CREATE FUNCTION secrets_developer_fixed() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  RAISE EXCEPTION 'a secret''s developer_id cannot change' USING ERRCODE = 'check_violation';
END
$fn$;
CREATE TRIGGER secrets_count_insert AFTER INSERT ON secrets
  REFERENCING NEW TABLE AS added FOR EACH STATEMENT EXECUTE FUNCTION secrets_count_inserted();
CREATE TRIGGER secrets_count_delete AFTER DELETE ON secrets
  REFERENCING OLD TABLE AS removed FOR EACH STATEMENT EXECUTE FUNCTION secrets_count_deleted();
CREATE TRIGGER secrets_developer_fixed BEFORE UPDATE OF developer_id ON secrets
  FOR EACH ROW WHEN (OLD.developer_id IS DISTINCT FROM NEW.developer_id) EXECUTE FUNCTION secrets_developer_fixed();
`,
  },
  {
    version: 4,
    name: "enabled versions by secret",
    sql: `
-- An update destroys the versions that fall out of the kept window (SECRETS_MAX_VERSIONS):
-- through the primary key that scanned every version the secret ever had, destroyed
-- ones included, so an update got slower with each one before it. This index holds
-- only the versions still enabled, at most the window's size per secret.
CREATE INDEX secret_versions_enabled ON secret_versions (secret_id, version) WHERE state = 'enabled';
`,
  },
  {
    version: 5,
    name: "sealed version of one secret",
    sql: `
-- One version of a secret (0 = the current one) with its wrapped data key: what an
-- uncached read of a single name needs (a cache miss or a read with no value cache at
-- low load, and every read of a pinned version). Sent as text, that join was planned
-- on every call, and planning cost Postgres several times the execution (~0.35 ms of
-- CPU a read against ~0.1 ms); in a plpgsql function its plan is kept per connection,
-- and after a few calls the generic one (the unique index path) is used. Nothing is
-- prepared in the session, so it works behind any connection pooler.
CREATE FUNCTION secret_sealed_version(p_developer text, p_name text, p_version integer)
RETURNS TABLE (secret_id uuid, name text, version integer, state text, ciphertext bytea, dek_version integer,
               kek_id text, wrapped_key bytea)
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
  RETURN QUERY
    SELECT s.id, s.name, v.version, v.state, v.ciphertext, v.dek_version, k.kek_id, k.wrapped_key
    FROM secrets s
    JOIN secret_versions v
      ON v.secret_id = s.id AND v.version = CASE WHEN p_version = 0 THEN s.current_version ELSE p_version END
    LEFT JOIN data_keys k ON k.developer_id = s.developer_id AND k.version = v.dek_version
    WHERE s.developer_id = p_developer AND s.name = p_name AND v.developer_id = p_developer;
END
$fn$;
`,
  },
  {
    version: 6,
    name: "audit events keyed by writer and sequence",
    sql: `
-- No query looks an audit event up by id alone (pages go by developer and id, the
-- chain by writer and sequence), but every event, one per audited call, paid for
-- the upkeep of its primary key's index. (writer_id, writer_sequence) is unique and
-- NOT NULL already and stays the key the writer's retry check relies on; logical
-- replication identifies rows by it.
ALTER TABLE audit_events DROP CONSTRAINT audit_events_pkey;
ALTER TABLE audit_events REPLICA IDENTITY USING INDEX audit_events_writer_sequence_key;
`,
  },
  {
    version: 7,
    name: "audit events by developer, ascending",
    sql: `
-- Pages of a developer's events go newest first, and a B-tree reads backwards as
-- cheaply as forwards, so the index needs no DESC. In descending order each new
-- event (the highest id) went to the front of its developer's run of entries,
-- where a full page splits in half, so a busy developer's entries filled pages
-- about half; ascending, it goes to the end, where Postgres splits a page leaving
-- the old half full (measured with one developer's events: 552 pages for 50,000
-- events before, 309 after, and less CPU and WAL a row; with many developers
-- interleaved, no difference either way).
CREATE INDEX audit_events_by_developer_asc ON audit_events (developer_id, id);
DROP INDEX audit_events_by_developer;
ALTER INDEX audit_events_by_developer_asc RENAME TO audit_events_by_developer;
`,
  },
  {
    version: 8,
    name: "sealed current versions of several secrets",
    sql: `
-- The current versions of several secrets (of one developer or of several) with their
-- wrapped data keys: the reads that coalesce under load, a ResolveSecrets miss.
-- Sent as text, the join was planned on every call, which cost Postgres more than
-- running it (measured, ten names: ~0.45 ms of ~1 ms of backend CPU), and with few
-- rows per developer the planner chose sequential scans of the developer's secrets
-- over ten index probes. Here the plan is kept per connection and generic (a
-- custom plan would be redone on every call), and each name is one probe of the
-- (developer_id, name) key whatever the statistics say: the LIMIT keeps the lookup
-- a subquery run per name (the key is unique, so it never cuts a row). Each row
-- carries the developer id read from the secret itself.
CREATE FUNCTION secret_sealed_current(p_developers text[], p_names text[])
RETURNS TABLE (developer_id text, secret_id uuid, name text, version integer, state text, ciphertext bytea,
               dek_version integer, kek_id text, wrapped_key bytea)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
  RETURN QUERY
    SELECT s.developer_id, s.id, s.name, v.version, v.state, v.ciphertext, v.dek_version, k.kek_id, k.wrapped_key
    FROM unnest(p_developers, p_names) AS w(developer_id, name)
    CROSS JOIN LATERAL (
      SELECT x.developer_id, x.id, x.name, x.current_version FROM secrets x
      WHERE x.developer_id = w.developer_id AND x.name = w.name
      LIMIT 1
    ) s
    JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.current_version AND v.developer_id = s.developer_id
    LEFT JOIN data_keys k ON k.developer_id = s.developer_id AND k.version = v.dek_version;
END
$fn$;
`,
  },
  {
    version: 9,
    name: "data key identities never reused; versions reference their data key",
    sql: `
-- A data key's version is its identity: the DEK caches of every replica are keyed
-- by (developer, version), the wrapped key's associated data binds it, and a value's
-- envelope names it. Counted per developer, it started at 1 again after a shred, so a
-- replica still holding the shredded key sealed new values under it. Versions now
-- come from one sequence for all developers and are never handed out twice.
CREATE SEQUENCE data_key_version AS integer;
SELECT setval('data_key_version', COALESCE((SELECT max(version) FROM data_keys), 0) + 1, false);

-- A stored ciphertext always has its data key: the database refuses to delete a key
-- that a version still references, and to insert a version under a key that is gone,
-- whatever race a writer and a shred run. (NOT VALID: rows from before are not
-- re-checked at start-up; every new or changed row is.)
ALTER TABLE secret_versions ADD CONSTRAINT secret_versions_data_key_fkey
  FOREIGN KEY (developer_id, dek_version) REFERENCES data_keys (developer_id, version) NOT VALID;

-- What references a data key, for that constraint's check on delete and for the
-- key jobs' recounts: versions with a data key (destroyed versions have none).
CREATE INDEX secret_versions_by_data_key ON secret_versions (developer_id, dek_version) WHERE dek_version IS NOT NULL;
DROP INDEX secret_versions_by_dek;
`,
  },
  {
    version: 10,
    name: "the recovery bin",
    sql: `
-- A deleted secret stays in the recovery bin, with its versions, until purge_time;
-- by name it is gone, and the name may be taken again at once, so only live secrets
-- (delete_time IS NULL) hold a name. The index keeps the constraint's name, which
-- insertSecret maps to SECRET_EXISTS and a restore to RESTORE_NAME_TAKEN.
ALTER TABLE secrets ADD COLUMN delete_time timestamptz;
ALTER TABLE secrets ADD COLUMN purge_time timestamptz;
ALTER TABLE secrets ADD CONSTRAINT secrets_binned_have_purge_time CHECK ((delete_time IS NULL) = (purge_time IS NULL));
ALTER TABLE secrets DROP CONSTRAINT secrets_developer_name_key;
CREATE UNIQUE INDEX secrets_developer_name_key ON secrets (developer_id, name) WHERE delete_time IS NULL;
-- A developer's bin by name (ListSecrets with show_deleted, RestoreSecret by name),
-- and what the purge job finds due.
CREATE INDEX secrets_binned ON secrets (developer_id, name, id) WHERE delete_time IS NOT NULL;
CREATE INDEX secrets_purge_due ON secrets (purge_time) WHERE purge_time IS NOT NULL;

-- The quota counts live secrets: a binned secret leaves the count and a restored
-- one comes back into it (a restore checks the quota as a create does).
CREATE OR REPLACE FUNCTION secrets_count_deleted() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  UPDATE developer_secret_counts AS c SET secrets = c.secrets - d.n
    FROM (SELECT developer_id, count(*) AS n FROM removed WHERE delete_time IS NULL GROUP BY developer_id) AS d
    WHERE c.developer_id = d.developer_id;
  RETURN NULL;
END
$fn$;
CREATE FUNCTION secrets_count_binned() RETURNS trigger LANGUAGE plpgsql AS $fn$
BEGIN
  UPDATE developer_secret_counts SET secrets = secrets + CASE WHEN NEW.delete_time IS NULL THEN 1 ELSE -1 END
    WHERE developer_id = NEW.developer_id;
  RETURN NULL;
END
$fn$;
CREATE TRIGGER secrets_count_bin AFTER UPDATE OF delete_time ON secrets
  FOR EACH ROW WHEN ((OLD.delete_time IS NULL) <> (NEW.delete_time IS NULL)) EXECUTE FUNCTION secrets_count_binned();

-- The reads by name (migrations 5 and 8) see live secrets only.
CREATE OR REPLACE FUNCTION secret_sealed_version(p_developer text, p_name text, p_version integer)
RETURNS TABLE (secret_id uuid, name text, version integer, state text, ciphertext bytea, dek_version integer,
               kek_id text, wrapped_key bytea)
LANGUAGE plpgsql STABLE AS $fn$
BEGIN
  RETURN QUERY
    SELECT s.id, s.name, v.version, v.state, v.ciphertext, v.dek_version, k.kek_id, k.wrapped_key
    FROM secrets s
    JOIN secret_versions v
      ON v.secret_id = s.id AND v.version = CASE WHEN p_version = 0 THEN s.current_version ELSE p_version END
    LEFT JOIN data_keys k ON k.developer_id = s.developer_id AND k.version = v.dek_version
    WHERE s.developer_id = p_developer AND s.name = p_name AND s.delete_time IS NULL AND v.developer_id = p_developer;
END
$fn$;
CREATE OR REPLACE FUNCTION secret_sealed_current(p_developers text[], p_names text[])
RETURNS TABLE (developer_id text, secret_id uuid, name text, version integer, state text, ciphertext bytea,
               dek_version integer, kek_id text, wrapped_key bytea)
LANGUAGE plpgsql STABLE
SET plan_cache_mode = force_generic_plan
AS $fn$
BEGIN
  RETURN QUERY
    SELECT s.developer_id, s.id, s.name, v.version, v.state, v.ciphertext, v.dek_version, k.kek_id, k.wrapped_key
    FROM unnest(p_developers, p_names) AS w(developer_id, name)
    CROSS JOIN LATERAL (
      SELECT x.developer_id, x.id, x.name, x.current_version FROM secrets x
      WHERE x.developer_id = w.developer_id AND x.name = w.name AND x.delete_time IS NULL
      LIMIT 1
    ) s
    JOIN secret_versions v ON v.secret_id = s.id AND v.version = s.current_version AND v.developer_id = s.developer_id
    LEFT JOIN data_keys k ON k.developer_id = s.developer_id AND k.version = v.dek_version;
END
$fn$;
`,
  },
  {
    version: 11,
    name: "expiry and rotation schedules",
    sql: `
-- A live secret may expire (then the lifecycle job moves it to the recovery bin) and
-- may carry a rotation schedule, a reminder: at next_rotation_time the job records a
-- RotationDue event, sets rotation_due_time if it is not set, and moves
-- next_rotation_time on by the period; a new value clears rotation_due_time.
ALTER TABLE secrets ADD COLUMN expire_time timestamptz;
ALTER TABLE secrets ADD COLUMN next_rotation_time timestamptz;
ALTER TABLE secrets ADD COLUMN rotation_period_seconds bigint;
ALTER TABLE secrets ADD COLUMN rotation_due_time timestamptz;
ALTER TABLE secrets ADD CONSTRAINT secrets_rotation_whole
  CHECK ((next_rotation_time IS NULL) = (rotation_period_seconds IS NULL) AND rotation_period_seconds >= 3600);
-- What the lifecycle job finds due, among live secrets only.
CREATE INDEX secrets_expire_due ON secrets (expire_time) WHERE expire_time IS NOT NULL AND delete_time IS NULL;
CREATE INDEX secrets_rotation_due ON secrets (next_rotation_time) WHERE next_rotation_time IS NOT NULL AND delete_time IS NULL;
`,
  },
  {
    version: 12,
    name: "the change log",
    sql: `
-- Each developer's changes, for WatchSecrets: one row per change, appended in the
-- transaction that makes it. developer_revisions holds the last revision given out;
-- a change takes the next one with an upsert that locks the developer's row until
-- commit, so revisions are gap-free (a rollback gives its number back) and in commit
-- order. compacted_revision: the log no longer holds the changes up to it.
CREATE TABLE developer_revisions (
  developer_id text PRIMARY KEY,
  revision bigint NOT NULL,
  compacted_revision bigint NOT NULL DEFAULT 0
);
CREATE TABLE secret_changes (
  developer_id text NOT NULL,
  revision bigint NOT NULL,
  kind smallint NOT NULL,
  name text COLLATE "C" NOT NULL,
  version integer NOT NULL,
  change_time timestamptz NOT NULL,
  PRIMARY KEY (developer_id, revision)
);
-- What the retention trims, oldest first.
CREATE INDEX secret_changes_by_time ON secret_changes (change_time);
`,
  },
  {
    version: 13,
    name: "compact audit events, partitioned by day",
    sql: `
-- The audit trail, compact and partitioned by day (docs/design.md, Audit trail).
-- The rows written before keep their table, renamed; the view audit_events shows
-- both tables in the old columns, so every reader sees one trail. Ids continue from
-- the old table's sequence, so they stay unique and increasing across both.
ALTER TABLE audit_events RENAME TO audit_events_v1;

-- A writer (one process) is named once here; its events carry the number.
CREATE TABLE audit_writers (
  writer integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  writer_id text NOT NULL UNIQUE,
  registered_at timestamptz NOT NULL DEFAULT now()
);

-- action and outcome are codes (src/audit/audit-codes.ts; the outcome is the gRPC
-- status number); -1 means the name is in action_name / outcome_name. caller_subject
-- is NULL when it is the developer id. A request id or caller token id that is a UUID
-- in its canonical lower-case text is stored as a uuid (16 bytes), else as text: one
-- of each pair is set. prev_hash is set only on the first event of a
-- writer's segment (its events in one partition): the hash of the previous segment's
-- last event. Columns are ordered widest first so that no padding is stored.
CREATE TABLE audit_log (
  id               bigint NOT NULL DEFAULT nextval('audit_events_id_seq'),
  time             timestamptz NOT NULL,
  writer_sequence  bigint NOT NULL,
  writer           integer NOT NULL,
  version          integer NOT NULL,
  action           smallint NOT NULL,
  outcome          smallint NOT NULL,
  developer_id     text NOT NULL,
  request_uuid     uuid,
  caller_token_uuid uuid,
  caller_subject   text,
  caller_token_id  text,
  caller_identity  text NOT NULL,
  secret_name      text NOT NULL,
  request_id       text,
  peer             text NOT NULL,
  action_name      text,
  outcome_name     text,
  prev_hash        bytea,
  hash             bytea NOT NULL
) PARTITION BY RANGE (time);
CREATE INDEX audit_log_by_developer ON audit_log (developer_id, id);
CREATE INDEX audit_log_by_writer ON audit_log (writer, writer_sequence);
-- Cloned onto every partition. TRUNCATE triggers are not: each partition gets its
-- own when it is created (store/audit-store.ts). Retention drops whole partitions.
CREATE TRIGGER audit_log_no_update_delete BEFORE UPDATE OR DELETE ON audit_log
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON audit_log
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- The head of every segment dropped by retention: what audit:verify joins the chain
-- that remains to, and names as archived.
CREATE TABLE audit_checkpoints (
  writer          integer NOT NULL,
  partition_name  text NOT NULL,
  first_sequence  bigint NOT NULL,
  last_sequence   bigint NOT NULL,
  events          bigint NOT NULL,
  last_hash       bytea NOT NULL,
  dropped_at      timestamptz NOT NULL DEFAULT now(),
  PRIMARY KEY (writer, first_sequence)
);
CREATE TRIGGER audit_checkpoints_no_update_delete BEFORE UPDATE OR DELETE ON audit_checkpoints
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_checkpoints_no_truncate BEFORE TRUNCATE ON audit_checkpoints
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- Partition DDL runs as the owner of audit_log (these functions are SECURITY DEFINER),
-- so the service's role needs no more than INSERT and SELECT on the tables and EXECUTE
-- here; one process at a time (the advisory lock; the retention job takes it first
-- with a try). A day's partition is audit_log_YYYYMMDD, [midnight UTC, next midnight).
CREATE FUNCTION audit_log_create_partition(p_day date) RETURNS boolean
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
DECLARE
  part text := 'audit_log_' || to_char(p_day, 'YYYYMMDD');
BEGIN
  PERFORM pg_advisory_xact_lock(7310452923);
  IF to_regclass(quote_ident(part)) IS NOT NULL THEN
    RETURN false;
  END IF;
  EXECUTE format('CREATE TABLE %I PARTITION OF audit_log FOR VALUES FROM (%L) TO (%L)', part,
    p_day::timestamp AT TIME ZONE 'UTC', (p_day + 1)::timestamp AT TIME ZONE 'UTC');
  EXECUTE format('CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON %I
    FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()', part);
  RETURN true;
END
$fn$;

-- Drops one partition after recording, per writer, the head of the segment it held;
-- both commit together. Returns the number of events dropped.
${dropPartitionFunction("CREATE FUNCTION", "^audit_log_[0-9]{8}$")}

-- Today's partition and a few ahead; from then on the retention job makes them.
SELECT audit_log_create_partition((now() AT TIME ZONE 'UTC')::date + d) FROM generate_series(0, 3) AS d;

-- Not for PUBLIC: grant EXECUTE to the service's role (docs/operations.md).
REVOKE EXECUTE ON FUNCTION audit_log_create_partition(date), audit_log_drop_partition(text) FROM PUBLIC;

-- The names of the codes, fixed forever (a new action gets the next code in a new
-- migration; until then the writer stores its name). Inlined by the planner.
CREATE FUNCTION audit_action_name(code smallint) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
  SELECT CASE code
    WHEN 1 THEN 'AccessSecret' WHEN 2 THEN 'ResolveSecrets' WHEN 3 THEN 'CreateSecret' WHEN 4 THEN 'GetSecret'
    WHEN 5 THEN 'ListSecrets' WHEN 6 THEN 'UpdateSecret' WHEN 7 THEN 'DeleteSecret' WHEN 8 THEN 'ListSecretVersions'
    WHEN 9 THEN 'DestroySecretVersion' WHEN 10 THEN 'RestoreSecret' WHEN 11 THEN 'WatchSecrets'
    WHEN 12 THEN 'ListAuditEvents' WHEN 13 THEN 'RotateMasterKey' WHEN 14 THEN 'RotateDeveloperKey'
    WHEN 15 THEN 'ShredDeveloper' WHEN 16 THEN 'GetKeyStatus' WHEN 17 THEN 'ExpireSecret' WHEN 18 THEN 'RotationDue'
    WHEN 19 THEN 'PurgeSecret' END
$fn$;
CREATE FUNCTION audit_outcome_name(code smallint) RETURNS text LANGUAGE sql IMMUTABLE PARALLEL SAFE AS $fn$
  SELECT (ARRAY['OK', 'CANCELLED', 'UNKNOWN', 'INVALID_ARGUMENT', 'DEADLINE_EXCEEDED', 'NOT_FOUND', 'ALREADY_EXISTS',
    'PERMISSION_DENIED', 'RESOURCE_EXHAUSTED', 'FAILED_PRECONDITION', 'ABORTED', 'OUT_OF_RANGE', 'UNIMPLEMENTED',
    'INTERNAL', 'UNAVAILABLE', 'DATA_LOSS', 'UNAUTHENTICATED'])[code + 1]
$fn$;

-- Both tables in the columns of the old one: ListAuditEvents and every reader of
-- audit_events see one trail. prev_hash is '' on a compact event that does not start
-- a segment. The view refuses UPDATE and DELETE as the tables do.
CREATE VIEW audit_events AS
  SELECT id, time, developer_id, caller_subject, caller_token_id, caller_identity, action, secret_name, version,
         outcome, request_id, peer, writer_id, writer_sequence, prev_hash, hash
  FROM audit_events_v1
  UNION ALL
  SELECT l.id, l.time, l.developer_id, COALESCE(l.caller_subject, l.developer_id),
         COALESCE(l.caller_token_id, l.caller_token_uuid::text), l.caller_identity,
         COALESCE(l.action_name, audit_action_name(l.action)), l.secret_name, l.version,
         COALESCE(l.outcome_name, audit_outcome_name(l.outcome)), COALESCE(l.request_id, l.request_uuid::text), l.peer,
         (SELECT w.writer_id FROM audit_writers w WHERE w.writer = l.writer), l.writer_sequence,
         COALESCE(encode(l.prev_hash, 'hex'), ''), encode(l.hash, 'hex')
  FROM audit_log l;
CREATE TRIGGER audit_events_no_update_delete INSTEAD OF UPDATE OR DELETE ON audit_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
`,
  },
  {
    version: 14,
    name: "audit events name their developer by number",
    sql: `
-- A developer is named once here, the first time a writer stores one of their events;
-- events carry the number (docs/design.md, Audit trail). Numbers are never reused.
CREATE TABLE audit_developers (
  developer integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  developer_id text NOT NULL UNIQUE
);
CREATE TRIGGER audit_developers_no_update_delete BEFORE UPDATE OR DELETE ON audit_developers
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_developers_no_truncate BEFORE TRUNCATE ON audit_developers
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- New events set developer and leave developer_id NULL; those written before keep
-- their developer_id. Exactly one of the two is set. The chain hashes the developer
-- id either way (src/audit/chain.ts), so the stored form does not change a hash.
ALTER TABLE audit_log ADD COLUMN developer integer;
ALTER TABLE audit_log ALTER COLUMN developer_id DROP NOT NULL;
ALTER TABLE audit_log ADD CONSTRAINT audit_log_one_developer CHECK ((developer IS NULL) <> (developer_id IS NULL));
DROP INDEX audit_log_by_developer;
CREATE INDEX audit_log_by_developer ON audit_log (developer, id) WHERE developer IS NOT NULL;
CREATE INDEX audit_log_by_developer_id ON audit_log (developer_id, id) WHERE developer_id IS NOT NULL;

-- audit_log's events in the columns of audit_events, and the two forms of their
-- developer: a listing filters old rows on stored_developer_id and new ones on
-- developer, each through its index (store/audit-store.ts, listAuditEvents). One
-- table and scalar subqueries, no join: the planner then reads a developer's newest
-- events in id order from the index and stops at the page's end.
CREATE VIEW audit_log_events AS
  SELECT l.id, l.time,
         COALESCE(l.developer_id, (SELECT d.developer_id FROM audit_developers d WHERE d.developer = l.developer))
           AS developer_id,
         COALESCE(l.caller_subject, l.developer_id, (SELECT d.developer_id FROM audit_developers d WHERE d.developer = l.developer))
           AS caller_subject,
         COALESCE(l.caller_token_id, l.caller_token_uuid::text) AS caller_token_id, l.caller_identity,
         COALESCE(l.action_name, audit_action_name(l.action)) AS action, l.secret_name, l.version,
         COALESCE(l.outcome_name, audit_outcome_name(l.outcome)) AS outcome,
         COALESCE(l.request_id, l.request_uuid::text) AS request_id, l.peer,
         (SELECT w.writer_id FROM audit_writers w WHERE w.writer = l.writer) AS writer_id, l.writer_sequence,
         COALESCE(encode(l.prev_hash, 'hex'), '') AS prev_hash, encode(l.hash, 'hex') AS hash,
         l.developer, l.developer_id AS stored_developer_id
  FROM audit_log l;
CREATE TRIGGER audit_log_events_no_update_delete INSTEAD OF UPDATE OR DELETE ON audit_log_events
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();

CREATE OR REPLACE VIEW audit_events AS
  SELECT id, time, developer_id, caller_subject, caller_token_id, caller_identity, action, secret_name, version,
         outcome, request_id, peer, writer_id, writer_sequence, prev_hash, hash
  FROM audit_events_v1
  UNION ALL
  SELECT id, time, developer_id, caller_subject, caller_token_id, caller_identity, action, secret_name, version,
         outcome, request_id, peer, writer_id, writer_sequence, prev_hash, hash
  FROM audit_log_events;
`,
  },
  {
    version: 15,
    name: "audit partitions of a configurable number of hours",
    sql: `
-- audit_log's partitions may span any whole number of UTC hours that divides a day
-- (SECRETS_AUDIT_PARTITION_HOURS; a day by default), never crossing midnight: one
-- that spans a whole day is audit_log_YYYYMMDD (as migration 13 names them), any
-- other audit_log_YYYYMMDD_HH after its first hour. Names sort in time order.

-- Every partition with its bounds, read from the catalog (the bound's text is
-- written and read back under the same settings, so it round-trips exactly).
CREATE FUNCTION audit_log_partitions() RETURNS TABLE (name text, lo timestamptz, hi timestamptz)
LANGUAGE sql STABLE SET search_path FROM CURRENT SET timezone TO 'UTC' SET datestyle TO 'ISO, YMD' AS $fn$
  SELECT c.relname::text, b[1]::timestamptz, b[2]::timestamptz
  FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid,
       regexp_match(pg_get_expr(c.relpartbound, c.oid), $re$FROM [(]'([^']+)'[)] TO [(]'([^']+)'[)]$re$) AS b
  WHERE i.inhparent = 'audit_log'::regclass
  ORDER BY 2
$fn$;

-- Makes partitions so that [p_from, p_to) is covered: one per gap between the
-- partitions that exist, so partitions of another size made before (a change of
-- SECRETS_AUDIT_PARTITION_HOURS) stay as they are and nothing overlaps. Returns how
-- many it made. Runs as the owner of audit_log, one process at a time, as
-- audit_log_create_partition does.
CREATE FUNCTION audit_log_cover(p_from timestamptz, p_to timestamptz) RETURNS integer
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT SET timezone TO 'UTC' AS $fn$
DECLARE
  cur timestamptz := p_from;
  r record;
  gaps tstzrange[] := '{}';
  g tstzrange;
  part text;
BEGIN
  IF p_from >= p_to OR date_trunc('hour', p_from) <> p_from OR date_trunc('hour', p_to) <> p_to
     OR p_to > date_trunc('day', p_from) + interval '1 day' THEN
    RAISE EXCEPTION 'an audit partition spans whole UTC hours within one day, not [%, %)', p_from, p_to;
  END IF;
  PERFORM pg_advisory_xact_lock(7310452923);
  FOR r IN SELECT p.lo, p.hi FROM audit_log_partitions() p WHERE p.hi > p_from AND p.lo < p_to ORDER BY p.lo LOOP
    IF r.lo > cur THEN
      gaps := gaps || tstzrange(cur, r.lo);
    END IF;
    cur := greatest(cur, r.hi);
  END LOOP;
  IF cur < p_to THEN
    gaps := gaps || tstzrange(cur, p_to);
  END IF;
  FOREACH g IN ARRAY gaps LOOP
    part := 'audit_log_' || to_char(lower(g), 'YYYYMMDD') ||
      CASE WHEN upper(g) - lower(g) = interval '24 hours' THEN '' ELSE to_char(lower(g), '"_"HH24') END;
    EXECUTE format('CREATE TABLE %I PARTITION OF audit_log FOR VALUES FROM (%L) TO (%L)', part, lower(g), upper(g));
    EXECUTE format('CREATE TRIGGER audit_log_no_truncate BEFORE TRUNCATE ON %I
      FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only()', part);
  END LOOP;
  RETURN cardinality(gaps);
END
$fn$;

-- As in migration 13, for either form of name.
${dropPartitionFunction("CREATE OR REPLACE FUNCTION", "^audit_log_[0-9]{8}(_[0-9]{2})?$")}

-- Not for PUBLIC: grant EXECUTE to the service's role (docs/operations.md).
REVOKE EXECUTE ON FUNCTION audit_log_cover(timestamptz, timestamptz) FROM PUBLIC;
`,
  },
  {
    version: 16,
    name: "audit events without a per-writer index",
    sql: `
-- Every event paid ~32 bytes for audit_log_by_writer, which served only rare reads:
-- audit:verify and the export (which now read a partition at a time, sorted: one
-- pass each, src/store/audit-store.ts, readPartitionEvents), a writer's retry after
-- a lost acknowledgement (now bounded by its batch's times, which a BRIN index on
-- time narrows to a few pages) and the check that a new writer id has no events
-- (now a claim on the writer's row). docs/design.md, Audit trail.
DROP INDEX audit_log_by_writer;
CREATE INDEX audit_log_by_time ON audit_log USING brin (time) WITH (autosummarize = on);

-- Set by the process that registered the writer id: registering again with the
-- same claim (a lost acknowledgement) returns the same number, any other is refused.
-- Writers registered before have none, so their ids can never be taken again.
ALTER TABLE audit_writers ADD COLUMN claim uuid;

-- As in migration 15, but without an index on (writer, writer_sequence): each
-- segment's last hash is found by one join over the partition, not a lookup per writer.
${dropPartitionFunction("CREATE OR REPLACE FUNCTION", "^audit_log_[0-9]{8}(_[0-9]{2})?$", "join")}
`,
  },
  {
    version: 17,
    name: "audit events name their secret by number",
    sql: `
-- A secret name (or the names of one call, joined by commas) is stored once here, the
-- first time a writer stores an event naming it; events carry the number
-- (docs/design.md, Audit trail). Numbers are never reused. Append-only, like the events.
CREATE TABLE audit_names (
  name integer GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
  secret_name text NOT NULL UNIQUE
);
CREATE TRIGGER audit_names_no_update_delete BEFORE UPDATE OR DELETE ON audit_names
  FOR EACH ROW EXECUTE FUNCTION audit_events_append_only();
CREATE TRIGGER audit_names_no_truncate BEFORE TRUNCATE ON audit_names
  FOR EACH STATEMENT EXECUTE FUNCTION audit_events_append_only();

-- New events store a name that is not empty and not too long to index as its number
-- (secret_name NULL); any other name as text, as rows written before do. The chain
-- hashes the text either way (chain.ts), so the stored form does not change a hash,
-- and a row that holds neither form no longer verifies: no CHECK, which would read
-- the whole table under an exclusive lock.
ALTER TABLE audit_log ADD COLUMN name integer, ALTER COLUMN secret_name DROP NOT NULL;

-- As in migration 14, with the name in either form.
CREATE OR REPLACE VIEW audit_log_events AS
  SELECT l.id, l.time,
         COALESCE(l.developer_id, (SELECT d.developer_id FROM audit_developers d WHERE d.developer = l.developer))
           AS developer_id,
         COALESCE(l.caller_subject, l.developer_id, (SELECT d.developer_id FROM audit_developers d WHERE d.developer = l.developer))
           AS caller_subject,
         COALESCE(l.caller_token_id, l.caller_token_uuid::text) AS caller_token_id, l.caller_identity,
         COALESCE(l.action_name, audit_action_name(l.action)) AS action,
         COALESCE(l.secret_name, (SELECT n.secret_name FROM audit_names n WHERE n.name = l.name)) AS secret_name, l.version,
         COALESCE(l.outcome_name, audit_outcome_name(l.outcome)) AS outcome,
         COALESCE(l.request_id, l.request_uuid::text) AS request_id,
         l.peer,
         (SELECT w.writer_id FROM audit_writers w WHERE w.writer = l.writer) AS writer_id, l.writer_sequence,
         COALESCE(encode(l.prev_hash, 'hex'), '') AS prev_hash, encode(l.hash, 'hex') AS hash,
         l.developer, l.developer_id AS stored_developer_id
  FROM audit_log l;
`,
  },
];

/**
 * audit_log_drop_partition (migrations 13, 15 and 16; 15 accepts more partition
 * names, 16 finds each segment's last hash by a join instead of an index lookup):
 * drops one partition after recording, per writer, the head of the segment it held;
 * both commit together. Returns the number of events dropped.
 */
function dropPartitionFunction(
  create: "CREATE FUNCTION" | "CREATE OR REPLACE FUNCTION",
  namePattern: string,
  lastHash: "lookup" | "join" = "lookup",
): string {
  const checkpoints =
    lastHash === "lookup"
      ? `'WITH g AS (SELECT writer, min(writer_sequence) AS first, max(writer_sequence) AS last, count(*) AS n
                FROM %1$I GROUP BY writer),
          ins AS (INSERT INTO audit_checkpoints (writer, partition_name, first_sequence, last_sequence, events, last_hash)
                  SELECT g.writer, %2$L, g.first, g.last, g.n,
                         (SELECT p.hash FROM %1$I p WHERE p.writer = g.writer AND p.writer_sequence = g.last LIMIT 1)
                  FROM g RETURNING events)
     SELECT COALESCE(sum(events), 0)::int8 FROM ins'`
      : `'WITH g AS (SELECT writer, min(writer_sequence) AS first, max(writer_sequence) AS last, count(*) AS n
                FROM %1$I GROUP BY writer),
          h AS (SELECT DISTINCT ON (p.writer) p.writer, p.hash FROM %1$I p JOIN g ON g.writer = p.writer AND g.last = p.writer_sequence),
          ins AS (INSERT INTO audit_checkpoints (writer, partition_name, first_sequence, last_sequence, events, last_hash)
                  SELECT g.writer, %2$L, g.first, g.last, g.n, h.hash FROM g JOIN h ON h.writer = g.writer
                  RETURNING events)
     SELECT COALESCE(sum(events), 0)::int8 FROM ins'`;
  return `${create} audit_log_drop_partition(p_name text) RETURNS bigint
LANGUAGE plpgsql SECURITY DEFINER SET search_path FROM CURRENT AS $fn$
DECLARE
  dropped bigint;
BEGIN
  PERFORM pg_advisory_xact_lock(7310452923);
  IF p_name !~ '${namePattern}' OR NOT EXISTS (
    SELECT 1 FROM pg_inherits i JOIN pg_class c ON c.oid = i.inhrelid
    WHERE i.inhparent = 'audit_log'::regclass AND c.relname = p_name
  ) THEN
    RAISE EXCEPTION 'not a partition of audit_log: %', p_name;
  END IF;
  EXECUTE format(
    ${checkpoints}, p_name, p_name) INTO dropped;
  EXECUTE format('DROP TABLE %I', p_name);
  RETURN dropped;
END
$fn$;`;
}
