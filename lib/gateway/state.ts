/**
 * The gateway's state database (<state dir>/gateway.db, 0600 in a 0700 directory, lib/store): the enrollment
 * result (keys, certificates, trust anchors, proxy list), the revocations seen, and the audit trail. `serve`
 * needs nothing else to start. Writes replace the whole enrollment in one transaction, so a reload never sees
 * half of a renewal.
 */

import type Database from 'better-sqlite3';
import { StateSecrets } from '../enrolled/secrets.js';
import { EnrolledStore, enrollmentTableSql, revocationsTableSql } from '../enrolled/store.js';
import type { AuditRecord } from '../runtime/log.js';
import { type Migration, openDatabase } from '../store/db.js';
import type { ProxyScope } from './tunnel.js';

export const GATEWAY_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'enrollment, revocations, audit',
    sql: `
      ${enrollmentTableSql(['org_id TEXT NOT NULL', 'gateway_id TEXT NOT NULL', 'gateway_uri TEXT NOT NULL'])}
      CREATE TABLE ssh_certificates (scope TEXT PRIMARY KEY, certificate TEXT NOT NULL);
      CREATE TABLE ssh_host_cas (scope TEXT NOT NULL, key TEXT NOT NULL, PRIMARY KEY (scope, key));
      CREATE TABLE gateway_client_cas (pem TEXT PRIMARY KEY);
      CREATE TABLE proxies (
        proxy_id TEXT PRIMARY KEY,
        scope TEXT NOT NULL,
        hostname TEXT NOT NULL,
        ssh_address TEXT NOT NULL,
        tls_address TEXT NOT NULL
      );
      CREATE TABLE revocations (
        kind TEXT NOT NULL,
        org_id TEXT,
        subject TEXT NOT NULL,
        seq INTEGER,
        at TEXT NOT NULL,
        PRIMARY KEY (kind, subject, org_id)
      );
      CREATE TABLE feed (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
      CREATE TABLE audit (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        time TEXT NOT NULL,
        event TEXT NOT NULL,
        fields TEXT NOT NULL
      );
    `,
  },
  {
    version: 2,
    // As the proxy keeps them ('' = any org): a NULL in a primary key let the same entry be stored twice.
    name: 'revocations keyed with org_id NOT NULL',
    sql: `
      ${revocationsTableSql('revocations_v2')}
      INSERT OR IGNORE INTO revocations_v2 (kind, org_id, subject, seq, at)
        SELECT kind, COALESCE(org_id, ''), subject, seq, at FROM revocations;
      DROP TABLE revocations;
      ALTER TABLE revocations_v2 RENAME TO revocations;
    `,
  },
  {
    version: 3,
    // The CA rotation version this gateway applied (lib/enrolled/store.ts rotationVersion).
    name: 'rotation version',
    sql: 'ALTER TABLE feed ADD COLUMN rotation TEXT;',
  },
  {
    version: 4,
    // Why the CA refused this gateway for good after a rotation (lib/enrolled/store.ts rotationMissed).
    name: 'rotation missed',
    sql: 'ALTER TABLE feed ADD COLUMN rotation_missed TEXT;',
  },
];

export interface ProxyRecord {
  proxyId: string;
  scope: ProxyScope;
  hostname: string;
  sshAddress: string;
  tlsAddress: string;
}

/** Everything `serve` needs, as enrollment or renewal left it. */
export interface GatewayState {
  /** The CA rotation version of this enrollment or renewal (kept in the feed table, not loaded back). */
  rotation?: string;
  orgId: string;
  gatewayId: string;
  gatewayUri: string;
  caUrl: string;
  caFingerprint: string;
  /** PKCS#8 PEM of the inner TLS key. */
  tlsKeyPem: string;
  /** PEM chain of the inner TLS server cert, leaf first. */
  tlsChainPem: string;
  /** OpenSSH private key text of the SSH key. */
  sshPrivateKey: string;
  /** One SSH user cert (OpenSSH text line) per proxy scope. */
  sshCertificates: { scope: ProxyScope; certificate: string }[];
  /** SSH server CA public keys (OpenSSH text), per scope. */
  sshHostCaKeys: { scope: ProxyScope; key: string }[];
  gatewayClientCaCerts: string[];
  proxies: ProxyRecord[];
  revocationFeedKey: string;
  /** ISO time the earliest certificate ends. */
  notAfter: string;
}

export class GatewayStore extends EnrolledStore {
  /** Opens (migrating, and sealing the keys of an older state directory) with the sealing key beside it. */
  static open(path: string, secrets = StateSecrets.beside(path, 'gateway')): GatewayStore {
    return new GatewayStore(openDatabase({ path, migrations: GATEWAY_MIGRATIONS }), secrets);
  }

