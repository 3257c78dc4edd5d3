/**
 * Issue 11 item 9: the private keys of an enrolled gateway and proxy are sealed at rest. No file of their state
 * directories but sealing.key holds a PEM or OpenSSH private key (database, -wal, -shm); the databases copied
 * without sealing.key do not serve (E_SEALED_KEY, non-zero exit); and a state directory in the old, unsealed
 * form is sealed in place by the next `serve`, which then carries traffic byte-exact.
 */
import assert from 'node:assert/strict';
import { copyFileSync, mkdirSync, readdirSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { GatewayStore } from '../../lib/gateway/state.js';
import { assertByteExact, type Daemon, startDeployment } from './deploy.js';
import { runProgram } from './probes.js';

const SEALED = 'sealed:v1:';

/** Files of a state directory (but sealing.key) holding "PRIVATE KEY" (which "OPENSSH PRIVATE KEY" contains). */
function plaintextKeys(dir: string): { scanned: string[]; leaking: string[] } {
  const scanned = readdirSync(dir).filter((f) => f !== 'sealing.key');
  const leaking = scanned.filter((f) => readFileSync(join(dir, f)).includes('PRIVATE KEY'));
  return { scanned, leaking };
}

function keyColumns(db: string): { tls: string; ssh: string } {
  const conn = new Database(db, { readonly: true, fileMustExist: true });
  try {
    const row = conn.prepare('SELECT tls_key_pem AS tls, ssh_private_key AS ssh FROM enrollment WHERE id = 1').get();
    return row as { tls: string; ssh: string };
  } finally {
    conn.close();
  }
}

/** `serve` from a copy of `d`'s *.db files alone (no sealing.key), on `d`'s own arguments. */
async function serveFromDatabaseCopy(d: Daemon, into: string) {
  mkdirSync(into);
  const dbs = readdirSync(d.stateDir).filter((f) => f.endsWith('.db'));
  for (const f of dbs) copyFileSync(join(d.stateDir, f), join(into, f));
  const run = await runProgram(
    d.program,
    d.args.map((a) => (a === d.stateDir ? into : a)),
    20_000,
  );
  return { ...run, dbs };
}

test('gateway and proxy keys are sealed at rest, useless without sealing.key, and old state is sealed in place', async (t) => {
  const d = await startDeployment({ proxies: 1, gateways: 1 });
  t.after(() => d.close());
  try {
    const gw = d.gateways[0]!;
    const proxy = d.proxies[0]!;
    for (const x of [gw, proxy]) {
      const { scanned, leaking } = plaintextKeys(x.stateDir);
      t.diagnostic(`${x.name}: scanned ${scanned.join(', ')}`);
      assert.ok(
        scanned.some((f) => f.endsWith('.db')),
        `${x.name}: the database is among the files`,
      );
      assert.deepEqual(leaking, [], `${x.name}: no file but sealing.key holds a private key`);
      assert.ok(readdirSync(x.stateDir).includes('sealing.key'), `${x.name}: sealing.key beside the database`);
      const cols = keyColumns(join(x.stateDir, `${x.program}.db`));
      assert.ok(cols.tls.startsWith(SEALED) && cols.ssh.startsWith(SEALED), `${x.name}: both key columns sealed`);
    }

    // The databases without sealing.key: refused, E_SEALED_KEY, non-zero exit (stopped first: a consistent file).
    await gw.stop();
    await proxy.stop();
    for (const x of [gw, proxy]) {
      const run = await serveFromDatabaseCopy(x, join(d.dir, `${x.program}-db-only`));
      t.diagnostic(`${x.name} from ${run.dbs.join(', ')} alone: exit ${run.signal ?? run.code} in ${run.ms} ms`);
      assert.equal(run.signal, null, `${x.name}: it exits by itself`);
      assert.notEqual(run.code, 0, `${x.name}: non-zero exit`);
      assert.match(run.stdout + run.stderr, /E_SEALED_KEY/, `${x.name}: says E_SEALED_KEY:\n${run.stderr}`);
    }
    await proxy.start();

    // The old, unsealed form: the plaintext keys (unsealed in-process by lib's own store) written back as plain.
    const dbPath = join(gw.stateDir, 'gateway.db');
    const store = GatewayStore.open(dbPath);
    const { tlsKeyPem, sshPrivateKey } = store.load();
    store.close();
    assert.match(tlsKeyPem, /PRIVATE KEY/);
    assert.match(sshPrivateKey, /PRIVATE KEY/);
    const conn = new Database(dbPath);
    conn
      .prepare('UPDATE enrollment SET tls_key_pem = ?, ssh_private_key = ? WHERE id = 1')
      .run(tlsKeyPem, sshPrivateKey);
    conn.close();
    assert.equal(keyColumns(dbPath).tls, tlsKeyPem, 'the old form: plain PEM in the column');

    await gw.start();
    await gw.waitTunnels(1);
    const c = await d.connect({ gateway: gw });
    assertByteExact(await d.transfer(c, 1024 * 1024), 'through the migrated gateway');
    const cols = keyColumns(dbPath);
    assert.ok(cols.tls.startsWith(SEALED), `tls_key_pem sealed in place: ${cols.tls.slice(0, 20)}…`);
    assert.ok(cols.ssh.startsWith(SEALED), `ssh_private_key sealed in place: ${cols.ssh.slice(0, 20)}…`);
    // Nor does the old plaintext survive in freed pages of the file or in its WAL.
    assert.deepEqual(plaintextKeys(gw.stateDir).leaking, [], 'files still holding a plain key after the migration');
  } catch (err) {
    process.stderr.write(`\n${d.tails()}\n`);
    throw err;
  } finally {
    await d.close();
  }
});
