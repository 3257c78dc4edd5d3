/**
 * The real daemon: init, admin subcommands, serve (ops endpoint, SIGHUP reload, SIGTERM drain), and a crash
 * test: SIGKILL during a burst of issuance, then a restart finds a consistent database holding every
 * certificate any client received.
 */
import assert from 'node:assert/strict';
import { join } from 'node:path';
import { after, test } from 'node:test';
import Database from 'better-sqlite3';
import { parseCertificate, pemBlocks } from '../../lib/pki/x509.js';
import type { GrantResponse } from '../../lib/protocol/api.js';
import { CaClient } from '../../lib/protocol/ca-client.js';
import { cli, cliJson, serve } from './daemon-helpers.js';
import { clientKeys, csrFor, TempDir } from './helpers.js';

const dir = new TempDir();
after(() => dir.remove());

interface Init {
  adminClientId: string;
  adminClientSecret: string;
  apiFingerprint: string;
  apiCertificateFingerprint: string;
  trustDomain: string;
}

async function initialized(name: string) {
  const state = join(dir.path, name);
  const init = await cliJson<Init>(['init', '--state-dir', state, '--trust-domain', 'crash.test']);
  await cliJson(['org', 'create', 'acme', '--state-dir', state]);
  const alice = await cliJson<{ clientId: string; clientSecret: string }>([
    'identity',
    'create',
    'acme',
    'alice',
    '--group',
    'dba',
    '--state-dir',
    state,
  ]);
  await cliJson([
    'policy',
    'add',
    'acme',
    '--subject',
    'group:dba',
    '--gateway',
    '*',
    '--target',
    '*:*',
    '--mode',
    'tcp',
    '--state-dir',
    state,
  ]);
  const token = await cliJson<{ token: string }>([
    'token',
    '--org',
    'acme',
    '--kind',
    'gateway',
    '--subject',
    'gw1',
    '--state-dir',
    state,
  ]);
  return { state, init, alice, token };
}

const serials = (g: GrantResponse): string[] =>
  [g.innerCertificateChain, ...Object.values(g.outerCertificateChains)].map(
    (pem) => parseCertificate(pemBlocks(pem as string, 'CERTIFICATE')[0]!).serialHex,
  );

test('serve: API with the pinned certificate, ops endpoint, SIGHUP picks up a new API cert, SIGTERM drains', async () => {
  const { state, init } = await initialized('serve');
  const s = await serve(state);
  try {
    assert.equal(s.fingerprint, init.apiFingerprint);
    const client = new CaClient({ url: s.url, fingerprint: init.apiFingerprint });
    assert.equal((await client.health()).ok, true);
    const ready = await fetch(`${s.ops}/readyz`);
    assert.equal(ready.status, 200);
    const metrics = await (await fetch(`${s.ops}/metrics`)).text();
    assert.match(metrics, /infisical_ca_requests_total\{route="health",status="200"\} 1/);
    assert.match(metrics, /^infisical_ca_certificate_expiry_timestamp_seconds \d{10}/m, 'API certificate expiry');

    const next = await cliJson<{ apiFingerprint: string; apiCertificateFingerprint: string }>([
      'api-cert',
      '--state-dir',
      state,
      '--api-name',
      '127.0.0.1',
    ]);
    // A new leaf from the same API root: the pin clients hold (the root) does not change.
    assert.equal(next.apiFingerprint, init.apiFingerprint);
    assert.notEqual(next.apiCertificateFingerprint, init.apiCertificateFingerprint);
    s.child.kill('SIGHUP');
    const newLeaf = new CaClient({ url: s.url, fingerprint: next.apiCertificateFingerprint });
    let served = false;
    for (let i = 0; i < 100 && !served; i++) {
      served = await newLeaf.health().then(
        () => true,
        () => new Promise<boolean>((r) => setTimeout(() => r(false), 100)),
      );
    }
    assert.ok(served, 'the new certificate is served after SIGHUP');
    assert.equal((await client.health()).ok, true, 'the root-pinned client works on, unchanged');
    const oldLeaf = new CaClient({ url: s.url, fingerprint: init.apiCertificateFingerprint });
    await assert.rejects(oldLeaf.health(), /pinned fingerprint/);
  } finally {
    s.child.kill('SIGTERM');
  }
  assert.equal(await s.exited, 0);
  assert.ok(s.lines.some((l) => l['msg'] === 'drained'));
});

