/**
 * PostgreSQL behind the store's connection interface (sql.ts), for several CA replicas on one database.
 *
 * Synchronous, like the SQLite engine: statements go through libpq's blocking calls (the `libpq` package, the
 * native binding node-postgres' pg-native is built on; pg-native's querySync drops the affected-row count that the
 * store's compare-and-set updates read, so the binding is used directly). The CA's event loop waits for each round
 * trip, as it waits today for SQLite's fsync at each commit; a replica's throughput is bounded by that, which is
 * why replicas are added (bench/ca-store.ts measures both).
 *
 * - Writers run one at a time across every replica: each transaction takes one advisory transaction lock first,
 *   the same guarantee SQLite's BEGIN IMMEDIATE gives processes on one file. A read-then-write inside a transaction
 *   (a one-time token consumed, a serial recorded, a generation replaced) therefore sees no other writer's change.
 * - Change notices: `announceChange` sends NOTIFY on one channel; every connection LISTENs on it and counts the
 *   notices of other backends (`changeVersion`), read without a round trip from libpq's input buffer.
 * - A lost connection is opened again at the next statement outside a transaction. A statement whose connection
 *   was lost on the way is sent again on the new one only when it changes no data (a read): a write's reply may
 *   be what was lost, and a write applied twice (a nonce used, an audit row) is worse than one refused
 *   (E_STORE_UNAVAILABLE: the caller retries the whole request). Inside a transaction it fails the transaction
 *   (E_STORE_UNAVAILABLE) and nothing of it is committed, except a COMMIT whose reply was lost: it may have
 *   committed, and the error says so.
 * - A server that cannot serve this connection any more (it came back read-only: a standby now; shutting down;
 *   starting; out of connection slots) answers E_STORE_UNAVAILABLE too, and the connection is dropped, so the
 *   next one finds the primary (with several hosts and `target_session_attrs=read-write` in the URL).
 * - Migrations are the SQLite ones, translated by `postgresDdl`, applied under the same advisory lock, so two
 *   replicas starting at once migrate once.
 */
import { createRequire } from 'node:module';
import { GatewayError } from '../errors/codes.js';
import type { Migration } from './db.js';
import { redactLibpqMessage, redactUrl, withConnectionDefaults } from './postgres-url.js';
import type { SqlConnection, SqlRow, SqlStatement, SqlValue } from './sql.js';

export { isPostgresUrl, postgresUrlProblem, redactUrl, withConnectionDefaults } from './postgres-url.js';

/** The parts of the `libpq` binding used here (it ships no types). */
interface LibPq {
  /** Throws (and finishes the connection itself) when the server cannot be reached or refuses. */
  connectSync(params: string): void;
  finish(): void;
  exec(text: string): void;
  execParams(text: string, values: (string | null)[]): void;
  resultStatus(): string;
  resultErrorMessage(): string;
  resultErrorFields(): { sqlState?: string } | undefined;
  errorMessage(): string;
  transactionStatus(): number;
  ntuples(): number;
  nfields(): number;
  fname(column: number): string;
  ftype(column: number): number;
  getvalue(row: number, column: number): string;
  getisnull(row: number, column: number): boolean;
  cmdTuples(): string;
  consumeInput(): boolean;
  notifies(): { relname: string; extra: string; be_pid: number } | undefined;
}

/** The advisory lock every writer takes (an arbitrary constant: "infisical-ca" in ASCII, folded to 63 bits). */
export const WRITE_LOCK_KEY = 0x696e66697363616cn & 0x7fffffffffffffffn;
export const CHANGE_CHANNEL = 'infisical_ca_changes';
/** libpq's PQTRANS_INERROR: in a transaction that a failed statement aborted. */
const TRANSACTION_FAILED = 3;
/** libpq's PQTRANS_UNKNOWN: the connection is bad. */
const TRANSACTION_UNKNOWN = 4;
/**
 * SQLSTATEs after which this connection is of no more use, though libpq still holds it open: 25006 a write on a
 * server that is read-only now (a primary that came back as a standby), 57P01/57P02 an administrator's or a
 * crash's shutdown, 57P03 a server not accepting connections yet, 53300 no connection slot left.
 */
