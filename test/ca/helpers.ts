/** Test helpers for the CA: an in-memory Authority on a stepping clock, and client-side keys and CSRs. */
import { execFileSync } from 'node:child_process';
import { generateKeyPairSync, type KeyObject, randomBytes } from 'node:crypto';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Authority, type AuthorityOptions, type Caller } from '../../lib/ca/authority.js';
import { unwrap } from '../../lib/errors/codes.js';
import { createCsrPem } from '../../lib/pki/csr.js';
import { generateKeyPairSync as x509Pair } from '../../lib/pki/keys.js';
import { formatPublicKey, publicKeyBlob } from '../../lib/sshcert/index.js';
import { CA_TEST_POSTGRES, freshDatabase } from '../helpers/postgres.js';

export const CHEAP_SCRYPT = { N: 2 ** 10, r: 8, p: 1 };
export const TD = 'example.test';

export class Clock {
  ms: number;
  constructor(start = Date.UTC(2030, 0, 1)) {
    this.ms = start;
  }
  now = (): Date => new Date(this.ms);
  advance(sec: number): void {
    this.ms += sec * 1000;
  }
}

export interface Fixture {
  ca: Authority;
  clock: Clock;
  admin: Caller;
  adminClientId: string;
  adminClientSecret: string;
}

/**
 * Where a test Authority keeps its store: in memory (SQLite), or, when test/ca/postgres-engine.test.ts runs this
 * suite again with INFISICAL_TEST_CA_POSTGRES set, a new empty database on that PostgreSQL server.
 */
export function testStore(): string {
  const server = process.env[CA_TEST_POSTGRES];
  return server ? freshDatabase(server) : ':memory:';
}

/**
 * A store two Authorities can open at once (two CA replicas): a SQLite file in a temporary directory, or a new
 * database on the suite's PostgreSQL server.
 */
export function sharedStore(): { location: string; cleanup: () => void } {
  const server = process.env[CA_TEST_POSTGRES];
  if (server) return { location: freshDatabase(server), cleanup: () => {} };
  const dir = mkdtempSync(join(tmpdir(), 'ca-shared-'));
  return { location: join(dir, 'ca.db'), cleanup: () => rmSync(dir, { recursive: true, force: true }) };
}

/** A second CA replica of `f` on the same store and clock (`f` made with `db: location, sealKey`). */
export function replicaOf(f: Fixture, location: string, sealKey: Buffer): Authority {
  return Authority.open({ db: location, sealKey, trustDomain: TD, now: f.clock.now, limits: { scrypt: CHEAP_SCRYPT } });
}

export async function newAuthority(options: Partial<AuthorityOptions> = {}): Promise<Fixture> {
  const clock = new Clock();
  const ca = Authority.open({
    db: testStore(),
    sealKey: randomBytes(32),
    trustDomain: TD,
    now: clock.now,
    limits: { scrypt: CHEAP_SCRYPT },
    ...options,
  });
  const init = unwrap(await ca.init());
  const admin = unwrap(await ca.callerFor(init.adminClientId, init.adminClientSecret));
  return { ca, clock, admin, adminClientId: init.adminClientId, adminClientSecret: init.adminClientSecret };
}

/** An org with an org-admin and a member; returns their callers and credentials. */
export async function newOrg(f: Fixture, orgId: string) {
  unwrap(f.ca.createOrg(f.admin, orgId));
  const adminCreds = unwrap(await f.ca.createIdentity(f.admin, orgId, { identityId: 'boss', role: 'org-admin' }));
  const memberCreds = unwrap(
    await f.ca.createIdentity(f.admin, orgId, { identityId: 'alice', role: 'member', groups: ['dba'] }),
  );
  const orgAdmin = unwrap(await f.ca.callerFor(adminCreds.clientId, adminCreds.clientSecret));
  const member = unwrap(await f.ca.callerFor(memberCreds.clientId, memberCreds.clientSecret));
  return { orgAdmin, member, adminCreds, memberCreds };
}

export interface ClientKeys {
  tlsKey: KeyObject;
  csr: string;
  sshKey: KeyObject;
  sshPublicKey: string;
}

export function clientKeys(alg: 'ecdsa-p256' | 'rsa-2048' = 'ecdsa-p256'): ClientKeys {
  const tls = x509Pair(alg);
  const ssh = generateKeyPairSync('ed25519');
  return {
    tlsKey: tls.privateKey,
    csr: createCsrPem({ privateKey: tls.privateKey, commonName: 'ignored' }),
    sshKey: ssh.privateKey,
    sshPublicKey: formatPublicKey(publicKeyBlob(ssh.publicKey), 'test'),
  };
}

export function csrFor(alg: 'ecdsa-p256' | 'rsa-2048' = 'ecdsa-p256'): { key: KeyObject; csr: string } {
  const k = x509Pair(alg);
  return { key: k.privateKey, csr: createCsrPem({ privateKey: k.privateKey }) };
}

export class TempDir {
  readonly path = mkdtempSync(join(tmpdir(), 'ca-test-'));
  file(name: string): string {
    return join(this.path, name);
  }
  write(name: string, data: string | Buffer): string {
    const p = this.file(name);
    writeFileSync(p, data, { mode: 0o600 });
    return p;
  }
  remove(): void {
    rmSync(this.path, { recursive: true, force: true });
  }
}

/** Runs openssl; returns stdout+stderr, throwing with both on failure. */
export function openssl(args: string[]): string {
  return execFileSync('openssl', args, { encoding: 'utf8', stdio: ['ignore', 'pipe', 'pipe'] });
}

export function sshKeygen(args: string[]): string {
  return execFileSync('ssh-keygen', args, { encoding: 'utf8', env: { ...process.env, TZ: 'UTC' }, stdio: 'pipe' });
}

/** Splits a PEM bundle into its certificates. */
export function pemCerts(bundle: string): string[] {
  return bundle.match(/-----BEGIN CERTIFICATE-----[\s\S]*?-----END CERTIFICATE-----\n?/g) ?? [];
}
