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
  /** Entries after `since`, oldest first; `orgId` limits to that org's and the instance's entries. */
  since(since: number, limit: number, orgId?: string): RevocationRow[] {
    const rows =
      orgId === undefined
        ? this.q('SELECT * FROM revocations WHERE seq > ? ORDER BY seq LIMIT ?').all(since, limit)
        : this.q(`SELECT * FROM revocations WHERE seq > ? AND (org_id = ? OR org_id = '') ORDER BY seq LIMIT ?`).all(
            since,
            orgId,
            limit,
          );
    return (rows as Raw[]).map(toRevocation);
  }
  latestSeq(): number {
    return (this.q('SELECT coalesce(max(seq), 0) AS n FROM revocations').get() as { n: number }).n;
  }
}
