/**
 * Private keys of an enrolled component are sealed at rest: the database file holds no key, a database copied
 * without its sealing key opens to nothing, an older (plain) state directory is sealed in place on first open,
 * and a tampered sealed value is refused with its code.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import Database from 'better-sqlite3';
import { GatewayStore } from '../../lib/gateway/state.js';
import { ProxyStore } from '../../lib/proxy/state.js';
import { gatewayState } from '../gateway/deploy.js';
import { World } from '../helpers/world.js';
import { proxyState } from './fixtures.js';

const dir = mkdtempSync(join(tmpdir(), 'enrolled-secrets-'));
after(() => rmSync(dir, { recursive: true, force: true }));

const world = new World();
const state = gatewayState(world, [{ proxyId: 'p1', sshPort: 2222, tlsPort: 8443 } as never]);

function rawKeys(path: string): { tls: string; ssh: string } {
  const db = new Database(path, { readonly: true });
  try {
    const row = db.prepare('SELECT tls_key_pem AS tls, ssh_private_key AS ssh FROM enrollment').get() as {
      tls: string;
      ssh: string;
    };
    return row;
  } finally {
    db.close();
  }
}

/** Neither key (nor any PEM / OpenSSH key block) is readable in the database file or its WAL. */
function assertNoPlainKey(path: string): void {
  for (const file of [path, `${path}-wal`]) {
    let bytes = '';
    try {
      bytes = readFileSync(file, 'latin1');
    } catch {
      continue; // no WAL: nothing to read
    }
    assert.doesNotMatch(bytes, /PRIVATE KEY/, file);
  }
}

it('seals both private keys in the database under a 0600 sealing.key beside it', () => {
  const path = join(dir, 'a', 'gateway.db');
  const store = GatewayStore.open(path);
  store.saveEnrollment(state);
  store.close();
  const raw = rawKeys(path);
  assert.match(raw.tls, /^sealed:v1:/);
  assert.match(raw.ssh, /^sealed:v1:/);
  // Neither key (nor any PEM / OpenSSH key block) is readable in the database file or its WAL.
  assertNoPlainKey(path);
  assert.equal(statSync(join(dir, 'a', 'sealing.key')).mode & 0o777, 0o600);
  const again = GatewayStore.open(path);
  assert.equal(again.load().tlsKeyPem, state.tlsKeyPem);
  assert.equal(again.load().sshPrivateKey, state.sshPrivateKey);
  again.close();
});

it('a database copied without its sealing key opens to E_SEALED_KEY, not to a key', () => {
  const from = join(dir, 'b', 'gateway.db');
  const store = GatewayStore.open(from);
  store.saveEnrollment(state);
  store.db.pragma('wal_checkpoint(TRUNCATE)');
  store.close();
  mkdirSync(join(dir, 'stolen'), { mode: 0o700 });
  copyFileSync(from, join(dir, 'stolen', 'gateway.db'));
  const stolen = GatewayStore.open(join(dir, 'stolen', 'gateway.db'));
  assert.throws(
    () => stolen.load(),
    (err: Error & { code?: string }) => err.code === 'E_SEALED_KEY',
  );
  stolen.close();
});

it('an older state directory (plain keys) is sealed in place on its first open', () => {
  const path = join(dir, 'c', 'gateway.db');
  const store = GatewayStore.open(path);
  store.saveEnrollment(state);
  // Put the keys back in the clear, as a state directory written before sealing holds them.
  store.db
    .prepare('UPDATE enrollment SET tls_key_pem = ?, ssh_private_key = ?')
    .run(state.tlsKeyPem, state.sshPrivateKey);
  store.close();
  assert.match(rawKeys(path).tls, /PRIVATE KEY/);
  const migrated = GatewayStore.open(path);
  assert.equal(migrated.load().tlsKeyPem, state.tlsKeyPem);
  migrated.close();
  const raw = rawKeys(path);
  assert.match(raw.tls, /^sealed:v1:/);
  assert.match(raw.ssh, /^sealed:v1:/);
  // Not in freed pages or the WAL either: a copy of the migrated database holds no key.
  assertNoPlainKey(path);
});

it('a sealed key moved to the other column, or altered, is refused E_SEALED_TAMPERED', () => {
  const path = join(dir, 'd', 'gateway.db');
  const store = GatewayStore.open(path);
  store.saveEnrollment(state);
  const raw = store.db.prepare('SELECT tls_key_pem, ssh_private_key FROM enrollment').get() as Record<string, string>;
  store.db.prepare('UPDATE enrollment SET tls_key_pem = ?').run(raw['ssh_private_key']);
  assert.throws(
    () => store.load(),
    (err: Error & { code?: string }) => err.code === 'E_SEALED_TAMPERED',
  );
  store.close();
});

it('the proxy store seals the same way (one implementation)', () => {
  const path = join(dir, 'e', 'proxy.db');
  const store = ProxyStore.open(path);
  const s = proxyState(world);
  store.saveEnrollment(s);
  store.close();
  assert.match(rawKeys(path).tls, /^sealed:v1:/);
  const again = ProxyStore.open(path);
  assert.equal(again.load().tlsKeyPem, s.tlsKeyPem);
  again.close();
});

it('a learned CA API root is stored beside the pin, once, and survives a renewal written from the stored state', () => {
  const path = join(dir, 'f', 'gateway.db');
  const store = GatewayStore.open(path);
  store.saveEnrollment(state);
  store.addCaPin('ab'.repeat(32));
  store.addCaPin('ab'.repeat(32));
  const pins = store.load().caFingerprint.split(',');
  assert.deepEqual(pins, [state.caFingerprint, 'ab'.repeat(32)]);
  store.saveEnrollment({ ...store.load(), notAfter: new Date().toISOString() });
  assert.deepEqual(store.load().caFingerprint.split(','), pins);
  store.close();
});

it('CA API fingerprints from the config are added to the stored pins (never replacing them), normalized', () => {
  const path = join(dir, 'g', 'gateway.db');
  const store = GatewayStore.open(path);
  store.saveEnrollment(state);
  const fp = 'CD'.repeat(32);
  assert.deepEqual(store.applyConfiguredPins(`sha256:${fp}`), [fp.toLowerCase()]);
  assert.deepEqual(store.applyConfiguredPins(fp.toLowerCase()), [], 'already trusted');
  assert.deepEqual(store.applyConfiguredPins(undefined), []);
  assert.deepEqual(store.load().caFingerprint.split(','), [state.caFingerprint, fp.toLowerCase()]);
  assert.throws(() => store.applyConfiguredPins('not-a-fingerprint'), /64 hex digits/);
  store.close();
});
