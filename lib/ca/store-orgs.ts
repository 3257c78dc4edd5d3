/**
 * Orgs and who acts in them (store-schema.ts): the orgs, their identities and access tokens, and their policy
 * rules. Reads and writes only; orgs.ts, access.ts and policy.ts decide.
 */
import type { GrantMode } from '../pki/grant.js';
import type { PolicyRule } from './policy.js';
import { type IdentityRow, nul, orgKey, type Raw, toIdentity } from './store-rows.js';
import { TableStore } from './store-table.js';

export class OrgStore extends TableStore {
  insert(orgId: string, now: number): void {
    this.q('INSERT INTO orgs (org_id, created_at) VALUES (?, ?)').run(orgId, now);
  }
  get(orgId: string): { orgId: string; createdAt: number; deletedAt: number | null } | undefined {
    const r = this.q('SELECT * FROM orgs WHERE org_id = ?').get(orgId) as Raw | undefined;
    return r && { orgId: r['org_id'] as string, createdAt: r['created_at'] as number, deletedAt: nul(r['deleted_at']) };
  }
  list(): { orgId: string; createdAt: number }[] {
    return (this.q('SELECT org_id, created_at FROM orgs WHERE deleted_at IS NULL ORDER BY org_id').all() as Raw[]).map(
      (r) => ({ orgId: r['org_id'] as string, createdAt: r['created_at'] as number }),
    );
  }
  markDeleted(orgId: string, now: number): void {
    this.q('UPDATE orgs SET deleted_at = ? WHERE org_id = ?').run(now, orgId);
  }

  // ---- identities and access tokens ---------------------------------------------------------------------------

  insertIdentity(i: Omit<IdentityRow, 'rowId' | 'revokedAt'>): number {
    const row = this.q(
      `INSERT INTO identities (org_id, identity_id, role, groups_json, client_id, secret_hash, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?) RETURNING row_id`,
    ).get(orgKey(i.orgId), i.identityId, i.role, JSON.stringify(i.groups), i.clientId, i.secretHash, i.createdAt);
    return Number(row?.['row_id']);
  }
  identityByClientId(clientId: string): IdentityRow | undefined {
    const r = this.q('SELECT * FROM identities WHERE client_id = ?').get(clientId) as Raw | undefined;
    return r && toIdentity(r);
  }
  identity(orgId: string | null, identityId: string): IdentityRow | undefined {
    const r = this.q('SELECT * FROM identities WHERE org_id = ? AND identity_id = ?').get(orgKey(orgId), identityId) as
      | Raw
      | undefined;
    return r && toIdentity(r);
  }
  listIdentities(orgId: string | null): IdentityRow[] {
    return (this.q('SELECT * FROM identities WHERE org_id = ? ORDER BY identity_id').all(orgKey(orgId)) as Raw[]).map(
      toIdentity,
    );
  }
  /** Revokes an identity and every access token it holds (two tables: run it inside the caller's transaction). */
  revokeIdentity(rowId: number, now: number): void {
    this.q('UPDATE identities SET revoked_at = ? WHERE row_id = ? AND revoked_at IS NULL').run(now, rowId);
    this.q('UPDATE access_tokens SET revoked_at = ? WHERE identity_row = ? AND revoked_at IS NULL').run(now, rowId);
  }
  revokeIdentities(orgId: string, now: number): void {
    for (const i of this.listIdentities(orgId)) this.revokeIdentity(i.rowId, now);
  }

  insertAccessToken(tokenHash: string, identityRow: number, now: number, expiresAt: number): void {
    this.q('INSERT INTO access_tokens (token_hash, identity_row, created_at, expires_at) VALUES (?, ?, ?, ?)').run(
      tokenHash,
      identityRow,
      now,
      expiresAt,
    );
  }
  accessToken(tokenHash: string): { identity: IdentityRow; expiresAt: number; revokedAt: number | null } | undefined {
    const r = this.q(
      `SELECT t.expires_at AS t_expires_at, t.revoked_at AS t_revoked_at, i.*
       FROM access_tokens t JOIN identities i ON i.row_id = t.identity_row WHERE t.token_hash = ?`,
    ).get(tokenHash) as Raw | undefined;
    if (!r) return undefined;
    return { identity: toIdentity(r), expiresAt: r['t_expires_at'] as number, revokedAt: nul(r['t_revoked_at']) };
  }
  revokeAccessToken(tokenHash: string, now: number): boolean {
    return (
      this.q('UPDATE access_tokens SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL').run(now, tokenHash)
        .changes === 1
    );
  }
  /** Forgets tokens a day past their expiry (they can no longer be used anyway). */
  pruneAccessTokens(now: number): void {
    this.q('DELETE FROM access_tokens WHERE expires_at < ?').run(now - 24 * 3600_000);
  }

  // ---- policy rules -------------------------------------------------------------------------------------------

  insertPolicy(rule: PolicyRule, now: number): void {
    this.q(
      `INSERT INTO policies (org_id, rule_id, subject, gateways_json, targets_json, modes_json, created_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      rule.orgId,
      rule.id,
      rule.subject,
      JSON.stringify(rule.gateways),
      JSON.stringify(rule.targets),
      JSON.stringify(rule.modes),
      now,
    );
  }
  policies(orgId: string): PolicyRule[] {
    return (this.q('SELECT * FROM policies WHERE org_id = ? ORDER BY seq').all(orgId) as Raw[]).map((r) => ({
      id: r['rule_id'] as string,
      orgId: r['org_id'] as string,
      subject: r['subject'] as string,
      gateways: JSON.parse(r['gateways_json'] as string) as string[],
      targets: JSON.parse(r['targets_json'] as string) as string[],
      modes: JSON.parse(r['modes_json'] as string) as GrantMode[],
    }));
  }
  deletePolicy(orgId: string, ruleId: string): boolean {
    return this.q('DELETE FROM policies WHERE org_id = ? AND rule_id = ?').run(orgId, ruleId).changes === 1;
  }
  deletePolicies(orgId: string): void {
    this.q('DELETE FROM policies WHERE org_id = ?').run(orgId);
  }
}
