/** What every table's store shares: the one connection (so their writes join one transaction), and its statements. */
import type { SqlConnection, SqlStatement } from '../store/sql.js';

export abstract class TableStore {
  protected readonly sql: SqlConnection;

  constructor(sql: SqlConnection) {
    this.sql = sql;
  }

  /** Prepared once per SQL text by the connection: preparing costs more than running most of these queries. */
  protected q(sql: string): SqlStatement {
    return this.sql.prepare(sql);
  }
}
