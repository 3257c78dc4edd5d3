/**
 * Enrollment (store-schema.ts): one-time enrollment tokens, the enrolled gateways and proxies, and the nonces of
 * signed requests (a replay is refused). Reads and writes only; access.ts, enroll.ts and renew.ts decide.
 */
import {
  type EnrollmentTokenRow,
  type GatewayRow,
  orgKey,
  type ProxyRow,
  type Raw,
  toEnrollmentToken,
  toGateway,
  toProxy,
} from './store-rows.js';
import { TableStore } from './store-table.js';

export class EnrollmentStore extends TableStore {
  insertToken(t: Omit<EnrollmentTokenRow, 'usedAt'>): void {
    this.q(
      `INSERT INTO enrollment_tokens (token_hash, org_id, kind, subject_id, created_by, created_at, expires_at)
       VALUES (?, ?, ?, ?, ?, ?, ?)`,
    ).run(t.tokenHash, orgKey(t.orgId), t.kind, t.subjectId, t.createdBy, t.createdAt, t.expiresAt);
  }
  token(tokenHash: string): EnrollmentTokenRow | undefined {
    const r = this.q('SELECT * FROM enrollment_tokens WHERE token_hash = ?').get(tokenHash) as Raw | undefined;
    return r && toEnrollmentToken(r);
  }
  /** Marks a token used; false when it already was (a concurrent use lost the race). */
  useToken(tokenHash: string, now: number): boolean {
    return (
      this.q('UPDATE enrollment_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL').run(now, tokenHash)
        .changes === 1
    );
  }

  /** Records a renewal nonce; false when it was seen before (a replay). */
  useNonce(nonce: string, expiresAt: number): boolean {
    return (
      this.q('INSERT INTO request_nonces (nonce, expires_at) VALUES (?, ?) ON CONFLICT DO NOTHING').run(
        nonce,
        expiresAt,
      ).changes === 1
    );
  }
  /** Forgets expired nonces (a request that old is refused by its timestamp anyway). */
  pruneNonces(now: number): void {
    this.q('DELETE FROM request_nonces WHERE expires_at < ?').run(now);
  }

  // ---- gateways -----------------------------------------------------------------------------------------------

  upsertGateway(orgId: string, gatewayId: string, uri: string, now: number): void {
    this.q(
      `INSERT INTO gateways (org_id, gateway_id, uri, enrolled_at) VALUES (?, ?, ?, ?)
       ON CONFLICT (org_id, gateway_id) DO UPDATE SET renewed_at = ?`,
    ).run(orgId, gatewayId, uri, now, now);
  }
  gateway(orgId: string, gatewayId: string): GatewayRow | undefined {
    const r = this.q('SELECT * FROM gateways WHERE org_id = ? AND gateway_id = ?').get(orgId, gatewayId) as
      | Raw
      | undefined;
    return r && toGateway(r);
  }
  listGateways(orgId: string): GatewayRow[] {
    return (this.q('SELECT * FROM gateways WHERE org_id = ? ORDER BY gateway_id').all(orgId) as Raw[]).map(toGateway);
  }
  revokeGateway(orgId: string, gatewayId: string, now: number): void {
    this.q('UPDATE gateways SET revoked_at = ? WHERE org_id = ? AND gateway_id = ? AND revoked_at IS NULL').run(
      now,
      orgId,
      gatewayId,
    );
  }

  // ---- proxies ------------------------------------------------------------------------------------------------

  upsertProxy(p: Omit<ProxyRow, 'revokedAt'>): void {
    this.q(
      `INSERT INTO proxies (org_id, proxy_id, scope, uri, hostnames_json, ssh_address, tls_address, enrolled_at)
       VALUES (?, ?, ?, ?, ?, ?, ?, ?)
       ON CONFLICT (org_id, proxy_id) DO UPDATE SET hostnames_json = excluded.hostnames_json,
         ssh_address = excluded.ssh_address, tls_address = excluded.tls_address, renewed_at = excluded.enrolled_at`,
    ).run(
      orgKey(p.orgId),
      p.proxyId,
      p.scope,
      p.uri,
      JSON.stringify(p.hostnames),
      p.sshAddress,
      p.tlsAddress,
      p.enrolledAt,
    );
  }
  proxy(orgId: string | null, proxyId: string): ProxyRow | undefined {
    const r = this.q('SELECT * FROM proxies WHERE org_id = ? AND proxy_id = ?').get(orgKey(orgId), proxyId) as
      | Raw
      | undefined;
    return r && toProxy(r);
  }
  /** Active proxies a gateway of `orgId` may attach to: every instance proxy and that org's own. */
  proxiesFor(orgId: string): ProxyRow[] {
    return (
      this.q(
        `SELECT * FROM proxies WHERE revoked_at IS NULL AND (org_id = '' OR org_id = ?)
         ORDER BY scope, proxy_id`,
      ).all(orgId) as Raw[]
    ).map(toProxy);
  }
  listProxies(): ProxyRow[] {
    return (this.q('SELECT * FROM proxies ORDER BY org_id, proxy_id').all() as Raw[]).map(toProxy);
  }
  revokeProxy(orgId: string | null, proxyId: string, now: number): void {
    this.q('UPDATE proxies SET revoked_at = ? WHERE org_id = ? AND proxy_id = ? AND revoked_at IS NULL').run(
      now,
      orgKey(orgId),
      proxyId,
    );
  }
}
