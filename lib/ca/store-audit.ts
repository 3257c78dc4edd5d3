/** The audit log (store-schema.ts): one row per decision, in seq order. Writes come from audit.ts only. */
import { type AuditRow, orgKey, type Raw, toAudit } from './store-rows.js';
import { TableStore } from './store-table.js';

export class AuditStore extends TableStore {
  insert(a: Omit<AuditRow, 'seq'>): number {
    const row = this.q(
      `INSERT INTO audit (at, actor, subject, action, outcome, code, reason, org_id, source)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?) RETURNING seq`,
    ).get(a.at, a.actor, a.subject, a.action, a.outcome, a.code, a.reason, orgKey(a.orgId), a.source);
    return Number(row?.['seq']);
  }
  since(since: number, limit: number, orgId?: string): AuditRow[] {
    const rows =
      orgId === undefined
        ? this.q('SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?').all(since, limit)
        : this.q('SELECT * FROM audit WHERE seq > ? AND org_id = ? ORDER BY seq LIMIT ?').all(since, orgId, limit);
    return (rows as Raw[]).map(toAudit);
  }
}
