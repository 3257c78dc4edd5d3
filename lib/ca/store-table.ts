/** What every table's store shares: the one connection (so their writes join one transaction), and its statements. */
import type Database from 'better-sqlite3';
import type { Db } from '../store/db.js';

export abstract class TableStore {
  protected readonly db: Db;
  readonly #statements = new Map<string, Database.Statement>();

  constructor(db: Db) {
    this.db = db;
  }

  /** Prepared once per SQL text: preparing costs more than running most of these queries. */
  protected q(sql: string): Database.Statement {
    let stmt = this.#statements.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      this.#statements.set(sql, stmt);
    }
    return stmt;
  }
}