  /** Replaces the enrollment (first enrollment or renewal) in one transaction. */
  saveEnrollment(s: GatewayState, now = new Date()): void {
    const db = this.db;
    const own = { org_id: s.orgId, gateway_id: s.gatewayId, gateway_uri: s.gatewayUri };
    this.replaceEnrollment(s, own, now, () => {
      for (const t of ['ssh_certificates', 'ssh_host_cas', 'gateway_client_cas', 'proxies'])
        db.prepare(`DELETE FROM ${t}`).run();
      const cert = db.prepare('INSERT INTO ssh_certificates (scope, certificate) VALUES (?, ?)');
      for (const c of s.sshCertificates) cert.run(c.scope, c.certificate);
      const hostCa = db.prepare('INSERT OR IGNORE INTO ssh_host_cas (scope, key) VALUES (?, ?)');
      for (const k of s.sshHostCaKeys) hostCa.run(k.scope, k.key);
      const clientCa = db.prepare('INSERT OR IGNORE INTO gateway_client_cas (pem) VALUES (?)');
      for (const pem of s.gatewayClientCaCerts) clientCa.run(pem);
      const proxy = db.prepare(
        'INSERT INTO proxies (proxy_id, scope, hostname, ssh_address, tls_address) VALUES (?, ?, ?, ?, ?)',
      );
      for (const p of s.proxies) proxy.run(p.proxyId, p.scope, p.hostname, p.sshAddress, p.tlsAddress);
    });
  }

  /** The stored enrollment; E_CONFIG_INVALID (with the fix) when the gateway was never enrolled. */
  load(): GatewayState {
    const row = this.enrollmentRow<Record<string, string>>('gateway');
    const all = <T>(sql: string) => this.db.prepare(sql).all() as T[];
    return {
      ...this.sharedEnrollment(row),
      orgId: row['org_id']!,
      gatewayId: row['gateway_id']!,
      gatewayUri: row['gateway_uri']!,
      sshCertificates: all<{ scope: ProxyScope; certificate: string }>(
        'SELECT scope, certificate FROM ssh_certificates ORDER BY scope',
      ),
      sshHostCaKeys: all<{ scope: ProxyScope; key: string }>('SELECT scope, key FROM ssh_host_cas ORDER BY scope, key'),
      gatewayClientCaCerts: all<{ pem: string }>('SELECT pem FROM gateway_client_cas ORDER BY pem').map((r) => r.pem),
      proxies: all<ProxyRecord>(
        `SELECT proxy_id AS proxyId, scope, hostname, ssh_address AS sshAddress, tls_address AS tlsAddress
           FROM proxies ORDER BY proxy_id`,
      ),
    };
  }

  /** Replaces the proxy list (the CA's feed carries a new one); the rest of the enrollment stays. */
  saveProxies(proxies: readonly ProxyRecord[]): void {
    const db = this.db;
    db.transaction(() => {
      db.prepare('DELETE FROM proxies').run();
      const proxy = db.prepare(
        'INSERT INTO proxies (proxy_id, scope, hostname, ssh_address, tls_address) VALUES (?, ?, ?, ?, ?)',
      );
      for (const p of proxies) proxy.run(p.proxyId, p.scope, p.hostname, p.sshAddress, p.tlsAddress);
    })();
  }

  /**
   * The audit sink: one row per record (createAudit's `sink`), committed without an fsync of its own. Every
   * stream leaves a record when it ends, written on the event loop that sets up the next streams; under the
   * database's synchronous=FULL each one cost an fsync, about 5 ms here (p99 over 20 ms), which every stream
   * set up meanwhile waited for (docs/performance.md, "New-stream setup"). In WAL mode a row committed with
   * NORMAL survives a crash of the daemon at once, and a power loss from the next FULL commit or checkpoint on;
   * the same record is also in the JSON log.
   */
  appendAudit(record: AuditRecord): void {
    const db = this.db;
    this.#insertAudit ??= db.prepare('INSERT INTO audit (time, event, fields) VALUES (?, ?, ?)');
    if (db.inTransaction) {
      this.#insertAudit.run(record.time, record.event, JSON.stringify(record.fields)); // the enclosing transaction decides how it is committed
      return;
    }
    db.pragma('synchronous = NORMAL');
    try {
      this.#insertAudit.run(record.time, record.event, JSON.stringify(record.fields));
    } finally {
      db.pragma('synchronous = FULL');
    }
  }

  #insertAudit: Database.Statement | undefined;

  audit(sinceId = 0, limit = 1000): { id: number; time: string; event: string; fields: Record<string, unknown> }[] {
    const rows = this.db
      .prepare('SELECT id, time, event, fields FROM audit WHERE id > ? ORDER BY id LIMIT ?')
      .all(sinceId, limit) as { id: number; time: string; event: string; fields: string }[];
    return rows.map((r) => ({ ...r, fields: JSON.parse(r.fields) as Record<string, unknown> }));
  }
}
