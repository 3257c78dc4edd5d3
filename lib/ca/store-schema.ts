/**
 * The CA database schema, as forward-only migrations. Times are integer milliseconds since the epoch. An org id
 * of '' means "the instance" (instance proxies, the admin identity), so UNIQUE keys work without NULLs.
 */
import type { Migration } from '../store/db.js';

/** Migration 2, the same on both component tables: the statements it has always run, written once. */
function generationColumns(table: string): string {
  const columns = [
    'current_serial TEXT',
    'current_serials_json TEXT',
    'current_spki TEXT',
    'previous_serial TEXT',
    'previous_serials_json TEXT',
    'previous_retire_at INTEGER',
  ];
  return `${columns.map((c) => `ALTER TABLE ${table} ADD COLUMN ${c};\n`).join('')}CREATE INDEX ${table}_retire ON ${table} (previous_retire_at) WHERE previous_retire_at IS NOT NULL;\n`;
}

export const MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'ca initial schema',
    sql: `
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) STRICT;

CREATE TABLE authorities (
  id TEXT PRIMARY KEY,
  org_id TEXT NOT NULL,
  purpose TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('x509', 'ssh', 'ed25519')),
  public TEXT NOT NULL,
  sealed_key BLOB,
  created_at INTEGER NOT NULL,
  not_after INTEGER
) STRICT;

CREATE TABLE orgs (
  org_id TEXT PRIMARY KEY CHECK (org_id <> ''),
  created_at INTEGER NOT NULL,
  deleted_at INTEGER
) STRICT;

CREATE TABLE identities (
  row_id INTEGER PRIMARY KEY,
  org_id TEXT NOT NULL,
  identity_id TEXT NOT NULL,
  role TEXT NOT NULL CHECK (role IN ('admin', 'org-admin', 'member')),
  groups_json TEXT NOT NULL DEFAULT '[]',
  client_id TEXT NOT NULL UNIQUE,
  secret_hash TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  revoked_at INTEGER,
  UNIQUE (org_id, identity_id)
) STRICT;

CREATE TABLE access_tokens (
  token_hash TEXT PRIMARY KEY,
  identity_row INTEGER NOT NULL REFERENCES identities (row_id) ON DELETE CASCADE,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  revoked_at INTEGER
) STRICT;
CREATE INDEX access_tokens_identity ON access_tokens (identity_row);

CREATE TABLE enrollment_tokens (
  token_hash TEXT PRIMARY KEY,
  org_id TEXT NOT NULL,
  kind TEXT NOT NULL CHECK (kind IN ('gateway', 'proxy')),
  subject_id TEXT NOT NULL,
  created_by TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL,
  used_at INTEGER
) STRICT;

CREATE TABLE policies (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  org_id TEXT NOT NULL,
  rule_id TEXT NOT NULL,
  subject TEXT NOT NULL,
  gateways_json TEXT NOT NULL,
  targets_json TEXT NOT NULL,
  modes_json TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  UNIQUE (org_id, rule_id)
);

CREATE TABLE gateways (
  org_id TEXT NOT NULL,
  gateway_id TEXT NOT NULL,
  uri TEXT NOT NULL,
  enrolled_at INTEGER NOT NULL,
  renewed_at INTEGER,
  revoked_at INTEGER,
  PRIMARY KEY (org_id, gateway_id)
) STRICT;

CREATE TABLE proxies (
  org_id TEXT NOT NULL,
  proxy_id TEXT NOT NULL,
  scope TEXT NOT NULL CHECK (scope IN ('instance', 'org')),
  uri TEXT NOT NULL,
  hostnames_json TEXT NOT NULL,
  ssh_address TEXT NOT NULL,
  tls_address TEXT NOT NULL,
  enrolled_at INTEGER NOT NULL,
  renewed_at INTEGER,
  revoked_at INTEGER,
  PRIMARY KEY (org_id, proxy_id)
) STRICT;

CREATE TABLE certificates (
  serial TEXT PRIMARY KEY,
  kind TEXT NOT NULL,
  authority_id TEXT NOT NULL,
  org_id TEXT NOT NULL,
  subject_uri TEXT NOT NULL,
  fingerprint TEXT NOT NULL,
  not_after INTEGER NOT NULL,
  requested_by TEXT NOT NULL,
  grant_id TEXT,
  created_at INTEGER NOT NULL
) STRICT;
CREATE INDEX certificates_subject ON certificates (subject_uri);

CREATE TABLE grants (
  grant_id TEXT PRIMARY KEY,
  org_id TEXT NOT NULL,
  gateway_id TEXT NOT NULL,
  identity_id TEXT NOT NULL,
  target_json TEXT NOT NULL,
  mode TEXT NOT NULL,
  rule_id TEXT NOT NULL,
  created_at INTEGER NOT NULL,
  expires_at INTEGER NOT NULL
) STRICT;

CREATE TABLE revocations (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  kind TEXT NOT NULL CHECK (kind IN ('gateway', 'proxy', 'identity', 'grant', 'certificate')),
  org_id TEXT NOT NULL,
  subject TEXT NOT NULL,
  reason TEXT,
  revoked_by TEXT NOT NULL,
  at INTEGER NOT NULL,
  UNIQUE (kind, org_id, subject)
);

CREATE TABLE request_nonces (
  nonce TEXT PRIMARY KEY,
  expires_at INTEGER NOT NULL
) STRICT;

CREATE TABLE audit (
  seq INTEGER PRIMARY KEY AUTOINCREMENT,
  at INTEGER NOT NULL,
  actor TEXT NOT NULL,
  subject TEXT NOT NULL,
  action TEXT NOT NULL,
  outcome TEXT NOT NULL CHECK (outcome IN ('ok', 'refused')),
  code TEXT,
  reason TEXT,
  org_id TEXT NOT NULL,
  source TEXT
);
`,
  },
  {
    // A component's certificates come in generations (one bundle: the TLS leaf and its SSH certificates). The
    // current generation's TLS serial is the only one that may renew; after a renewal the previous generation
    // is retired (revoked as certificates) at the successor's first use or after supersede_grace. NULL current:
    // enrolled before this migration, adopted at its next renewal.
    version: 2,
    name: 'certificate generations of gateways and proxies',
    sql: ['gateways', 'proxies'].map(generationColumns).join(''),
  },
  {
    // When each gateway and proxy last read the feed, and the version it sent (store-seen.ts).
    version: 3,
    name: 'last seen and version of gateways and proxies',
    sql: `
CREATE TABLE component_seen (
  kind TEXT NOT NULL CHECK (kind IN ('gateway', 'proxy')),
  org_id TEXT NOT NULL,
  component_id TEXT NOT NULL,
  last_seen_at INTEGER NOT NULL,
  version TEXT,
  PRIMARY KEY (kind, org_id, component_id)
) STRICT;
`,
  },
  {
    // Phased rotation of each CA (rotation.ts). No row: the CA was never rotated (its row id is the base id,
    // standby, epoch 0). The epoch grows at every phase change; components acknowledge it through the feed
    // (component_seen.rotation_ack holds the rotation version a component last said it applied).
    version: 4,
    name: 'phased CA rotation',
    sql: `
CREATE TABLE rotations (
  authority_id TEXT PRIMARY KEY,
  org_id TEXT NOT NULL,
  purpose TEXT NOT NULL,
  current_id TEXT NOT NULL,
  next_id TEXT,
  phase TEXT NOT NULL CHECK (phase IN ('standby', 'init', 'update_clients', 'update_servers', 'rollback')),
  epoch INTEGER NOT NULL,
  generation INTEGER NOT NULL,
  phase_at INTEGER NOT NULL,
  started_at INTEGER,
  grace_ms INTEGER,
  retired_id TEXT,
  destroy_at INTEGER
) STRICT;
ALTER TABLE component_seen ADD COLUMN rotation_ack TEXT;
`,
  },
  {
    // Failure penalties per source (throttle.ts) kept in the store when CA replicas share it (PostgreSQL), so a
    // source cannot multiply its attempts by the number of replicas. One CA on SQLite keeps them in memory.
    version: 5,
    name: 'failure penalties shared by CA replicas',
    sql: `
CREATE TABLE failure_penalties (
  bucket TEXT NOT NULL,
  source TEXT NOT NULL,
  level REAL NOT NULL,
  at INTEGER NOT NULL,
  until INTEGER NOT NULL,
  PRIMARY KEY (bucket, source)
) STRICT;
CREATE INDEX failure_penalties_at ON failure_penalties (at);
`,
  },
  {
    // Gateway replicas (enrolled with --replica NAME): several processes serve one gateway id, each with its own
    // keys and its own certificate generations (the columns of migration 2, per replica), so renewal and the
    // stolen-copy defence work per replica. The gateways row stays the gateway's (revocation, the base
    // enrollment without a replica). Plain SQL both SQLite and PostgreSQL accept.
    version: 6,
    name: 'gateway replicas',
    sql: `
CREATE TABLE gateway_replicas (
  org_id TEXT NOT NULL,
  gateway_id TEXT NOT NULL,
  replica TEXT NOT NULL,
  enrolled_at INTEGER NOT NULL,
  renewed_at INTEGER,
  current_serial TEXT,
  current_serials_json TEXT,
  current_spki TEXT,
  previous_serial TEXT,
  previous_serials_json TEXT,
  previous_retire_at INTEGER,
  PRIMARY KEY (org_id, gateway_id, replica)
);
CREATE INDEX gateway_replicas_retire ON gateway_replicas (previous_retire_at);
`,
  },
];