const UNAVAILABLE_STATES = new Set(['25006', '57P01', '57P02', '57P03', '53300']);

/**
 * Whether sending `sql` twice cannot change data twice: a SELECT (or SHOW, VALUES) that names no data-changing
 * command or sequence function, a BEGIN, a NOTIFY or LISTEN (a notice twice only wakes readers twice). Anything
 * else counts as a write.
 */
export function changesNoData(sql: string): boolean {
  if (/^\s*(BEGIN|NOTIFY \w+|LISTEN \w+)\s*$/i.test(sql)) return true;
  return (
    /^\s*(SELECT|SHOW|VALUES)\b/i.test(sql) &&
    !/\b(INSERT|UPDATE|DELETE|MERGE|TRUNCATE|nextval|setval|pg_advisory_lock|pg_terminate_backend)\b/i.test(sql)
  );
}

/** `?` placeholders (outside quoted text) as PostgreSQL's `$1, $2, …`. */
export function numberedPlaceholders(sql: string): string {
  let out = '';
  let n = 0;
  let quote: string | undefined;
  for (const ch of sql) {
    if (quote) {
      if (ch === quote) quote = undefined;
      out += ch;
    } else if (ch === "'" || ch === '"') {
      quote = ch;
      out += ch;
    } else if (ch === '?') {
      n += 1;
      out += `$${n}`;
    } else out += ch;
  }
  return out;
}

/**
 * A migration written in SQLite's DDL, as PostgreSQL DDL: INTEGER is 64-bit (BIGINT: times are milliseconds),
 * `INTEGER PRIMARY KEY [AUTOINCREMENT]` an identity column, BLOB is BYTEA, REAL is DOUBLE PRECISION, STRICT is dropped, and a table without an
 * integer primary key gets the `rowid` SQLite gives every table implicitly (statements order by it: insertion order).
 */
export function postgresDdl(sql: string): string {
  return sql
    .replace(/\)\s*STRICT\s*;/g, ');')
    .replace(/CREATE TABLE (\w+) \(([\s\S]*?)\)\s*;/g, (whole, table: string, body: string) =>
      /INTEGER PRIMARY KEY/.test(body)
        ? whole
        : `CREATE TABLE ${table} (\n  rowid BIGINT GENERATED ALWAYS AS IDENTITY,${body.startsWith('\n') ? '' : ' '}${body});`,
    )
    .replace(/\bINTEGER PRIMARY KEY( AUTOINCREMENT)?/g, 'BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY')
    .replace(/\bINTEGER\b/g, 'BIGINT')
    .replace(/\bBLOB\b/g, 'BYTEA')
    .replace(/\bREAL\b/g, 'DOUBLE PRECISION');
}

function parameter(value: SqlValue): string | null {
  if (value === null) return null;
  if (Buffer.isBuffer(value)) return `\\x${value.toString('hex')}`;
  return String(value);
}

/** A column's text as the value the SQLite engine would give: numbers as numbers, BYTEA as a Buffer. */
function columnValue(type: number, text: string): unknown {
  switch (type) {
    case 20: // int8
    case 21: // int2
    case 23: // int4
    case 26: // oid
    case 700: // float4
    case 701: // float8
    case 1700: // numeric (sum, avg)
      return Number(text);
    case 16: // bool
      return text === 't' ? 1 : 0;
    case 17: // bytea, hex format
      return Buffer.from(text.slice(2), 'hex');
    default:
      return text;
  }
}

/**
 * Connections finished in the last second. The binding's finish() closes its libuv poll handle and drops its own
 * reference in the same call; were the object collected before the loop runs the close, libuv would touch freed
 * memory (it aborts: uv__finish_close assertion, seen in the tests). Holding it one second outlives the close.
 */
const finishing = new Set<LibPq>();
function finish(pq: LibPq): void {
  try {
    pq.finish();
  } catch {
    // already gone
  }
  hold(pq);
}
function hold(pq: LibPq): void {
  finishing.add(pq);
  setTimeout(() => finishing.delete(pq), 1000).unref();
}

