/**
 * `infisical-ca migrate`: the one-shot move of a CA from its SQLite file to PostgreSQL (where several replicas
 * can share it). Every table of the CA schema is copied row for row, with the same ids and feed seqs, in ONE
 * PostgreSQL transaction that also creates the schema: it commits whole, after the per-table counts matched, or
 * leaves the target as it was.
 *
 * - The source is opened read-only and must be an initialized CA at this build's latest schema version: the
 *   copy maps columns one to one, so it refuses rather than guesses at an older layout.
 * - The target must hold no CA records (E_CONFLICT, nothing written): a move, never a merge.
 * - PostgreSQL's identity sequences are moved past the copied maxima (and past SQLite's AUTOINCREMENT high-water
 *   marks, which survive deleted rows), so the next revocation's seq continues the feed above every copied one.
 * - Tables without an integer key get the hidden `rowid` on PostgreSQL (postgresDdl): SQLite's rowid is copied
 *   into it, keeping the insertion order that statements sort by.
 */
import { existsSync } from 'node:fs';
import { dirname } from 'node:path';
import Database from 'better-sqlite3';
import { GatewayError } from '../errors/codes.js';
import type { Db } from '../store/db.js';
import { StateLock } from '../store/lock.js';
import { connectPostgres, migratePostgres } from '../store/postgres.js';
import type { SqlConnection, SqlValue } from '../store/sql.js';
import { MIGRATIONS } from './store-schema.js';

export interface TableCopy {
  table: string;
  /** Rows in the source, and in the target after the copy (checked equal before the commit). */
  rows: number;
}

export interface SequenceMove {
  table: string;
  column: string;
  /** The value the next insert gets. */
  next: number;
}

export interface StoreMigration {
  from: string;
  /** The target URL without its password. */
  to: string;
  schemaVersion: number;
  tables: TableCopy[];
  sequences: SequenceMove[];
}

/** Parameters per INSERT: a batch of rows per round trip, far below PostgreSQL's 65535. */
const PARAMETERS_PER_BATCH = 4000;

const quote = (name: string): string => `"${name.replace(/"/g, '""')}"`;

/**
 * Copies the SQLite CA database at `sourcePath` into the PostgreSQL database `targetUrl`. The source's
 * directory lock is held meanwhile (a running `serve` on it refuses the move: stop it first).
 */
export function migrateStore(sourcePath: string, targetUrl: string): StoreMigration {
  if (!existsSync(sourcePath)) {
    throw new GatewayError('E_NOT_FOUND', `no SQLite CA database at ${sourcePath}`);
  }
  const lock = StateLock.acquire(dirname(sourcePath), 'infisical-ca migrate');
  try {
    const source = openSource(sourcePath);
    try {
      const target = connectPostgres(targetUrl);
      try {
        return copyInto(source, sourcePath, target);
      } finally {
        target.close();
      }
    } finally {
      source.close();
    }
  } finally {
    lock.release();
  }
}

/** The source, read-only, after checking it is an initialized CA at the latest schema version. */
function openSource(path: string): Db {
  let db: Db;
  try {
    db = new Database(path, { readonly: true, fileMustExist: true });
  } catch (err) {
    throw new GatewayError('E_NOT_FOUND', `cannot open ${path} as SQLite: ${(err as Error).message}`, { cause: err });
  }
  try {
    const latest = MIGRATIONS.length;
    let version: number;
    let history: { version: number; name: string }[];
    try {
      version = db.pragma('user_version', { simple: true }) as number;
      history = db.prepare('SELECT version, name FROM schema_migrations ORDER BY version').all() as typeof history;
    } catch (err) {
      throw new GatewayError('E_STORE_VERSION', `${path} is not a CA database: ${(err as Error).message}`, {
        cause: err,
      });
    }
    if (version !== latest) {
      throw new GatewayError(
        'E_STORE_VERSION',
        `${path} is at schema version ${version}, this build copies version ${latest} only: ` +
          (version < latest
            ? 'run any command of this build on it first (e.g. `infisical-ca org list`), which migrates it forward'
            : 'run the newer build'),
      );
    }
    for (const row of history) {
      if (MIGRATIONS[row.version - 1]?.name !== row.name) {
        throw new GatewayError(
          'E_STORE_VERSION',
          `${path} is not a CA database: its schema version ${row.version} is "${row.name}"`,
        );
      }
    }
    const initialized = db.prepare("SELECT 1 FROM meta WHERE key = 'initialized_at'").get();
    if (!initialized) {
      throw new GatewayError('E_NOT_FOUND', `${path} holds no initialized CA (nothing to move)`);
    }
    return db;
  } catch (err) {
    db.close();
    throw err;
  }
}

/** The CA's tables in the source, parents before the tables whose foreign keys point at them. */
function tablesInOrder(db: Db): string[] {
  const names = (
    db
      .prepare(
        "SELECT name FROM sqlite_schema WHERE type = 'table' AND name NOT LIKE 'sqlite_%' AND name <> 'schema_migrations' ORDER BY rowid",
      )
      .all() as { name: string }[]
  ).map((r) => r.name);
  const ordered: string[] = [];
  const visit = (name: string, path: string[]): void => {
    if (ordered.includes(name) || !names.includes(name)) return;
    if (path.includes(name)) throw new Error(`foreign keys form a cycle: ${[...path, name].join(' → ')}`);
    const parents = db.pragma(`foreign_key_list(${quote(name)})`) as { table: string }[];
    for (const parent of parents) if (parent.table !== name) visit(parent.table, [...path, name]);
    ordered.push(name);
  };
  for (const name of names) visit(name, []);
  return ordered;
}