test('crash: SIGKILL during a burst of grants; after restart every certificate a client got is recorded', async () => {
  const { state, init, alice, token } = await initialized('crash');
  let s = await serve(state);
  const anon = new CaClient({ url: s.url, fingerprint: init.apiFingerprint });
  const gk = clientKeys();
  await anon.enrollGateway({
    orgId: 'acme',
    gatewayId: 'gw1',
    csr: gk.csr,
    sshPublicKey: gk.sshPublicKey,
    enrollmentToken: token.token,
  });
  const { client } = await anon.loginAs({ clientId: alice.clientId, clientSecret: alice.clientSecret });
  const outer = csrFor().csr;
  const inner = csrFor().csr;
  const received: GrantResponse[] = [];
  let failures = 0;
  let killed = false;
  const worker = async () => {
    for (let i = 0; i < 40; i++) {
      try {
        const g = await client.issueGrant({
          orgId: 'acme',
          gatewayId: 'gw1',
          target: { host: 'db', port: 5432 },
          mode: 'tcp',
          outerCsr: outer,
          innerCsr: inner,
        });
        received.push(g);
        if (received.length >= 60 && !killed) {
          killed = true;
          s.child.kill('SIGKILL');
        }
      } catch {
        failures++;
      }
    }
  };
  await Promise.all(Array.from({ length: 12 }, worker));
  assert.ok(killed, `the daemon was killed mid-burst (received ${received.length})`);
  assert.ok(failures > 0, 'requests in flight at the kill failed');
  await s.exited;

  s = await serve(state);
  try {
    const db = new Database(join(state, 'ca.db'), { readonly: true });
    try {
      assert.equal(db.pragma('integrity_check', { simple: true }), 'ok');
      const has = db.prepare('SELECT grant_id, kind FROM certificates WHERE serial = ?');
      for (const g of received) {
        for (const serial of serials(g)) {
          const row = has.get(serial) as { grant_id: string } | undefined;
          assert.equal(row?.grant_id, g.grantId, `serial ${serial} of grant ${g.grantId} is recorded`);
        }
      }
      // Atomicity: no grant without its certificates, no grant certificate without its grant.
      const orphans = db
        .prepare(
          `SELECT count(*) AS n FROM certificates c LEFT JOIN grants g ON g.grant_id = c.grant_id
           WHERE c.grant_id IS NOT NULL AND g.grant_id IS NULL`,
        )
        .get() as { n: number };
      assert.equal(orphans.n, 0);
      const incomplete = db
        .prepare(
          `SELECT count(*) AS n FROM grants g WHERE (SELECT count(*) FROM certificates c WHERE c.grant_id = g.grant_id) <> 3`,
        )
        .get() as { n: number };
      assert.equal(
        incomplete.n,
        0,
        'every grant has its inner and both outer certificates (no proxy yet: both scopes)',
      );
      const audited = db
        .prepare(`SELECT count(*) AS n FROM audit WHERE action = 'grant.issue' AND outcome = 'ok'`)
        .get() as { n: number };
      const grants = db.prepare('SELECT count(*) AS n FROM grants').get() as { n: number };
      assert.equal(audited.n, grants.n, 'one audit row per recorded grant');
      assert.ok(grants.n >= received.length);
    } finally {
      db.close();
    }
    // The restarted CA keeps issuing.
    const again = new CaClient({ url: s.url, fingerprint: init.apiFingerprint });
    const { client: c2 } = await again.loginAs({ clientId: alice.clientId, clientSecret: alice.clientSecret });
    const g = await c2.issueGrant({
      orgId: 'acme',
      gatewayId: 'gw1',
      target: { host: 'db', port: 1 },
      mode: 'tcp',
      outerCsr: outer,
      innerCsr: inner,
    });
    assert.ok(g.grantId);
    // The same issuance as a JSON audit line on stdout.
    const line = () => s.lines.find((l) => l['audit'] === true && l['event'] === 'ca.grant.issue');
    for (let i = 0; i < 50 && !line(); i++) await new Promise((r) => setTimeout(r, 100));
    assert.equal(line()?.['actor'], 'org:acme/identity:alice');
    assert.match(String(line()?.['reason']), new RegExp(g.grantId));
  } finally {
    s.child.kill('SIGTERM');
    await s.exited;
  }
});

test('serve refuses an uninitialized state directory', async () => {
  const r = await cli([
    'serve',
    '--state-dir',
    join(dir.path, 'empty'),
    '--listen',
    '127.0.0.1:0',
    '--ops-listen',
    '127.0.0.1:0',
  ]);
  assert.notEqual(r.code, 0);
  assert.match(r.stderr, /E_SEALED_KEY|E_CONFIG_INVALID/);
});

test('one serve per state directory: a second is refused naming the first pid; admin commands work beside it', async () => {
  const { state } = await initialized('lock');
  const s = await serve(state);
  try {
    const second = await cli(['serve', '--state-dir', state, '--listen', '127.0.0.1:0', '--ops-listen', '127.0.0.1:0']);
    assert.equal(second.code, 78, second.stderr);
    assert.match(second.stderr + second.stdout, new RegExp(`in use by infisical-ca serve \\(pid ${s.child.pid}`));
    const orgs = await cli(['org', 'list', '--state-dir', state, '--json']);
    assert.equal(orgs.code, 0, orgs.stderr);
  } finally {
    s.child.kill('SIGTERM');
  }
  assert.equal(await s.exited, 0);
  // Released at exit: the next serve starts.
  const again = await serve(state);
  again.child.kill('SIGTERM');
  assert.equal(await again.exited, 0);
});
