/** The CA's storage: migrations, keys sealed at rest, secrets hashed, random serials, rate limiter. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { Authority } from '../../lib/ca/authority.js';
import { DEFAULT_SCRYPT, hashSecret, randomToken, tokenHash, verifySecret } from '../../lib/ca/secrets.js';
import { CaStore } from '../../lib/ca/store.js';
import { MIGRATIONS } from '../../lib/ca/store-schema.js';
import { GatewayError, unwrap } from '../../lib/errors/codes.js';
import { CHEAP_SCRYPT, Clock, clientKeys, csrFor, newAuthority, newOrg, TD, TempDir } from './helpers.js';

const dir = new TempDir();
after(() => dir.remove());

const code = (c: string) => (err: unknown) => err instanceof GatewayError && err.code === c;

function fileBytes(path: string): Buffer {
  const parts = [readFileSync(path)];
  try {
    parts.push(readFileSync(`${path}-wal`));
  } catch {
    // no WAL file
  }
  return Buffer.concat(parts);
}

test('migrations: a fresh file database is WAL, at the latest version; reopening is a no-op; newer is refused', () => {
  const path = join(dir.path, 'm', 'ca.db');
  const store = CaStore.open(path);
  assert.equal(store.schemaVersion(), MIGRATIONS.length);
  assert.equal(store.sqlite?.pragma('journal_mode', { simple: true }), 'wal');
  assert.equal(store.sqlite?.pragma('synchronous', { simple: true }), 2, 'FULL');
  const tables = (
    store.sql.prepare("SELECT name FROM sqlite_schema WHERE type = 'table'").all() as { name: string }[]
  ).map((t) => t.name);
  for (const t of [
    'authorities',
    'orgs',
    'identities',
    'access_tokens',
    'enrollment_tokens',
    'policies',
    'gateways',
    'proxies',
    'certificates',
    'grants',
    'revocations',
    'audit',
  ]) {
    assert.ok(tables.includes(t), t);
  }
  store.close();
  const again = CaStore.open(path);
  assert.equal(again.schemaVersion(), MIGRATIONS.length);
  again.close();
  const raw = new Database(path);
  raw.pragma('user_version = 99');
  raw.close();
  assert.throws(() => CaStore.open(path), code('E_STORE_VERSION'));
});

test('CA private keys, client secrets and tokens never reach the database file in the clear', async () => {
  const path = join(dir.path, 'sealed', 'ca.db');
  const clock = new Clock();
  const ca = Authority.open({
    db: path,
    sealKey: randomBytes(32),
    trustDomain: TD,
    now: clock.now,
    limits: { scrypt: CHEAP_SCRYPT },
  });
  const init = unwrap(await ca.init());
  const admin = unwrap(await ca.callerFor(init.adminClientId, init.adminClientSecret));
  unwrap(ca.createOrg(admin, 'acme'));
  const secrets: Buffer[] = [Buffer.from(init.adminClientSecret), Buffer.from(admin.accessToken)];
  const k = ca.ctx.keyring;
  for (const org of [null, 'acme']) {
    secrets.push(k.x509(org, 'proxy-pki-client').privateKey.export({ type: 'pkcs8', format: 'der' }));
    // the Ed25519 seed is the last 32 bytes of its PKCS#8 DER (no JWK export: it can deadlock Node 20, see lib/sshcert/der.ts)
    const ssh = k.ssh(org, 'proxy-ssh-client').privateKey.export({ type: 'pkcs8', format: 'der' });
    secrets.push(ssh.subarray(ssh.length - 32));
  }
  const bytes = fileBytes(path);
  for (const s of secrets) assert.equal(bytes.indexOf(s), -1, 'secret found in the database file');
  const row = ca.store.orgs.identityByClientId(init.adminClientId)!;
  assert.match(row.secretHash, /^scrypt\$1024\$8\$1\$/);
  assert.ok(ca.store.orgs.accessToken(tokenHash(admin.accessToken)));
  ca.close();
});

test('sealed keys: wrong sealing key, tampered or swapped sealed values are refused', async () => {
  const path = join(dir.path, 'tamper', 'ca.db');
  const key = randomBytes(32);
  const ca = Authority.open({ db: path, sealKey: key, trustDomain: TD, limits: { scrypt: CHEAP_SCRYPT } });
  unwrap(await ca.init());
  ca.close();
  const wrong = Authority.open({ db: path, sealKey: randomBytes(32), trustDomain: TD });
  assert.throws(() => wrong.ctx.keyring.x509(null, 'proxy-pki-client'), code('E_SEALED_KEY'));
  wrong.close();

  const db = new Database(path);
  const a = db.prepare("SELECT sealed_key FROM authorities WHERE id = 'instance:proxy-pki-client'").get() as {
    sealed_key: Buffer;
  };
  const b = db.prepare("SELECT sealed_key FROM authorities WHERE id = 'instance:proxy-pki-server'").get() as {
    sealed_key: Buffer;
  };
  db.prepare("UPDATE authorities SET sealed_key = ? WHERE id = 'instance:proxy-pki-client'").run(b.sealed_key);
  const flipped = Buffer.from(a.sealed_key);
  flipped[flipped.length - 20]! ^= 1;
  db.prepare("UPDATE authorities SET sealed_key = ? WHERE id = 'instance:proxy-pki-server'").run(flipped);
  db.close();
  const reopened = Authority.open({ db: path, sealKey: key, trustDomain: TD });
  assert.throws(
    () => reopened.ctx.keyring.x509(null, 'proxy-pki-client'),
    code('E_SEALED_TAMPERED'),
    'moved to another row',
  );
  assert.throws(() => reopened.ctx.keyring.x509(null, 'proxy-pki-server'), code('E_SEALED_TAMPERED'), 'a flipped bit');
  assert.ok(reopened.ctx.keyring.ssh(null, 'proxy-ssh-client'), 'untouched rows still open');
  reopened.close();
});

test('serials are random, at least 64 bits, unique; every issued cert is recorded', async () => {
  const f = await newAuthority();
  const acme = await newOrg(f, 'acme');
  const gk = clientKeys();
  unwrap(
    f.ca.enrollGateway(acme.orgAdmin, { orgId: 'acme', gatewayId: 'gw1', csr: gk.csr, sshPublicKey: gk.sshPublicKey }),
  );
  unwrap(
    f.ca.addPolicy(acme.orgAdmin, 'acme', {
      subject: 'identity:alice',
      gateways: ['*'],
      targets: ['*:*'],
      modes: ['tcp'],
    }),
  );
  for (let i = 0; i < 20; i++) {
    unwrap(
      f.ca.issueGrant(acme.member, {
        orgId: 'acme',
        gatewayId: 'gw1',
        target: { host: 'h', port: 1 },
        mode: 'tcp',
        outerCsr: csrFor().csr,
        innerCsr: csrFor().csr,
      }),
    );
  }
  const rows = f.ca.store.sql
    .prepare('SELECT serial, kind, subject_uri, not_after, requested_by FROM certificates')
    .all() as {
    serial: string;
    kind: string;
    requested_by: string;
  }[];
  assert.equal(rows.length, 3 + 20 * 3);
  assert.equal(new Set(rows.map((r) => r.serial)).size, rows.length);
  for (const r of rows) {
    assert.ok(r.serial.replace(/^0+/, '').length >= 12, `serial ${r.serial} has ≥ 48 significant bits`);
    assert.ok(r.serial.length >= 16, 'at least 64 bits wide');
    assert.ok(r.requested_by.length > 0);
  }
  assert.deepEqual([...new Set(rows.map((r) => r.kind))].sort(), [
    'gateway-ssh-instance',
    'gateway-ssh-org',
    'gateway-tls',
    'grant-inner',
    'grant-outer-instance',
    'grant-outer-org',
  ]);
});

test('secrets: scrypt hashes verify only the right secret; malformed hashes never match', async () => {
  const h = await hashSecret('correct horse', DEFAULT_SCRYPT);
  assert.ok(h.startsWith('scrypt$16384$8$1$'));
  assert.equal(await verifySecret('correct horse', h), true);
  assert.equal(await verifySecret('correct horsf', h), false);
  assert.notEqual(
    await hashSecret('correct horse', CHEAP_SCRYPT),
    await hashSecret('correct horse', CHEAP_SCRYPT),
    'salted',
  );
  for (const bad of ['', 'plain', 'scrypt$x$8$1$AA$AA', 'scrypt$1048577$8$1$AAAA$AAAA', h.slice(0, -4)]) {
    assert.equal(await verifySecret('correct horse', bad), false, bad);
  }
});

test('tokens and secrets never begin with "-" (they would be read as a flag on a command line)', () => {
  // One draw in 64 begins with '-': 5,000 draws miss it with probability (63/64)^5000 ≈ 1e-34 without the rule.
  for (let i = 0; i < 5000; i++) {
    const t = randomToken();
    assert.equal(t.length, 43);
    assert.ok(!t.startsWith('-'), t);
  }
});