/** Tables of the CA schema that already hold rows in the target (those that exist there at all). */
function occupied(target: SqlConnection, tables: readonly string[]): TableCopy[] {
  const found: TableCopy[] = [];
  for (const table of tables) {
    const exists = target.prepare('SELECT to_regclass(?) IS NOT NULL AS present').get(table) as { present: number };
    if (!exists.present) continue;
    const rows = count(target, table);
    if (rows > 0) found.push({ table, rows });
  }
  return found;
}

function count(conn: SqlConnection | Db, table: string): number {
  const row = conn.prepare(`SELECT count(*) AS n FROM ${quote(table)}`).get() as { n: number | bigint };
  return Number(row.n);
}

function copyInto(source: Db, sourcePath: string, target: SqlConnection): StoreMigration {
  const tables = tablesInOrder(source);
  // One read transaction on the source: every table from the same snapshot.
  source.exec('BEGIN');
  try {
    return target.transaction(() => {
      const held = occupied(target, tables);
      if (held.length > 0) {
        throw new GatewayError(
          'E_CONFLICT',
          `${target.name} already holds CA records (${held.map((t) => `${t.table}: ${t.rows}`).join(', ')}): ` +
            'migrate only into an empty database; nothing was written',
        );
      }
      migratePostgres(target, MIGRATIONS);
      const copied = tables.map((table) => ({ table, rows: copyTable(source, target, table) }));
      const sequences = moveSequences(source, target, tables);
      for (const { table, rows } of copied) {
        const inSource = count(source, table);
        const inTarget = count(target, table);
        if (inSource !== rows || inTarget !== rows) {
          throw new GatewayError(
            'E_INTERNAL',
            `table ${table}: ${inSource} rows in the source, ${rows} copied, ${inTarget} in the target; rolled back`,
          );
        }
      }
      return { from: sourcePath, to: target.name, schemaVersion: MIGRATIONS.length, tables: copied, sequences };
    });
  } finally {
    source.exec('COMMIT');
  }
}

/** The target's columns of `table`, in order (the hidden rowid among them, where postgresDdl added one). */
function targetColumns(target: SqlConnection, table: string): string[] {
  return (
    target
      .prepare(
        'SELECT column_name FROM information_schema.columns WHERE table_schema = current_schema() AND table_name = ? ORDER BY ordinal_position',
      )
      .all(table) as { column_name: string }[]
  ).map((r) => r.column_name);
}

/** Copies every row of `table` in batches; the number of rows copied. */
function copyTable(source: Db, target: SqlConnection, table: string): number {
  const columns = targetColumns(target, table);
  if (columns.length === 0) throw new GatewayError('E_STORE_VERSION', `the target has no table ${table}`);
  const sourceColumns = (source.pragma(`table_info(${quote(table)})`) as { name: string }[]).map((c) => c.name);
  const missing = columns.filter((c) => c !== 'rowid' && !sourceColumns.includes(c));
  const unmapped = sourceColumns.filter((c) => !columns.includes(c));
  if (missing.length > 0 || unmapped.length > 0) {
    throw new GatewayError(
      'E_STORE_VERSION',
      `table ${table} differs between the source and the target (${[...missing, ...unmapped].join(', ')})`,
    );
  }
  const read = source.prepare(`SELECT ${columns.map(quote).join(', ')} FROM ${quote(table)} ORDER BY rowid`).raw();
  // Integers as BigInt: exact whatever their size (times are milliseconds, ids and seqs 64-bit).
  read.safeIntegers(true);
  const perBatch = Math.max(1, Math.floor(PARAMETERS_PER_BATCH / columns.length));
  const row = `(${columns.map(() => '?').join(', ')})`;
  const insert = (n: number) =>
    target.prepare(
      `INSERT INTO ${quote(table)} (${columns.map(quote).join(', ')}) OVERRIDING SYSTEM VALUE VALUES ${Array(n).fill(row).join(', ')}`,
    );
  let batch: SqlValue[] = [];
  let rows = 0;
  let pending = 0;
  for (const values of read.iterate() as Iterable<SqlValue[]>) {
    batch.push(...values);
    pending += 1;
    rows += 1;
    if (pending === perBatch) {
      insert(pending).run(...batch);
      batch = [];
      pending = 0;
    }
  }
  if (pending > 0) insert(pending).run(...batch);
  return rows;
}

/**
 * Each identity column of the copied tables moved past the highest copied value and SQLite's AUTOINCREMENT
 * high-water mark (sqlite_sequence keeps it after the top rows are deleted; a feed seq is never reused).
 */
function moveSequences(source: Db, target: SqlConnection, tables: readonly string[]): SequenceMove[] {
  const identities = target
    .prepare(
      "SELECT table_name, column_name FROM information_schema.columns WHERE table_schema = current_schema() AND is_identity = 'YES' ORDER BY table_name",
    )
    .all() as { table_name: string; column_name: string }[];
  const hasSequenceTable = source.prepare("SELECT 1 FROM sqlite_schema WHERE name = 'sqlite_sequence'").get();
  const moves: SequenceMove[] = [];
  for (const { table_name: table, column_name: column } of identities) {
    if (!tables.includes(table)) continue;
    const copiedMax = Number(
      (target.prepare(`SELECT coalesce(max(${quote(column)}), 0) AS m FROM ${quote(table)}`).get() as { m: number }).m,
    );
    const highWater = hasSequenceTable
      ? Number(
          (source.prepare('SELECT seq FROM sqlite_sequence WHERE name = ?').get(table) as { seq: number } | undefined)
            ?.seq ?? 0,
        )
      : 0;
    const high = Math.max(copiedMax, highWater);
    if (high > 0) {
      target.prepare('SELECT setval(pg_get_serial_sequence(?, ?), ?)').get(quote(table), column, high);
    }
    moves.push({ table, column, next: high + 1 });
  }
  return moves;
}