function storeUnavailable(detail: string, cause?: unknown): GatewayError {
  return new GatewayError('E_STORE_UNAVAILABLE', detail, cause === undefined ? undefined : { cause });
}

function loadLibpq(): new () => LibPq {
  try {
    return createRequire(import.meta.url)('libpq');
  } catch (err) {
    throw storeUnavailable(
      `the PostgreSQL store needs the libpq binding, which did not load (${(err as Error).message}): install libpq5`,
      err,
    );
  }
}

class PostgresConnection implements SqlConnection {
  readonly engine = 'postgres' as const;
  readonly name: string;
  readonly #url: string;
  readonly #PQ: new () => LibPq;
  #pq: LibPq;
  #pid = 0;
  #heard = 0;
  #inTransaction = false;
  /** The server said this connection is of no more use (UNAVAILABLE_STATES): the next statement opens another. */
  #dropped = false;
  #epoch = 0;
  readonly #statements = new Map<string, SqlStatement>();

  constructor(url: string) {
    this.#url = url;
    this.name = redactUrl(url);
    this.#PQ = loadLibpq();
    this.#pq = this.#connect();
  }

  #connect(): LibPq {
    const pq = new this.#PQ();
    try {
      pq.connectSync(withConnectionDefaults(this.#url));
    } catch (err) {
      hold(pq); // the binding finished it
      throw storeUnavailable(
        `cannot connect to ${this.name}: ${
          redactLibpqMessage((err as Error).message, this.#url)
            .trim()
            .replace(/\s*\n\s*/g, ' ') || 'refused'
        }`,
      );
    }
    this.#pq = pq;
    this.#dropped = false;
    this.#run('SET client_min_messages = warning', []); // libpq prints notices on stderr
    // The store's assumptions, set rather than inherited from the server's defaults: BYTEA as hex, READ COMMITTED
    // under the writers' lock, and bounds so that no wait blocks the CA's event loop for long: a lock held by a
    // replica that froze mid-transaction is freed by the server after 30 s, a lock wait or a statement ends after
    // 15 s (the transaction fails and commits nothing).
    this.#run(
      "SET bytea_output = 'hex'; SET default_transaction_isolation = 'read committed'; SET lock_timeout = '15s'; " +
        "SET statement_timeout = '15s'; SET idle_in_transaction_session_timeout = '30s'",
      [],
    );
    this.#run(`LISTEN ${CHANGE_CHANNEL}`, []);
    // Notices sent while the connection was down are lost: count one, so every held feed read looks again.
    this.#heard += 1;
    this.#pid = Number(this.#run('SELECT pg_backend_pid() AS pid', [])[0]?.['pid']);
    return pq;
  }

