/**
 * The versioned schema. Each migration runs once, in order, inside a transaction,
 * while `migrate` holds the advisory lock; applied versions are recorded in
 * `schema_migrations`. Never edit a released migration: add the next one.
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
];
