/**
 * Failure penalties per source (store-schema.ts migration 5), the book CA replicas share on PostgreSQL
 * (throttle.ts decides; this only reads and writes). A failure is charged by one statement, an upsert that
 * computes the new penalty from the row as it stands (throttle.ts `chargePenalty`, in SQL) and returns it: two
 * replicas charging one source at once both count (the database orders the two upserts on the row), and no
 * charge waits for the writers' lock, so a flood of failed logins does not queue behind issuance.
 *
 * The table is bounded per bucket: every `capEvery` charges, the rows beyond the `maxRows` most recently charged
 * are deleted (forgetting a source only forgives it, as the memory book's bound does), so a flood from many
 * sources costs at most about maxRows + capEvery × replicas rows per bucket, and the daily prune clears the rest.
 */

import type { SqlConnection, SqlValue } from '../store/sql.js';
import { TableStore } from './store-table.js';
import { chargePenalty, type FailurePolicy, levelCap, type Penalty, type PenaltyBook } from './throttle.js';

/** Rows quiet this long are forgotten (a penalty decays long before: the longest wait is minutes). */
export const PENALTY_RETENTION_MS = 24 * 3_600_000;
/** Sources kept per bucket, as MemoryPenaltyBook keeps per process. */
export const PENALTY_ROWS_PER_BUCKET = 10_000;

/** The bigger of two SQL expressions (GREATEST in PostgreSQL, max() in SQLite: CASE is written the same in both). */
const greater = (a: string, b: string) => `CASE WHEN ${a} > ${b} THEN ${a} ELSE ${b} END`;
const smaller = (a: string, b: string) => `CASE WHEN ${a} < ${b} THEN ${a} ELSE ${b} END`;

/**
 * The upsert that charges one failure. `@name` stands for a parameter (bound in `charge`, in order);
 * `failure_penalties.<column>` is the row as it stands. The arithmetic is throttle.ts's, step by step: decayed level, capped new level, its delay,
 * the new `until`.
 */
const CHARGE = (() => {
  const now = 'CAST(@now AS BIGINT)';
  const refill = 'CAST(@refill AS DOUBLE PRECISION)';
  const quiet = greater(`${now} - ${greater('failure_penalties.at', 'failure_penalties.until')}`, '0');
  const decayed = greater(`failure_penalties.level - ${quiet} / ${refill}`, '0');
  const level = smaller(`${decayed} + 1`, 'CAST(@cap AS DOUBLE PRECISION)');
  const over = `ceil(${level} - CAST(@burst AS DOUBLE PRECISION))`;
  const delay = `CASE WHEN ${over} > 0 THEN ${smaller(`${refill} * power(2, ${over} - 1)`, 'CAST(@maxDelay AS DOUBLE PRECISION)')} ELSE 0 END`;
  const until = `CASE WHEN ${delay} > 0 THEN CAST(${greater('failure_penalties.until', `${now} + ${delay}`)} AS BIGINT) ELSE failure_penalties.until END`;
  return `INSERT INTO failure_penalties (bucket, source, level, at, until) VALUES (@bucket, @source, @level, @at, @until)
    ON CONFLICT (bucket, source) DO UPDATE SET level = ${level}, at = ${now}, until = ${until}
    RETURNING level, at, until`;
})();

/** `@name` placeholders as `?`, and the names in the order their values are bound. */
function positional(sql: string): { text: string; names: string[] } {
  const names: string[] = [];
  const text = sql.replace(/@(\w+)/g, (_, name: string) => {
    names.push(name);
    return '?';
  });
  return { text, names };
}
const CHARGE_SQL = positional(CHARGE);

export class PenaltyStore extends TableStore {
  readonly #maxRows: number;
  readonly #capEvery: number;
  readonly #charges = new Map<string, number>();

  constructor(sql: SqlConnection, bounds: { maxRowsPerBucket?: number; capEvery?: number } = {}) {
    super(sql);
    this.#maxRows = bounds.maxRowsPerBucket ?? PENALTY_ROWS_PER_BUCKET;
    this.#capEvery = bounds.capEvery ?? 100;
  }

  get(bucket: string, source: string): Penalty | undefined {
    const r = this.q('SELECT level, at, until FROM failure_penalties WHERE bucket = ? AND source = ?').get(
      bucket,
      source,
    );
    return r && { level: Number(r['level']), at: Number(r['at']), until: Number(r['until']) };
  }

  /** One failure of `source`: one atomic upsert, outside any lock but the row's; the penalty after it. */
  charge(bucket: string, source: string, nowMs: number, policy: FailurePolicy): Penalty {
    const fresh = chargePenalty(undefined, nowMs, policy); // the row of a source not seen before
    const values: Record<string, SqlValue> = {
      bucket,
      source,
      level: fresh.level,
      at: fresh.at,
      until: fresh.until,
      now: nowMs,
      refill: policy.refillMs,
      cap: levelCap(policy),
      burst: policy.burst,
      maxDelay: policy.maxDelayMs,
    };
    const r = this.q(CHARGE_SQL.text).get(...CHARGE_SQL.names.map((name) => values[name] ?? null));
    const charges = (this.#charges.get(bucket) ?? 0) + 1;
    this.#charges.set(bucket, charges % this.#capEvery);
    if (charges >= this.#capEvery) {
      try {
        this.cap(bucket);
      } catch {
        // The charge stands; the next cap (or the daily prune) bounds the table.
      }
    }
    return { level: Number(r?.['level']), at: Number(r?.['at']), until: Number(r?.['until']) };
  }

  /** Deletes the rows of `bucket` beyond its `maxRows` most recently charged (ties at the boundary stay). */
  cap(bucket: string): void {
    this.q(
      `DELETE FROM failure_penalties WHERE bucket = ? AND at < (
         SELECT at FROM failure_penalties WHERE bucket = ? ORDER BY at DESC LIMIT 1 OFFSET ?)`,
    ).run(bucket, bucket, this.#maxRows - 1);
  }

  prune(now: number): void {
    this.q('DELETE FROM failure_penalties WHERE at < ? AND until < ?').run(
      now - PENALTY_RETENTION_MS,
      now - PENALTY_RETENTION_MS,
    );
    const buckets = this.q('SELECT DISTINCT bucket FROM failure_penalties').all();
    for (const b of buckets) this.cap(String(b['bucket']));
  }

  /** The book of one bucket (login, enroll, signed). */
  book(bucket: string): PenaltyBook {
    return {
      get: (key) => this.get(bucket, key),
      charge: (key, nowMs, policy) => this.charge(bucket, key, nowMs, policy),
    };
  }
}
