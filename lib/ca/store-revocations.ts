/**
 * The revocation list (store-schema.ts): what the signed feed carries, in seq order. Reads and writes only;
 * revocation.ts decides and signs.
 */
import { orgKey, type Raw, type RevocationRow, toRevocation } from './store-rows.js';
import { TableStore } from './store-table.js';

export class RevocationStore extends TableStore {
  /** Adds a revocation, or returns the existing one's seq (revoking twice is not an error). */
  insert(r: Omit<RevocationRow, 'seq'>): number {
    const existing = this.q('SELECT seq FROM revocations WHERE kind = ? AND org_id = ? AND subject = ?').get(
      r.kind,
      orgKey(r.orgId),
      r.subject,
    ) as { seq: number } | undefined;
    if (existing) return existing.seq;
    const row = this.q(
      'INSERT INTO revocations (kind, org_id, subject, reason, revoked_by, at) VALUES (?, ?, ?, ?, ?, ?) RETURNING seq',
    ).get(r.kind, orgKey(r.orgId), r.subject, r.reason, r.revokedBy, r.at);
    return Number(row?.['seq']);
  }
  has(kind: RevocationRow['kind'], orgId: string | null, subject: string): boolean {
    return (
      this.q('SELECT 1 FROM revocations WHERE kind = ? AND org_id = ? AND subject = ?').get(
        kind,
        orgKey(orgId),
        subject,
      ) !== undefined
    );
  }
  /**
   * Entries after `since` up to `upTo` (a latestSeq read first), oldest first; `orgId` limits to that org's and the
   * instance's entries. Bounded by `upTo` so a feed never says a seq whose entries it did not carry: an entry
   * committed between the two reads (another replica, the CLI) waits for the next read instead of being skipped.
   * Every insert runs under the writers' lock, so committed seqs are always a prefix.
   */
  since(since: number, limit: number, orgId: string | undefined, upTo: number): RevocationRow[] {
    const rows =
      orgId === undefined
        ? this.q('SELECT * FROM revocations WHERE seq > ? AND seq <= ? ORDER BY seq LIMIT ?').all(since, upTo, limit)
        : this.q(
            `SELECT * FROM revocations WHERE seq > ? AND seq <= ? AND (org_id = ? OR org_id = '') ORDER BY seq LIMIT ?`,
          ).all(since, upTo, orgId, limit);
    return (rows as Raw[]).map(toRevocation);
  }
  latestSeq(): number {
    return (this.q('SELECT coalesce(max(seq), 0) AS n FROM revocations').get() as { n: number }).n;
  }
}
