/**
 * The CA's SQLite repository: typed reads and writes over the schema in store-schema.ts. It decides nothing;
 * the Authority calls it inside `transaction()` so that an issued certificate, its records and its audit row
 * commit together, before the certificate is returned to anyone.
 */

import Database from 'better-sqlite3';
import type { GrantMode } from '../pki/grant.js';
import { type Db, migrate, openDatabase } from '../store/db.js';
import type { PolicyRule } from './policy.js';
import { GenerationStore } from './store-generations.js';
import { RotationStore } from './store-rotations.js';
import {
  type AuditRow,
  type AuthorityRow,
  type CertificateRow,
  type EnrollmentTokenRow,
  type GatewayRow,
  type GrantRow,
  type IdentityRow,
  nul,
  orgKey,
  type ProxyRow,
  type Raw,
  type RevocationRow,
  toAudit,
  toAuthority,
  toCertificate,
  toEnrollmentToken,
  toGateway,
  toGrant,
  toIdentity,
  toProxy,
  toRevocation,
} from './store-rows.js';
import { MIGRATIONS } from './store-schema.js';
import { SeenStore } from './store-seen.js';

export type {
  AuditRow,
  AuthorityRow,
  CertificateRow,
  EnrollmentTokenRow,
  GatewayRow,
  GrantRow,
  IdentityRow,
  ProxyRow,
  RevocationRow,
};

export class CaStore {
  readonly db: Db;
  /** Certificate generations of gateways and proxies (store-generations.ts). */
  readonly generations: GenerationStore;
  /** When each gateway and proxy last read the feed, and its version (store-seen.ts). */
  readonly seen: SeenStore;
  /** The rotation state of each CA (store-rotations.ts). */
  readonly rotations: RotationStore;

  readonly #statements = new Map<string, Database.Statement>();

  private constructor(db: Db) {
    this.db = db;
    this.generations = new GenerationStore(db);
    this.seen = new SeenStore(db);
    this.rotations = new RotationStore(db);
  }

