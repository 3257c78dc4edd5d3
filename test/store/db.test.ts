import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { chmodSync, mkdirSync, mkdtempSync, rmSync, statSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { GatewayError } from '../../lib/errors/codes.js';
import { checkMigrations, type Migration, openDatabase, schemaVersion, stateDirectory } from '../../lib/store/db.js';
import { crashMigrations } from './fixtures/crash-schema.js';

function tempDir(t: { after: (fn: () => void) => void }): string {
  const dir = mkdtempSync(join(tmpdir(), 'store-'));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  return dir;
}

const isStoreError = (code: string, pattern: RegExp) => (err: unknown) =>
  err instanceof GatewayError && err.code === code && pattern.test(err.message);

const m1: Migration = { version: 1, name: 'certs', sql: 'CREATE TABLE certs (id TEXT PRIMARY KEY, pem TEXT NOT NULL)' };
const m2: Migration = {
  version: 2,
  name: 'revocations',
  sql: 'CREATE TABLE revocations (cert_id TEXT NOT NULL REFERENCES certs(id), at TEXT NOT NULL)',
};

test('stateDirectory: override, then $STATE_DIRECTORY (ours among several), then /var/lib', () => {
  assert.equal(stateDirectory('proxy', { override: '/srv/p', env: { STATE_DIRECTORY: '/x' } }), '/srv/p');
  assert.equal(
    stateDirectory('proxy', { env: { STATE_DIRECTORY: '/var/lib/infisical-proxy' } }),
    '/var/lib/infisical-proxy',
  );
  assert.equal(
    stateDirectory('proxy', { env: { STATE_DIRECTORY: '/var/lib/other:/var/lib/infisical-proxy' } }),
    '/var/lib/infisical-proxy',
  );
  assert.equal(stateDirectory('proxy', { env: { STATE_DIRECTORY: '/var/lib/a:/var/lib/b' } }), '/var/lib/a');
  assert.equal(stateDirectory('gateway', { env: {} }), '/var/lib/infisical-gateway');
});

test('open: private files, WAL, FULL sync, foreign keys, busy timeout', (t) => {
  const dir = join(tempDir(t), 'infisical-proxy');
  const db = openDatabase({
    path: join(stateDirectory('proxy', { env: { STATE_DIRECTORY: dir } }), 'proxy.db'),
    migrations: [m1, m2],
  });
  t.after(() => db.close());
  db.prepare('INSERT INTO certs VALUES (?, ?)').run('a', 'pem');
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  assert.equal(statSync(join(dir, 'proxy.db')).mode & 0o777, 0o600);
  assert.equal(statSync(join(dir, 'proxy.db-wal')).mode & 0o777, 0o600);
  assert.equal(db.pragma('journal_mode', { simple: true }), 'wal');
  assert.equal(db.pragma('synchronous', { simple: true }), 2); // FULL
  assert.equal(db.pragma('foreign_keys', { simple: true }), 1);
  assert.equal(db.pragma('busy_timeout', { simple: true }), 5000);
  assert.throws(() => db.prepare('INSERT INTO revocations VALUES (?, ?)').run('missing', 'now'), /FOREIGN KEY/);
});

test('open tightens a loose directory and file to 0700/0600', (t) => {
  const dir = join(tempDir(t), 'state');
  mkdirSync(dir, { mode: 0o755 });
  chmodSync(dir, 0o755);
  writeFileSync(join(dir, 'x.db'), '');
  chmodSync(join(dir, 'x.db'), 0o644);
  openDatabase({ path: join(dir, 'x.db'), migrations: [m1] }).close();
  assert.equal(statSync(dir).mode & 0o777, 0o700);
  assert.equal(statSync(join(dir, 'x.db')).mode & 0o777, 0o600);
  assert.throws(
    () => openDatabase({ path: join(dir, 'x.db', 'nested.db'), migrations: [m1] }),
    isStoreError('E_STORE_PERMISSIONS', /x\.db/),
  );
});

test('migrations apply in order, once; later ones apply on the next open', (t) => {
  const path = join(tempDir(t), 'ca.db');
  const first = openDatabase({ path, migrations: [m1] });
  assert.equal(schemaVersion(first), 1);
  first.close();
  const again = openDatabase({ path, migrations: [m1] });
  assert.deepEqual(again.prepare('SELECT version, name FROM schema_migrations').all(), [{ version: 1, name: 'certs' }]);
  again.close();
  const upgraded = openDatabase({ path, migrations: [m1, m2] });
  t.after(() => upgraded.close());
  assert.equal(schemaVersion(upgraded), 2);
  assert.deepEqual(upgraded.prepare('SELECT version, name FROM schema_migrations ORDER BY version').all(), [
    { version: 1, name: 'certs' },
    { version: 2, name: 'revocations' },
  ]);
});

test('a failing migration rolls back entirely and leaves the previous version', (t) => {
  const path = join(tempDir(t), 'gw.db');
  openDatabase({ path, migrations: [m1] }).close();
  const broken: Migration = {
    version: 2,
    name: 'broken',
    sql: 'CREATE TABLE half (x); INSERT INTO nowhere VALUES (1);',
  };
  assert.throws(() => openDatabase({ path, migrations: [m1, broken] }), /no such table: nowhere/);
  const db = openDatabase({ path, migrations: [m1] });
  t.after(() => db.close());
  assert.equal(schemaVersion(db), 1);
  assert.equal(db.prepare("SELECT name FROM sqlite_schema WHERE name = 'half'").get(), undefined);
});

test('a database newer than the code, or with a different history, is refused untouched', (t) => {
  const path = join(tempDir(t), 'gw.db');
  openDatabase({ path, migrations: [m1, m2] }).close();
  assert.throws(
    () => openDatabase({ path, migrations: [m1] }),
    isStoreError('E_STORE_VERSION', /schema version 2, this build knows up to 1/),
  );
  const renamed = { ...m2, name: 'revocations v2' };
  assert.throws(
    () => openDatabase({ path, migrations: [m1, renamed] }),
    isStoreError('E_STORE_VERSION', /applied as "revocations", this build calls it "revocations v2"/),
  );
  const db = openDatabase({ path, migrations: [m1, m2] });
  assert.equal(schemaVersion(db), 2);
  db.close();
});

test('migration lists must be 1..n in order', () => {
  assert.throws(() => checkMigrations([m2]), /expected 1/);
  assert.throws(() => checkMigrations([m1, { ...m2, version: 3 }]), /expected 2/);
  assert.throws(() => checkMigrations([{ ...m1, sql: ' ' }]), /needs a name and sql/);
  assert.doesNotThrow(() => checkMigrations([m1, m2]));
});

test('crash: SIGKILL mid-write loses no acknowledged write and leaves the database consistent', async (t) => {
  const path = join(tempDir(t), 'crash.db');
  const writer = fileURLToPath(new URL('./fixtures/crash-writer.js', import.meta.url));
  let acknowledged = 0;
  for (let round = 0; round < 3; round++) {
    const child = spawn(process.execPath, [writer, path], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exit = once(child, 'exit');
    const target = acknowledged + 200;
    for await (const line of createInterface({ input: child.stdout! })) {
      acknowledged = Number(line);
      if (acknowledged >= target) {
        child.kill('SIGKILL');
        break;
      }
    }
    const [, signal] = await exit;
    assert.equal(signal, 'SIGKILL');
    const db = openDatabase({ path, migrations: crashMigrations });
    assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
    const { n, max } = db.prepare('SELECT count(*) AS n, max(seq) AS max FROM events').get() as {
      n: number;
      max: number;
    };
    assert.ok(max >= acknowledged, `round ${round}: acknowledged ${acknowledged}, found up to ${max}`);
    assert.equal(n, max, 'no gaps');
    const orphans = db
      .prepare('SELECT count(*) AS n FROM events e LEFT JOIN event_details d USING (seq) WHERE d.seq IS NULL')
      .get() as { n: number };
    assert.equal(orphans.n, 0, 'every committed transaction is whole');
    acknowledged = max;
    db.close();
  }
});
