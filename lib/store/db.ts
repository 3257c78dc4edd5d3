/**
 * One SQLite database per daemon, in its systemd StateDirectory. Opening applies the durability and safety
 * pragmas, keeps the files private (0600 in a 0700 directory) and brings the schema up to date with
 * forward-only migrations. A database written by a newer build is refused rather than guessed at.
 *
 * Durability: WAL with synchronous=FULL. In WAL mode NORMAL already survives a crash of the process, but
 * the last commits can roll back on power loss or a kernel crash; FULL syncs the WAL at every commit, so
 * a write the daemon acknowledged (a certificate issued, a revocation, an audit record) survives both.
 * The daemons commit rarely (enrolment, renewal, revocation), so the fsync per commit is cheap here. The one
 * frequent writer, the gateway's per-stream audit row, commits with NORMAL (lib/gateway/state.ts appendAudit):
 * an fsync per stream on the event loop held up every stream being set up meanwhile.
 */
import { chmodSync, closeSync, mkdirSync, openSync, statSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { GatewayError } from '../errors/codes.js';

export type Db = Database.Database;

/** A forward-only schema step; `sql` may hold several statements but no BEGIN/COMMIT of its own. */
export interface Migration {
  readonly version: number;
  readonly name: string;
  readonly sql: string;
}

/**
 * The daemon's state directory: an explicit override (config state_directory), else systemd's
 * $STATE_DIRECTORY (the entry named infisical-<name> when systemd lists several, colon-separated),
 * else /var/lib/infisical-<name>.
 */
export function stateDirectory(
  name: string,
  options: { override?: string | undefined; env?: Readonly<Record<string, string | undefined>> } = {},
): string {
  if (options.override) return options.override;
  const fromSystemd = (options.env ?? process.env)['STATE_DIRECTORY'];
  if (fromSystemd) {
    const entries = fromSystemd.split(':').filter(Boolean);
    const ours = entries.find((dir) => dir.replace(/\/+$/, '').endsWith(`/infisical-${name}`));
    const chosen = ours ?? entries[0];
    if (chosen) return chosen;
  }
  return `/var/lib/infisical-${name}`;
}

function permissionError(detail: string, cause?: unknown): GatewayError {
  return new GatewayError('E_STORE_PERMISSIONS', detail, cause === undefined ? undefined : { cause });
}

/** Creates the directory 0700, or tightens an existing one to 0700 (systemd creates 0755 by default). */
export function prepareStateDirectory(dir: string): void {
  try {
    mkdirSync(dir, { recursive: true, mode: 0o700 });
    const stat = statSync(dir);
    if (!stat.isDirectory()) throw permissionError(`${dir} is not a directory`);
    if ((stat.mode & 0o077) !== 0) chmodSync(dir, 0o700);
  } catch (err) {
    if (err instanceof GatewayError) throw err;
    throw permissionError(`cannot prepare state directory ${dir}: ${(err as Error).message}`, err);
  }
}

/** Creates the file 0600 before SQLite does (SQLite gives its -wal and -shm files the same mode). */
function prepareDatabaseFile(path: string): void {
  try {
    closeSync(openSync(path, 'wx', 0o600));
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') {
      throw permissionError(`cannot create ${path}: ${(err as Error).message}`, err);
    }
  }
  const stat = statSync(path);
  if (!stat.isFile()) throw permissionError(`${path} is not a regular file`);
  if ((stat.mode & 0o077) !== 0) {
    try {
      chmodSync(path, 0o600);
    } catch (err) {
      throw permissionError(`${path} is readable by others and cannot be made 0600`, err);
    }
  }
}

/** Refuses migration lists that are not 1, 2, 3, … in order with names: a gap or reorder is a bug. */
export function checkMigrations(migrations: readonly Migration[]): void {
  migrations.forEach((m, index) => {
    if (m.version !== index + 1) {
      throw new Error(
        `migrations: entry ${index} has version ${m.version}, expected ${index + 1} (forward-only, no gaps)`,
      );
    }
    if (!m.name || !m.sql.trim()) throw new Error(`migrations: version ${m.version} needs a name and sql`);
  });
}

export function schemaVersion(db: Db): number {
  return db.pragma('user_version', { simple: true }) as number;
}

export interface MigrationReport {
  from: number;
  to: number;
  applied: readonly string[];
}

/**
 * Applies the migrations above the database's PRAGMA user_version, each in its own IMMEDIATE transaction
 * together with its user_version bump and its row in schema_migrations, so a failure leaves the previous
 * version intact. Refuses (E_STORE_VERSION) a database newer than the code, or one whose recorded history
 * names a different migration for a version.
 */
export function migrate(db: Db, migrations: readonly Migration[], label = db.name): MigrationReport {
  checkMigrations(migrations);
  const latest = migrations.length;
  const from = schemaVersion(db);
  if (from > latest) {
    throw new GatewayError(
      'E_STORE_VERSION',
      `${label} is at schema version ${from}, this build knows up to ${latest}: run the newer build or restore a backup`,
    );
  }
  const applied: string[] = [];
  for (const migration of migrations) {
    db.transaction(() => {
      // Re-read inside the write lock: another process may have migrated meanwhile.
      if (schemaVersion(db) >= migration.version) return;
      db.exec(
        'CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)',
      );
      db.exec(migration.sql);
      db.prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)').run(
        migration.version,
        migration.name,
        new Date().toISOString(),
      );
      db.pragma(`user_version = ${migration.version}`);
      applied.push(`${migration.version} ${migration.name}`);
    }).immediate();
  }
  checkHistory(db, migrations, label);
  return { from, to: schemaVersion(db), applied };
}

function checkHistory(db: Db, migrations: readonly Migration[], label: string): void {
  if (schemaVersion(db) === 0) return;
  const table = db.prepare("SELECT 1 FROM sqlite_schema WHERE type = 'table' AND name = 'schema_migrations'").get();
  if (!table) throw new GatewayError('E_STORE_VERSION', `${label} has a schema version but no migration history`);
  const rows = db.prepare('SELECT version, name FROM schema_migrations ORDER BY version').all() as {
    version: number;
    name: string;
  }[];
  for (const row of rows) {
    const expected = migrations[row.version - 1];
    if (expected && expected.name !== row.name) {
      throw new GatewayError(
        'E_STORE_VERSION',
        `${label}: schema version ${row.version} was applied as "${row.name}", this build calls it "${expected.name}"`,
      );
    }
  }
}

export interface OpenDatabaseOptions {
  /** Database file; its directory is created 0700 if needed. */
  path: string;
  migrations: readonly Migration[];
  /** How long a writer waits for another's lock before SQLITE_BUSY; default 5000. */
  busyTimeoutMs?: number;
}

/** Opens (creating if needed) a private database with WAL, FULL sync, foreign keys, and the schema current. */
export function openDatabase(options: OpenDatabaseOptions): Db {
  checkMigrations(options.migrations);
  prepareStateDirectory(dirname(options.path));
  prepareDatabaseFile(options.path);
  const db = new Database(options.path);
  try {
    const mode = db.pragma('journal_mode = WAL', { simple: true });
    if (mode !== 'wal') throw new Error(`journal_mode is ${String(mode)}, WAL was asked`);
    db.pragma('synchronous = FULL');
    db.pragma('foreign_keys = ON');
    db.pragma(`busy_timeout = ${Math.max(0, Math.floor(options.busyTimeoutMs ?? 5000))}`);
    // Schema cannot call application functions with side effects (defence against a planted database).
    db.pragma('trusted_schema = OFF');
    migrate(db, options.migrations, options.path);
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}