  /** Prepared once per SQL text: preparing costs more than running most of these queries. */
  #q(sql: string): Database.Statement {
    let stmt = this.#statements.get(sql);
    if (!stmt) {
      stmt = this.db.prepare(sql);
      this.#statements.set(sql, stmt);
    }
    return stmt;
  }

  /** Opens a database file (0600 in a 0700 directory, WAL, synchronous=FULL) or ':memory:', migrated forward. */
  static open(path: string): CaStore {
    if (path === ':memory:') return CaStore.wrap(new Database(':memory:'));
    return new CaStore(openDatabase({ path, migrations: MIGRATIONS }));
  }

  /** Migrates an already-open better-sqlite3 database (tests, lib/store). */
  static wrap(db: Db): CaStore {
    migrate(db, MIGRATIONS);
    return new CaStore(db);
  }

  close(): void {
    this.db.close();
  }

  /** Runs `fn` in one IMMEDIATE transaction: all its writes commit together or not at all. */
  transaction<T>(fn: () => T): T {
    return this.db.transaction(fn).immediate();
  }

  /** Moves when another connection commits (SQLite data_version): the daemon's hint that the CLI changed data. */
  dataVersion(): number {
    return this.db.pragma('data_version', { simple: true }) as number;
  }

  schemaVersion(): number {
    return this.db.pragma('user_version', { simple: true }) as number;
  }

  // ---- meta -----------------------------------------------------------------------------------------------

  getMeta(key: string): string | undefined {
    const row = this.#q('SELECT value FROM meta WHERE key = ?').get(key) as { value: string } | undefined;
    return row?.value;
  }
  setMeta(key: string, value: string): void {
    this.db
      .prepare('INSERT INTO meta (key, value) VALUES (?, ?) ON CONFLICT (key) DO UPDATE SET value = ?')
      .run(key, value, value);
  }

  // ---- authorities (CA key material) ------------------------------------------------------------------------

  insertAuthority(a: AuthorityRow): void {
    this.db
      .prepare(
        `INSERT INTO authorities (id, org_id, purpose, kind, public, sealed_key, created_at, not_after)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(a.id, orgKey(a.orgId), a.purpose, a.kind, a.public, a.sealedKey, a.createdAt, a.notAfter);
  }
  getAuthority(id: string): AuthorityRow | undefined {
    const r = this.#q('SELECT * FROM authorities WHERE id = ?').get(id) as Raw | undefined;
    return r && toAuthority(r);
  }
  listAuthorities(orgId: string | null): AuthorityRow[] {
    return (this.#q('SELECT * FROM authorities WHERE org_id = ? ORDER BY id').all(orgKey(orgId)) as Raw[]).map(
      toAuthority,
    );
  }
  /** Crypto-shredding: the public half stays (old certs can still be explained), the private key is gone. */
  destroyAuthorityKeys(orgId: string): void {
    this.#q('UPDATE authorities SET sealed_key = NULL WHERE org_id = ?').run(orgKey(orgId));
  }

  // ---- orgs -------------------------------------------------------------------------------------------------

  insertOrg(orgId: string, now: number): void {
    this.#q('INSERT INTO orgs (org_id, created_at) VALUES (?, ?)').run(orgId, now);
  }
  getOrg(orgId: string): { orgId: string; createdAt: number; deletedAt: number | null } | undefined {
    const r = this.#q('SELECT * FROM orgs WHERE org_id = ?').get(orgId) as Raw | undefined;
    return r && { orgId: r['org_id'] as string, createdAt: r['created_at'] as number, deletedAt: nul(r['deleted_at']) };
  }
  listOrgs(): { orgId: string; createdAt: number }[] {
    return (this.#q('SELECT org_id, created_at FROM orgs WHERE deleted_at IS NULL ORDER BY org_id').all() as Raw[]).map(
      (r) => ({ orgId: r['org_id'] as string, createdAt: r['created_at'] as number }),
    );
  }
  markOrgDeleted(orgId: string, now: number): void {
    this.#q('UPDATE orgs SET deleted_at = ? WHERE org_id = ?').run(now, orgId);
  }

  // ---- identities and tokens --------------------------------------------------------------------------------

  insertIdentity(i: Omit<IdentityRow, 'rowId' | 'revokedAt'>): number {
    const info = this.db
      .prepare(
        `INSERT INTO identities (org_id, identity_id, role, groups_json, client_id, secret_hash, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(orgKey(i.orgId), i.identityId, i.role, JSON.stringify(i.groups), i.clientId, i.secretHash, i.createdAt);
    return Number(info.lastInsertRowid);
  }
  identityByClientId(clientId: string): IdentityRow | undefined {
    const r = this.#q('SELECT * FROM identities WHERE client_id = ?').get(clientId) as Raw | undefined;
    return r && toIdentity(r);
  }
  identity(orgId: string | null, identityId: string): IdentityRow | undefined {
    const r = this.db
      .prepare('SELECT * FROM identities WHERE org_id = ? AND identity_id = ?')
      .get(orgKey(orgId), identityId) as Raw | undefined;
    return r && toIdentity(r);
  }
  listIdentities(orgId: string | null): IdentityRow[] {
    return (this.#q('SELECT * FROM identities WHERE org_id = ? ORDER BY identity_id').all(orgKey(orgId)) as Raw[]).map(
      toIdentity,
    );
  }
  revokeIdentity(rowId: number, now: number): void {
    this.#q('UPDATE identities SET revoked_at = ? WHERE row_id = ? AND revoked_at IS NULL').run(now, rowId);
    this.db
      .prepare('UPDATE access_tokens SET revoked_at = ? WHERE identity_row = ? AND revoked_at IS NULL')
      .run(now, rowId);
  }
  revokeOrgIdentities(orgId: string, now: number): void {
    for (const i of this.listIdentities(orgId)) this.revokeIdentity(i.rowId, now);
  }

  insertAccessToken(tokenHash: string, identityRow: number, now: number, expiresAt: number): void {
    this.db
      .prepare('INSERT INTO access_tokens (token_hash, identity_row, created_at, expires_at) VALUES (?, ?, ?, ?)')
      .run(tokenHash, identityRow, now, expiresAt);
  }
  accessToken(tokenHash: string): { identity: IdentityRow; expiresAt: number; revokedAt: number | null } | undefined {
    const r = this.db
      .prepare(
        `SELECT t.expires_at AS t_expires_at, t.revoked_at AS t_revoked_at, i.*
         FROM access_tokens t JOIN identities i ON i.row_id = t.identity_row WHERE t.token_hash = ?`,
      )
      .get(tokenHash) as Raw | undefined;
    if (!r) return undefined;
    return { identity: toIdentity(r), expiresAt: r['t_expires_at'] as number, revokedAt: nul(r['t_revoked_at']) };
  }
  revokeAccessToken(tokenHash: string, now: number): boolean {
    return (
      this.db
        .prepare('UPDATE access_tokens SET revoked_at = ? WHERE token_hash = ? AND revoked_at IS NULL')
        .run(now, tokenHash).changes === 1
    );
  }
  /** Forgets expired tokens and nonces (they can no longer be used anyway). */
  pruneExpired(now: number): void {
    this.#q('DELETE FROM access_tokens WHERE expires_at < ?').run(now - 24 * 3600_000);
    this.#q('DELETE FROM request_nonces WHERE expires_at < ?').run(now);
  }

  insertEnrollmentToken(t: Omit<EnrollmentTokenRow, 'usedAt'>): void {
    this.db
      .prepare(
        `INSERT INTO enrollment_tokens (token_hash, org_id, kind, subject_id, created_by, created_at, expires_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(t.tokenHash, orgKey(t.orgId), t.kind, t.subjectId, t.createdBy, t.createdAt, t.expiresAt);
  }
  enrollmentToken(tokenHash: string): EnrollmentTokenRow | undefined {
    const r = this.#q('SELECT * FROM enrollment_tokens WHERE token_hash = ?').get(tokenHash) as Raw | undefined;
    return r && toEnrollmentToken(r);
  }
  /** Marks a token used; false when it already was (a concurrent use lost the race). */
  useEnrollmentToken(tokenHash: string, now: number): boolean {
    return (
      this.db
        .prepare('UPDATE enrollment_tokens SET used_at = ? WHERE token_hash = ? AND used_at IS NULL')
        .run(now, tokenHash).changes === 1
    );
  }

  /** Records a renewal nonce; false when it was seen before (a replay). */
  useNonce(nonce: string, expiresAt: number): boolean {
    return (
      this.#q('INSERT OR IGNORE INTO request_nonces (nonce, expires_at) VALUES (?, ?)').run(nonce, expiresAt)
        .changes === 1
    );
  }

  // ---- policies ---------------------------------------------------------------------------------------------

  insertPolicy(rule: PolicyRule, now: number): void {
    this.db
      .prepare(
        `INSERT INTO policies (org_id, rule_id, subject, gateways_json, targets_json, modes_json, created_at)
         VALUES (?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
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
    return (this.#q('SELECT * FROM policies WHERE org_id = ? ORDER BY seq').all(orgId) as Raw[]).map((r) => ({
      id: r['rule_id'] as string,
      orgId: r['org_id'] as string,
      subject: r['subject'] as string,
      gateways: JSON.parse(r['gateways_json'] as string) as string[],
      targets: JSON.parse(r['targets_json'] as string) as string[],
      modes: JSON.parse(r['modes_json'] as string) as GrantMode[],
    }));
  }
  deletePolicy(orgId: string, ruleId: string): boolean {
    return this.#q('DELETE FROM policies WHERE org_id = ? AND rule_id = ?').run(orgId, ruleId).changes === 1;
  }
  deleteOrgPolicies(orgId: string): void {
    this.#q('DELETE FROM policies WHERE org_id = ?').run(orgId);
  }

  // ---- gateways and proxies ---------------------------------------------------------------------------------

  upsertGateway(orgId: string, gatewayId: string, uri: string, now: number): void {
    this.db
      .prepare(
        `INSERT INTO gateways (org_id, gateway_id, uri, enrolled_at) VALUES (?, ?, ?, ?)
         ON CONFLICT (org_id, gateway_id) DO UPDATE SET renewed_at = ?`,
      )
      .run(orgId, gatewayId, uri, now, now);
  }
  gateway(orgId: string, gatewayId: string): GatewayRow | undefined {
    const r = this.#q('SELECT * FROM gateways WHERE org_id = ? AND gateway_id = ?').get(orgId, gatewayId) as
      | Raw
      | undefined;
    return r && toGateway(r);
  }
  listGateways(orgId: string): GatewayRow[] {
    return (this.#q('SELECT * FROM gateways WHERE org_id = ? ORDER BY gateway_id').all(orgId) as Raw[]).map(toGateway);
  }
  revokeGateway(orgId: string, gatewayId: string, now: number): void {
    this.db
      .prepare('UPDATE gateways SET revoked_at = ? WHERE org_id = ? AND gateway_id = ? AND revoked_at IS NULL')
      .run(now, orgId, gatewayId);
  }

  upsertProxy(p: Omit<ProxyRow, 'revokedAt'>): void {
    this.db
      .prepare(
        `INSERT INTO proxies (org_id, proxy_id, scope, uri, hostnames_json, ssh_address, tls_address, enrolled_at)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?)
         ON CONFLICT (org_id, proxy_id) DO UPDATE SET hostnames_json = excluded.hostnames_json,
           ssh_address = excluded.ssh_address, tls_address = excluded.tls_address, renewed_at = excluded.enrolled_at`,
      )
      .run(
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
    const r = this.#q('SELECT * FROM proxies WHERE org_id = ? AND proxy_id = ?').get(orgKey(orgId), proxyId) as
      | Raw
      | undefined;
    return r && toProxy(r);
  }
  /** Active proxies a gateway of `orgId` may attach to: every instance proxy and that org's own. */
  proxiesFor(orgId: string): ProxyRow[] {
    return (
      this.db
        .prepare(
          `SELECT * FROM proxies WHERE revoked_at IS NULL AND (org_id = '' OR org_id = ?)
           ORDER BY scope, proxy_id`,
        )
        .all(orgId) as Raw[]
    ).map(toProxy);
  }
  listProxies(): ProxyRow[] {
    return (this.#q('SELECT * FROM proxies ORDER BY org_id, proxy_id').all() as Raw[]).map(toProxy);
  }
  revokeProxy(orgId: string | null, proxyId: string, now: number): void {
    this.db
      .prepare('UPDATE proxies SET revoked_at = ? WHERE org_id = ? AND proxy_id = ? AND revoked_at IS NULL')
      .run(now, orgKey(orgId), proxyId);
  }

  // ---- certificates and grants --------------------------------------------------------------------------------

  insertCertificate(c: CertificateRow): void {
    this.db
      .prepare(
        `INSERT INTO certificates (serial, kind, authority_id, org_id, subject_uri, fingerprint, not_after,
           requested_by, grant_id, created_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(
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
    const r = this.#q('SELECT * FROM certificates WHERE serial = ?').get(serial) as Raw | undefined;
    return r && toCertificate(r);
  }
  certificateCount(): number {
    return (this.#q('SELECT count(*) AS n FROM certificates').get() as { n: number }).n;
  }

  insertGrant(g: GrantRow): void {
    this.db
      .prepare(
        `INSERT INTO grants (grant_id, org_id, gateway_id, identity_id, target_json, mode, rule_id, created_at,
           expires_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(g.grantId, g.orgId, g.gatewayId, g.identityId, g.targetJson, g.mode, g.ruleId, g.createdAt, g.expiresAt);
  }
  grant(grantId: string): GrantRow | undefined {
    const r = this.#q('SELECT * FROM grants WHERE grant_id = ?').get(grantId) as Raw | undefined;
    return r && toGrant(r);
  }
  /** The newest grants of an org first. */
  listGrants(orgId: string, limit: number): GrantRow[] {
    return (
      this.db
        .prepare('SELECT * FROM grants WHERE org_id = ? ORDER BY created_at DESC LIMIT ?')
        .all(orgId, limit) as Raw[]
    ).map(toGrant);
  }

  // ---- revocations ----------------------------------------------------------------------------------------------

  /** Adds a revocation, or returns the existing one's seq (revoking twice is not an error). */
  insertRevocation(r: Omit<RevocationRow, 'seq'>): number {
    const existing = this.db
      .prepare('SELECT seq FROM revocations WHERE kind = ? AND org_id = ? AND subject = ?')
      .get(r.kind, orgKey(r.orgId), r.subject) as { seq: number } | undefined;
    if (existing) return existing.seq;
    const info = this.db
      .prepare('INSERT INTO revocations (kind, org_id, subject, reason, revoked_by, at) VALUES (?, ?, ?, ?, ?, ?)')
      .run(r.kind, orgKey(r.orgId), r.subject, r.reason, r.revokedBy, r.at);
    return Number(info.lastInsertRowid);
  }
  isRevoked(kind: RevocationRow['kind'], orgId: string | null, subject: string): boolean {
    return (
      this.db
        .prepare('SELECT 1 FROM revocations WHERE kind = ? AND org_id = ? AND subject = ?')
        .get(kind, orgKey(orgId), subject) !== undefined
    );
  }
  /** Entries after `since`, oldest first; `orgId` limits to that org's and the instance's entries. */
  revocationsSince(since: number, limit: number, orgId?: string): RevocationRow[] {
    const rows =
      orgId === undefined
        ? this.#q('SELECT * FROM revocations WHERE seq > ? ORDER BY seq LIMIT ?').all(since, limit)
        : this.db
            .prepare(`SELECT * FROM revocations WHERE seq > ? AND (org_id = ? OR org_id = '') ORDER BY seq LIMIT ?`)
            .all(since, orgId, limit);
    return (rows as Raw[]).map(toRevocation);
  }
  latestRevocationSeq(): number {
    return (this.#q('SELECT coalesce(max(seq), 0) AS n FROM revocations').get() as { n: number }).n;
  }

  // ---- audit ------------------------------------------------------------------------------------------------

  insertAudit(a: Omit<AuditRow, 'seq'>): number {
    const info = this.db
      .prepare(
        `INSERT INTO audit (at, actor, subject, action, outcome, code, reason, org_id, source)
         VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)`,
      )
      .run(a.at, a.actor, a.subject, a.action, a.outcome, a.code, a.reason, orgKey(a.orgId), a.source);
    return Number(info.lastInsertRowid);
  }
  auditSince(since: number, limit: number, orgId?: string): AuditRow[] {
    const rows =
      orgId === undefined
        ? this.#q('SELECT * FROM audit WHERE seq > ? ORDER BY seq LIMIT ?').all(since, limit)
        : this.db
            .prepare('SELECT * FROM audit WHERE seq > ? AND org_id = ? ORDER BY seq LIMIT ?')
            .all(since, orgId, limit);
    return (rows as Raw[]).map(toAudit);
  }
}
