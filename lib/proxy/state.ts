/**
 * The proxy's state database (<state dir>/proxy.db, 0600 in a 0700 directory, lib/store): the enrollment
 * (keys made here, certificates, trust lists, listen and advertised addresses), the revocations seen and the
 * feed position. `serve` needs nothing else. An enrollment or renewal replaces the whole row set in one
 * transaction, so a reload never sees half of a renewal.
 */
import { StateSecrets } from '../enrolled/secrets.js';
import { EnrolledStore, enrollmentTableSql, revocationsTableSql } from '../enrolled/store.js';
import { GatewayError } from '../errors/codes.js';
import { parsePublicKey } from '../sshcert/index.js';
import { type Migration, openDatabase } from '../store/db.js';
import type { ProxyCredentials } from './proxy.js';

export const PROXY_MIGRATIONS: readonly Migration[] = [
  {
    version: 1,
    name: 'enrollment, trust, revocations, feed',
    sql: `
      ${enrollmentTableSql(
        [
          'proxy_uri TEXT NOT NULL',
          'proxy_id TEXT NOT NULL',
          "scope TEXT NOT NULL CHECK (scope IN ('instance', 'org'))",
          'org_id TEXT',
          'hostnames TEXT NOT NULL',
          'ssh_listen TEXT NOT NULL',
          'tls_listen TEXT NOT NULL',
          'ssh_address TEXT NOT NULL',
          'tls_address TEXT NOT NULL',
        ],
        ['ssh_host_certificate TEXT NOT NULL'],
      )}
      CREATE TABLE ssh_user_cas (key TEXT PRIMARY KEY);
      CREATE TABLE pki_client_cas (pem TEXT PRIMARY KEY);
      ${revocationsTableSql('revocations')}
      CREATE TABLE feed (id INTEGER PRIMARY KEY CHECK (id = 1), seq INTEGER NOT NULL);
    `,
  },
  {
    version: 2,
    // The CA rotation version this proxy applied (lib/enrolled/store.ts rotationVersion).
    name: 'rotation version',
    sql: 'ALTER TABLE feed ADD COLUMN rotation TEXT;',
  },
  {
    version: 3,
    // Why the CA refused this proxy for good after a rotation (lib/enrolled/store.ts rotationMissed).
    name: 'rotation missed',
    sql: 'ALTER TABLE feed ADD COLUMN rotation_missed TEXT;',
  },
];

/** Everything `serve` needs, as enrollment or renewal left it. */
export interface ProxyState {
  /** The CA rotation version of this enrollment or renewal (kept in the feed table, not loaded back). */
  rotation?: string;
  proxyUri: string;
  proxyId: string;
  scope: 'instance' | 'org';
  orgId: string | null;
  hostnames: string[];
  sshListen: string;
  tlsListen: string;
  sshAddress: string;
  tlsAddress: string;
  caUrl: string;
  caFingerprint: string;
  /** PKCS#8 PEM of the TLS server key. */
  tlsKeyPem: string;
  /** PEM chain of the TLS server cert, leaf first. */
  tlsChainPem: string;
  /** OpenSSH private key text of the SSH host key. */
  sshPrivateKey: string;
  /** OpenSSH text line of the SSH host certificate. */
  sshHostCertificate: string;
  /** SSH client CA public keys (OpenSSH text) whose gateway certs are accepted. */
  sshUserCaKeys: string[];
  /** PEM of the proxy PKI client CAs whose platform certs are accepted. */
  pkiClientCaCerts: string[];
  revocationFeedKey: string;
  /** ISO time the earliest certificate ends. */
  notAfter: string;
}

/** The running proxy's credentials from the stored state (pure). */
export function credentialsOf(s: ProxyState): ProxyCredentials {
  return {
    proxyUri: s.proxyUri,
    tlsKey: s.tlsKeyPem,
    tlsChain: s.tlsChainPem,
    sshHostKey: s.sshPrivateKey,
    sshHostCertificate: s.sshHostCertificate,
    sshUserCaKeys: s.sshUserCaKeys.map((line) => {
      const parsed = parsePublicKey(line);
      if (!parsed.ok) throw new GatewayError('E_CONFIG_INVALID', `stored SSH client CA key: ${parsed.reason}`);
      return parsed.value;
    }),
    pkiClientCaPems: s.pkiClientCaCerts,
  };
}

export class ProxyStore extends EnrolledStore {
  /** Opens (migrating, and sealing the keys of an older state directory) with the sealing key beside it. */
  static open(path: string, secrets = StateSecrets.beside(path, 'proxy')): ProxyStore {
    return new ProxyStore(openDatabase({ path, migrations: PROXY_MIGRATIONS }), secrets);
  }

  /** Replaces the enrollment (first enrollment or renewal) in one transaction. */
  saveEnrollment(s: ProxyState, now = new Date()): void {
    const db = this.db;
    const own = {
      proxy_uri: s.proxyUri,
      proxy_id: s.proxyId,
      scope: s.scope,
      org_id: s.orgId,
      hostnames: JSON.stringify(s.hostnames),
      ssh_listen: s.sshListen,
      tls_listen: s.tlsListen,
      ssh_address: s.sshAddress,
      tls_address: s.tlsAddress,
      ssh_host_certificate: s.sshHostCertificate,
    };
    this.replaceEnrollment(s, own, now, () => {
      db.prepare('DELETE FROM ssh_user_cas').run();
      db.prepare('DELETE FROM pki_client_cas').run();
      const ssh = db.prepare('INSERT OR IGNORE INTO ssh_user_cas (key) VALUES (?)');
      for (const k of s.sshUserCaKeys) ssh.run(k);
      const pki = db.prepare('INSERT OR IGNORE INTO pki_client_cas (pem) VALUES (?)');
      for (const pem of s.pkiClientCaCerts) pki.run(pem);
    });
  }

  /** The stored enrollment; E_CONFIG_INVALID (with the fix) when the proxy was never enrolled. */
  load(): ProxyState {
    const row = this.enrollmentRow<Record<string, string | null>>('proxy');
    const text = (k: string): string => String(row[k] ?? '');
    return {
      ...this.sharedEnrollment(row),
      proxyUri: text('proxy_uri'),
      proxyId: text('proxy_id'),
      scope: text('scope') as 'instance' | 'org',
      orgId: row['org_id'] ?? null,
      hostnames: JSON.parse(text('hostnames')) as string[],
      sshListen: text('ssh_listen'),
      tlsListen: text('tls_listen'),
      sshAddress: text('ssh_address'),
      tlsAddress: text('tls_address'),
      sshHostCertificate: text('ssh_host_certificate'),
      sshUserCaKeys: (this.db.prepare('SELECT key FROM ssh_user_cas ORDER BY key').all() as { key: string }[]).map(
        (r) => r.key,
      ),
      pkiClientCaCerts: (this.db.prepare('SELECT pem FROM pki_client_cas ORDER BY pem').all() as { pem: string }[]).map(
        (r) => r.pem,
      ),
    };
  }
}
