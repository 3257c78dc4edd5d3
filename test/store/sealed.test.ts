import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { chmodSync, existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { GatewayError } from '../../lib/errors/codes.js';
import { openDatabase } from '../../lib/store/db.js';
import { loadSealingKey, Sealer, SealingKey, sealedKeyId } from '../../lib/store/sealed.js';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'sealed-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const code = (expected: string) => (err: unknown) => err instanceof GatewayError && err.code === expected;
const key = () => new SealingKey(randomBytes(32), 'test');

test('round trip, for bytes and text; every seal uses a fresh nonce', () => {
  const sealer = new Sealer(key());
  const secret = randomBytes(200);
  const a = sealer.seal(secret, 'gateway:tls-key');
  const b = sealer.seal(secret, 'gateway:tls-key');
  assert.notDeepEqual(a, b);
  assert.deepEqual(sealer.open(a, 'gateway:tls-key'), secret);
  assert.equal(sealer.openText(sealer.seal('tøken', 'ca:admin'), 'ca:admin'), 'tøken');
  assert.equal(sealer.openText(sealer.seal('', 'empty'), 'empty'), '');
  assert.equal(a.length, 1 + 8 + 12 + 200 + 16);
  assert.deepEqual(sealedKeyId(a), sealer.current.id);
});

test('any altered byte, truncation or another context is refused with a stable code', () => {
  const sealer = new Sealer(key());
  const sealed = sealer.seal('private key material', 'ctx');
  for (let i = 0; i < sealed.length; i++) {
    const tampered = Buffer.from(sealed);
    tampered[i]! ^= 0x01;
    // byte 0 is the version, bytes 1-8 name the key; everything else is authenticated by GCM
    const expected = i === 0 ? 'E_SEALED_MALFORMED' : i <= 8 ? 'E_SEALED_KEY' : 'E_SEALED_TAMPERED';
    assert.throws(() => sealer.open(tampered, 'ctx'), code(expected), `byte ${i}`);
  }
  assert.throws(() => sealer.open(sealed.subarray(0, sealed.length - 1), 'ctx'), code('E_SEALED_TAMPERED'));
  assert.throws(() => sealer.open(sealed.subarray(0, 20), 'ctx'), code('E_SEALED_MALFORMED'));
  assert.throws(() => sealer.open(sealed, 'other-ctx'), code('E_SEALED_TAMPERED'));
});

test('rotation: previous keys still open, values report that they need resealing, unknown keys are refused', () => {
  const old = key();
  const oldSealed = new Sealer(old).seal('s', 'c');
  const rotated = new Sealer(key(), [old]);
  assert.equal(rotated.openText(oldSealed, 'c'), 's');
  assert.equal(rotated.needsReseal(oldSealed), true);
  assert.equal(rotated.needsReseal(rotated.seal('s', 'c')), false);
  assert.throws(() => new Sealer(key()).open(oldSealed, 'c'), code('E_SEALED_KEY'));
});

test('key file: created 0600 with 32 random bytes, then reused', (t) => {
  const dir = join(tempDir(t), 'state');
  const keyFile = join(dir, 'sealing.key');
  const first = loadSealingKey({ keyFile, env: {} });
  assert.equal(statSync(keyFile).mode & 0o777, 0o600);
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  assert.equal(readFileSync(keyFile).length, 32);
  const second = loadSealingKey({ keyFile, env: {} });
  assert.deepEqual(second.id, first.id);
  assert.equal(second.source, `file ${keyFile}`);
  assert.throws(
    () => loadSealingKey({ keyFile: join(dir, 'absent.key'), env: {}, create: false }),
    code('E_SEALED_KEY'),
  );
  assert.ok(!existsSync(join(dir, 'absent.key')));
});

test('key file with loose permissions or the wrong size is refused with a clear message', (t) => {
  const dir = tempDir(t);
  const loose = join(dir, 'loose.key');
  writeFileSync(loose, randomBytes(32));
  chmodSync(loose, 0o644);
  assert.throws(
    () => loadSealingKey({ keyFile: loose, env: {} }),
    (err: unknown) =>
      code('E_SECRET_FILE_MODE')(err) &&
      String(err).includes(`${loose} has mode 0644`) &&
      /chmod 600 /.test(String(err)),
  );
  const short = join(dir, 'short.key');
  writeFileSync(short, randomBytes(16), { mode: 0o600 });
  assert.throws(
    () => loadSealingKey({ keyFile: short, env: {} }),
    (err: unknown) => code('E_SEALED_KEY')(err) && /got 16 bytes/.test(String(err)),
  );
});

test('a systemd credential is preferred, as raw, hex or base64', (t) => {
  const dir = tempDir(t);
  const creds = join(dir, 'creds');
  mkdirSync(creds);
  const material = randomBytes(32);
  const keyFile = join(dir, 'sealing.key');
  const expected = new SealingKey(material, 'x').id;
  for (const encoded of [
    material,
    Buffer.from(`${material.toString('hex')}\n`),
    Buffer.from(material.toString('base64')),
  ]) {
    writeFileSync(join(creds, 'gw-key'), encoded);
    const loaded = loadSealingKey({ keyFile, credentialName: 'gw-key', env: { CREDENTIALS_DIRECTORY: creds } });
    assert.deepEqual(loaded.id, expected);
    assert.match(loaded.source, /^credential /);
  }
  assert.ok(!existsSync(keyFile), 'no key file is created when a credential is used');
  writeFileSync(join(creds, 'gw-key'), 'not a key');
  assert.throws(
    () => loadSealingKey({ keyFile, credentialName: 'gw-key', env: { CREDENTIALS_DIRECTORY: creds } }),
    code('E_SEALED_KEY'),
  );
});

test('the database file never holds a sealed secret in clear', (t) => {
  const dir = tempDir(t);
  const sealer = new Sealer(loadSealingKey({ keyFile: join(dir, 'sealing.key'), env: {} }));
  const secret = `-----BEGIN PRIVATE KEY-----${randomBytes(24).toString('hex')}`;
  const control = `control-${randomBytes(24).toString('hex')}`;
  const path = join(dir, 'gw.db');
  const db = openDatabase({
    path,
    migrations: [
      { version: 1, name: 'secrets', sql: 'CREATE TABLE secrets (name TEXT PRIMARY KEY, value BLOB NOT NULL)' },
    ],
  });
  const insert = db.prepare('INSERT INTO secrets VALUES (?, ?)');
  insert.run('tls-key', sealer.seal(secret, 'secrets:tls-key'));
  insert.run('control', Buffer.from(control)); // unsealed: proves the scan below can see plaintext
  const bytesOnDisk = () =>
    Buffer.concat([path, `${path}-wal`].filter(existsSync).map((file) => readFileSync(file))).toString('latin1');
  const beforeCheckpoint = bytesOnDisk();
  assert.ok(beforeCheckpoint.includes(control));
  assert.ok(!beforeCheckpoint.includes(secret));
  db.close(); // checkpoints the WAL into the main file
  const afterClose = bytesOnDisk();
  assert.ok(afterClose.includes(control));
  assert.ok(!afterClose.includes(secret));
  const reopened = openDatabase({ path, migrations: [{ version: 1, name: 'secrets', sql: 'SELECT 1' }] });
  const row = reopened.prepare('SELECT value FROM secrets WHERE name = ?').get('tls-key') as { value: Buffer };
  assert.equal(sealer.openText(row.value, 'secrets:tls-key'), secret);
  reopened.close();
});
