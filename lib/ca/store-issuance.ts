/**
 * What the CA signs with and what it signed (store-schema.ts): the CA key material (sealed by keyring.ts), every
 * certificate issued, and the grants. Reads and writes only; keyring.ts, issue.ts and grants.ts decide.
 */
import {
  type AuthorityRow,
  type CertificateRow,
  type GrantRow,
  orgKey,
  type Raw,
  toAuthority,
  toCertificate,
  toGrant,
} from './store-rows.js';
import { TableStore } from './store-table.js';

export class IssuanceStore extends TableStore {
  insertAuthority(a: AuthorityRow): void {
    this.q(
      `INSERT INTO authorities (id, org_id, purpose, kind, public, sealed_key, created_at, not_after)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(a.id, orgKey(a.orgId), a.purpose, a.kind, a.public, a.sealedKey, a.createdAt, a.notAfter);
  }
  authority(id: string): AuthorityRow | undefined {
    const r = this.q('SELECT * FROM authorities WHERE id = ?').get(id) as Raw | undefined;
    return r && toAuthority(r);
  }
  listAuthorities(orgId: string | null): AuthorityRow[] {
    return (this.q('SELECT * FROM authorities WHERE org_id = ? ORDER BY id').all(orgKey(orgId)) as Raw[]).map(
      toAuthority,
    );
  }
  /** Forgets an authority row altogether (the API server certificate, replaced at each issue). */
  deleteAuthority(id: string): void {
    this.q('DELETE FROM authorities WHERE id = ?').run(id);
  }
  /** Destroys one CA's private key; its public part stays on record. */
  destroyAuthorityKey(id: string): void {
    this.q('UPDATE authorities SET sealed_key = NULL WHERE id = ?').run(id);
  }
  /** Crypto-shredding: the public half stays (old certs can still be explained), the private key is gone. */
  destroyOrgAuthorityKeys(orgId: string): void {
    this.q('UPDATE authorities SET sealed_key = NULL WHERE org_id = ?').run(orgKey(orgId));
  }

  // ---- certificates and grants --------------------------------------------------------------------------------

  insertCertificate(c: CertificateRow): void {
    this.q(
      `INSERT INTO certificates (serial, kind, authority_id, org_id, subject_uri, fingerprint, not_after,
         requested_by, grant_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(
      c.serial,
      c.kind,
      c.authorityId,
      orgKey(c.orgId),
      c.subjectUri,
      c.fingerprint,
      c.notAfter,
      c.requestedBy,
      c.grantId,
      c.createdAt,
    );
  }
  certificate(serial: string): CertificateRow | undefined {
    const r = this.q('SELECT * FROM certificates WHERE serial = ?').get(serial) as Raw | undefined;
    return r && toCertificate(r);
  }
  certificateCount(): number {
    return (this.q('SELECT count(*) AS n FROM certificates').get() as { n: number }).n;
  }

  insertGrant(g: GrantRow): void {
    this.q(
      `INSERT INTO grants (grant_id, org_id, gateway_id, identity_id, target_json, mode, rule_id, created_at,
         expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
    ).run(g.grantId, g.orgId, g.gatewayId, g.identityId, g.targetJson, g.mode, g.ruleId, g.createdAt, g.expiresAt);
  }
  grant(grantId: string): GrantRow | undefined {
    const r = this.q('SELECT * FROM grants WHERE grant_id = ?').get(grantId) as Raw | undefined;
    return r && toGrant(r);
  }
  /** The newest grants of an org first. */
  listGrants(orgId: string, limit: number): GrantRow[] {
    return (
      this.q('SELECT * FROM grants WHERE org_id = ? ORDER BY created_at DESC LIMIT ?').all(orgId, limit) as Raw[]
    ).map(toGrant);
  }
}
