/**
 * Failure penalties per source (store-schema.ts migration 5), the book CA replicas share on PostgreSQL
 * (throttle.ts decides; this only reads and writes). Charging a failure reads and writes one row inside the
 * store's write lock, so two replicas charging the same source at once both count.
 */

import { TableStore } from './store-table.js';
import type { Penalty, PenaltyBook } from './throttle.js';

/** Rows quiet this long are forgotten (a penalty decays long before: the longest wait is minutes). */
export const PENALTY_RETENTION_MS = 24 * 3_600_000;

export class PenaltyStore extends TableStore {
  get(bucket: string, source: string): Penalty | undefined {
    const r = this.q('SELECT level, at, until FROM failure_penalties WHERE bucket = ? AND source = ?').get(
      bucket,
      source,
    );
    return r && { level: Number(r['level']), at: Number(r['at']), until: Number(r['until']) };
  }
  put(bucket: string, source: string, p: Penalty): void {
    this.q(
      `INSERT INTO failure_penalties (bucket, source, level, at, until) VALUES (?, ?, ?, ?, ?)
       ON CONFLICT (bucket, source) DO UPDATE SET level = excluded.level, at = excluded.at, until = excluded.until`,
    ).run(bucket, source, p.level, p.at, p.until);
  }
  prune(now: number): void {
    this.q('DELETE FROM failure_penalties WHERE at < ? AND until < ?').run(
      now - PENALTY_RETENTION_MS,
      now - PENALTY_RETENTION_MS,
    );
  }
  /** The book of one bucket (login, enroll, signed), every charge in one transaction under the write lock. */
  book(bucket: string, transaction: <T>(fn: () => T) => T): PenaltyBook {
    return {
      get: (key) => this.get(bucket, key),
      set: (key, penalty) => this.put(bucket, key, penalty),
      atomically: (fn) => transaction(fn),
    };
  }
}