  /** One statement; rows as objects. Throws E_STORE_UNAVAILABLE on a lost connection, the server's error otherwise. */
  #run(text: string, values: (string | null)[]): SqlRow[] & { changes?: number } {
    const pq = this.#pq;
    if (values.length > 0) pq.execParams(text, values);
    else pq.exec(text);
    const status = pq.resultStatus();
    if (status !== 'PGRES_COMMAND_OK' && status !== 'PGRES_TUPLES_OK') {
      const message = (pq.resultErrorMessage() || pq.errorMessage()).trim().replace(/\s*\n\s*/g, ' ');
      if (pq.transactionStatus() === TRANSACTION_UNKNOWN) {
        throw storeUnavailable(`${this.name}: connection lost (${message || 'no reply'})`);
      }
      const state = pq.resultErrorFields()?.sqlState;
      if (state && UNAVAILABLE_STATES.has(state)) {
        this.#dropped = true;
        throw storeUnavailable(`${this.name}: ${message} (SQLSTATE ${state}; a new connection is opened next)`);
      }
      const err = new Error(`${this.name}: ${message}`) as Error & { code?: string };
      if (state) err.code = `PG_${state}`;
      throw err;
    }
    const rows: SqlRow[] & { changes?: number } = [];
    const fields = pq.nfields();
    const names: string[] = [];
    const types: number[] = [];
    for (let c = 0; c < fields; c++) {
      names.push(pq.fname(c));
      types.push(pq.ftype(c));
    }
    for (let r = 0, n = pq.ntuples(); r < n; r++) {
      const row: SqlRow = {};
      for (let c = 0; c < fields; c++) {
        row[names[c]!] = pq.getisnull(r, c) ? null : columnValue(types[c]!, pq.getvalue(r, c));
      }
      rows.push(row);
    }
    rows.changes = Number.parseInt(pq.cmdTuples(), 10) || 0;
    return rows;
  }

  /**
   * A statement outside a transaction first opens again a connection known to be lost or dropped (nothing was
   * sent on it, so any statement may go). A statement that fails on a lost connection is sent again on a new
   * one only when it changes no data: a write's reply may be what was lost.
   */
  query(text: string, values: SqlValue[]): SqlRow[] & { changes?: number } {
    const params = values.map(parameter);
    if (!this.#inTransaction) {
      this.#pq.consumeInput(); // reads a close the server sent meanwhile (a terminated backend), so it is known here
      if (this.#dropped || this.#pq.transactionStatus() === TRANSACTION_UNKNOWN) this.#reconnect();
    }
    try {
      return this.#run(text, params);
    } catch (err) {
      if (this.#inTransaction || !(err instanceof GatewayError) || err.code !== 'E_STORE_UNAVAILABLE') throw err;
      if (!changesNoData(text)) {
        if (this.#pq.transactionStatus() !== TRANSACTION_UNKNOWN) throw err;
        throw storeUnavailable(
          `${err.message}; the statement changes data and its outcome is unknown (it may have been applied), so it is not sent again`,
          err,
        );
      }
      this.#reconnect();
      return this.#run(text, params);
    }
  }

  #reconnect(): void {
    finish(this.#pq);
    this.#connect();
  }

  prepare(sql: string): SqlStatement {
    let stmt = this.#statements.get(sql);
    if (!stmt) {
      const text = numberedPlaceholders(sql);
      stmt = {
        get: (...params) => this.query(text, params)[0],
        all: (...params) => [...this.query(text, params)],
        run: (...params) => ({ changes: this.query(text, params).changes ?? 0 }),
      };
      this.#statements.set(sql, stmt);
    }
    return stmt;
  }

  transaction<T>(fn: () => T): T {
    if (this.#inTransaction) return this.#savepoint(fn);
    this.query('BEGIN', []);
    this.#inTransaction = true;
    this.#epoch += 1;
    try {
      this.#run(`SELECT pg_advisory_xact_lock(${WRITE_LOCK_KEY})`, []);
      const result = fn();
      // A statement that failed inside `fn` (and was caught there) aborted the transaction: PostgreSQL answers
      // the COMMIT with a ROLLBACK. Say so instead of returning as if it had committed.
      if (this.#dropped) {
        throw storeUnavailable(`${this.name}: the server cannot serve this connection now; nothing was committed`);
      }
      if (this.#pq.transactionStatus() === TRANSACTION_FAILED) {
        throw new Error(`${this.name}: a statement failed inside the transaction; nothing of it was committed`);
      }
      this.#commit();
      return result;
    } catch (err) {
      try {
        if (!this.#dropped && this.#pq.transactionStatus() !== TRANSACTION_UNKNOWN) this.#run('ROLLBACK', []);
      } catch {
        // the connection is gone: the server rolled back
      }
      throw err;
    } finally {
      this.#inTransaction = false;
    }
  }

  /** A COMMIT whose connection is lost before its reply may have committed: the error says the outcome is unknown. */
  #commit(): void {
    try {
      this.#run('COMMIT', []);
    } catch (err) {
      if (!(err instanceof GatewayError) || this.#pq.transactionStatus() !== TRANSACTION_UNKNOWN) throw err;
      throw storeUnavailable(
        `${err.message}: the connection was lost at COMMIT, so whether the transaction committed is unknown`,
        err,
      );
    }
  }

  /** A transaction inside a transaction: a savepoint, undone alone when `fn` throws (as better-sqlite3 nests). */
  #savepoint<T>(fn: () => T): T {
    this.#run('SAVEPOINT nested', []);
    try {
      const result = fn();
      this.#run('RELEASE SAVEPOINT nested', []);
      return result;
    } catch (err) {
      this.#epoch += 1; // undone: what was read inside may be gone
      if (!this.#dropped && this.#pq.transactionStatus() !== TRANSACTION_UNKNOWN) {
        this.#run('ROLLBACK TO SAVEPOINT nested', []);
        this.#run('RELEASE SAVEPOINT nested', []);
      }
      throw err;
    }
  }

  readEpoch(): number | undefined {
    return this.#inTransaction ? this.#epoch : undefined;
  }

  changeVersion(): number {
    if (this.#inTransaction) return this.#heard;
    this.#pq.consumeInput();
    for (let n = this.#pq.notifies(); n; n = this.#pq.notifies()) {
      if (n.relname === CHANGE_CHANNEL && n.be_pid !== this.#pid) this.#heard += 1;
    }
    return this.#heard;
  }

  announceChange(): void {
    // Sent after the change committed: a failure here must not report the change as failed (sql.ts).
    this.query(`NOTIFY ${CHANGE_CHANNEL}`, []);
  }

  close(): void {
    finish(this.#pq);
  }
}

/**
 * Connects (E_STORE_UNAVAILABLE when the server cannot be reached) without touching the schema: for a caller that
 * migrates inside a transaction of its own (`infisical-ca migrate`, lib/ca/migrate-store.ts).
 */
export function connectPostgres(url: string): SqlConnection {
  return new PostgresConnection(url);
}

/** Connects (E_STORE_UNAVAILABLE when the server cannot be reached) and migrates forward. */
export function openPostgres(url: string, migrations: readonly Migration[]): SqlConnection {
  const conn = connectPostgres(url);
  try {
    migratePostgres(conn, migrations);
  } catch (err) {
    conn.close();
    throw err;
  }
  return conn;
}

/** The newest migration applied (0 for an empty database). */
export function postgresSchemaVersion(conn: SqlConnection): number {
  const row = conn.prepare("SELECT to_regclass('schema_migrations') IS NOT NULL AS present").get() as {
    present: number;
  };
  if (!row.present) return 0;
  return (conn.prepare('SELECT coalesce(max(version), 0) AS v FROM schema_migrations').get() as { v: number }).v;
}

/**
 * The SQLite migrations, translated, each in its own transaction under the writers' lock with its row in
 * schema_migrations; refuses (E_STORE_VERSION) a database newer than the code or with a different history.
 */
export function migratePostgres(conn: SqlConnection, migrations: readonly Migration[]): void {
  const latest = migrations.length;
  for (const migration of migrations) {
    conn.transaction(() => {
      conn
        .prepare(
          'CREATE TABLE IF NOT EXISTS schema_migrations (version BIGINT PRIMARY KEY, name TEXT NOT NULL, applied_at TEXT NOT NULL)',
        )
        .run();
      const at = postgresSchemaVersion(conn);
      if (at > latest) {
        throw new GatewayError(
          'E_STORE_VERSION',
          `${conn.name} is at schema version ${at}, this build knows up to ${latest}: run the newer build`,
        );
      }
      if (at >= migration.version) return;
      for (const statement of splitStatements(postgresDdl(migration.sql))) conn.prepare(statement).run();
      conn
        .prepare('INSERT INTO schema_migrations (version, name, applied_at) VALUES (?, ?, ?)')
        .run(migration.version, migration.name, new Date().toISOString());
    });
  }
  const rows = conn.prepare('SELECT version, name FROM schema_migrations ORDER BY version').all() as {
    version: number;
    name: string;
  }[];
  for (const row of rows) {
    const expected = migrations[row.version - 1];
    if (row.version > latest) {
      throw new GatewayError(
        'E_STORE_VERSION',
        `${conn.name} is at schema version ${row.version}, this build knows up to ${latest}: run the newer build`,
      );
    }
    if (expected && expected.name !== row.name) {
      throw new GatewayError(
        'E_STORE_VERSION',
        `${conn.name}: schema version ${row.version} was applied as "${row.name}", this build calls it "${expected.name}"`,
      );
    }
  }
}

/** A migration's statements (they hold no `;` inside quoted text). */
function splitStatements(sql: string): string[] {
  return sql
    .split(';')
    .map((s) => s.trim())
    .filter(Boolean);
}
