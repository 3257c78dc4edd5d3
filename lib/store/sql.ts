/**
 * The one connection a store speaks through, whichever engine is behind it: SQLite (better-sqlite3, the embedded
 * default) or PostgreSQL (lib/store/postgres.ts, for several CA replicas on one database). Both are synchronous:
 * the CA decides inside a transaction written as a plain closure, so each decision and its records commit together
 * or not at all, on either engine.
 *
 * Statements are written once, in the dialect both engines accept: `?` placeholders, `INSERT … ON CONFLICT`,
 * `RETURNING`, integer milliseconds for times. Schema migrations are written in SQLite's DDL and translated for
 * PostgreSQL by `postgresDdl` (postgres.ts).
 */
import type { Db } from './db.js';

export type SqlValue = string | number | bigint | Buffer | null;
export type SqlRow = Record<string, unknown>;

export interface SqlStatement {
  get(...params: SqlValue[]): SqlRow | undefined;
  all(...params: SqlValue[]): SqlRow[];
  /** Rows written (changed, inserted, deleted): a compare-and-set update checks it is 1. */
  run(...params: SqlValue[]): { changes: number };
}

export interface SqlConnection {
  readonly engine: 'sqlite' | 'postgres';
  /** What to call it in messages: a file path, or a PostgreSQL URL without its password. */
  readonly name: string;
  prepare(sql: string): SqlStatement;
  /**
   * Runs `fn` as one transaction that holds the database's write lock from its first statement (SQLite BEGIN
   * IMMEDIATE; PostgreSQL an advisory transaction lock every writer takes): writers run one at a time, across
   * processes and replicas, so a read-then-write inside `fn` sees no other writer's change.
   */
  transaction<T>(fn: () => T): T;
  /**
   * Inside a transaction, a number that stays the same while what was read in it still holds (the writers' lock
   * keeps other writers out); it changes at every transaction and at every nested transaction undone. Undefined
   * outside a transaction: nothing read there may be reused.
   */
  readEpoch(): number | undefined;
  /**
   * A number that moves when another connection (another process, another CA replica) said it changed what a
   * feed reader sees. SQLite: PRAGMA data_version. PostgreSQL: notifications heard on a LISTEN channel.
   */
  changeVersion(): number;
  /**
   * Tells the other connections that something a feed reader sees changed (PostgreSQL NOTIFY; SQLite needs none).
   * Sent after the change committed, so a failure (thrown) does not undo it: callers treat it as best-effort
   * (changes.ts), and readers that missed the notice see the change at their next read anyway.
   */
  announceChange(): void;
  close(): void;
}

/** better-sqlite3 behind the common interface (its statements already have get/all/run with `changes`). */
export function sqliteConnection(db: Db): SqlConnection {
  const statements = new Map<string, SqlStatement>();
  let epoch = 0;
  let depth = 0;
  return {
    engine: 'sqlite',
    name: db.name,
    prepare(sql) {
      let stmt = statements.get(sql);
      if (!stmt) {
        const s = db.prepare(sql);
        stmt = {
          get: (...params) => s.get(...params) as SqlRow | undefined,
          all: (...params) => s.all(...params) as SqlRow[],
          run: (...params) => ({ changes: s.run(...params).changes }),
        };
        statements.set(sql, stmt);
      }
      return stmt;
    },
    transaction: (fn) => {
      if (depth === 0) epoch += 1;
      depth += 1;
      try {
        return db.transaction(fn).immediate();
      } catch (err) {
        epoch += 1; // undone: what was read inside may be gone
        throw err;
      } finally {
        depth -= 1;
      }
    },
    readEpoch: () => (depth > 0 ? epoch : undefined),
    changeVersion: () => db.pragma('data_version', { simple: true }) as number,
    announceChange: () => undefined,
    close: () => db.close(),
  };
}
