/**
 * Renewal retires what it replaces: only the current certificate renews (a copied state directory cannot renew
 * beside the real one), a lost response may be retried with the successor's key, and the predecessor's TLS and
 * SSH certificates enter the feed at the successor's first use or after the grace (injected clock).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { test } from 'node:test';
import { advance } from '../../lib/ca/rotation.js';
import { unwrap } from '../../lib/errors/codes.js';
import { parseCertificate } from '../../lib/pki/x509.js';
import { clientKeys, csrFor, type Fixture, newAuthority, newOrg, replicaOf, sharedStore } from './helpers.js';
import { feedRead, type Held, leafDer, refused, renewal, revokedCerts, sshSerial, tlsSerial } from './peers.js';

async function enrolled(options: Parameters<typeof newAuthority>[0] = {}) {
  const f = await newAuthority(options);
  const acme = await newOrg(f, 'acme');
  const keys = clientKeys();
  const gw = unwrap(
    f.ca.enrollGateway(acme.orgAdmin, {
      orgId: 'acme',
      gatewayId: 'gw1',
      csr: keys.csr,
      sshPublicKey: keys.sshPublicKey,
    }),
  );
  const pkeys = clientKeys();
  const px = unwrap(
    f.ca.enrollProxy(f.admin, {
      scope: 'instance',
      proxyId: 'p1',
      hostnames: ['p1.example.test'],
      sshAddress: 'p1.example.test:22',
      tlsAddress: 'p1.example.test:443',
      csr: pkeys.csr,
      sshPublicKey: pkeys.sshPublicKey,
    }),
  );
  const gateway: Held = { chain: gw.tlsCertificateChain, keys };
  const gatewaySerials = [
    tlsSerial(gw.tlsCertificateChain),
    ...gw.sshCertificates.map((c) => sshSerial(c.certificate)),
  ];
  const proxy: Held = { chain: px.tlsCertificateChain, keys: pkeys };
  const proxySerials = [tlsSerial(px.tlsCertificateChain), sshSerial(px.sshHostCertificate)];
  return { f, acme, gateway, gatewaySerials, proxy, proxySerials };
}

test('a predecessor renews once: the second renewal (a copy of the state directory) is refused E_CERT_SUPERSEDED', async () => {
  const { f, gateway, proxy } = await enrolled();
  f.clock.advance(60);
  assert.ok(f.ca.renewGateway(renewal(f, gateway, clientKeys())).ok);
  f.clock.advance(5);
  const reason = refused(f.ca.renewGateway(renewal(f, gateway, clientKeys())), 'E_CERT_SUPERSEDED', 'gateway copy');
  assert.match(reason, /renewed already at 2030-01-01T00:01:00\.000Z/, 'names when');
  assert.ok(f.ca.renewProxy(renewal(f, proxy, clientKeys())).ok);
  refused(f.ca.renewProxy(renewal(f, proxy, clientKeys())), 'E_CERT_SUPERSEDED', 'proxy copy');
  const refusals = unwrap(f.ca.audit(f.admin, 0)).entries.filter((e) => e.code === 'E_CERT_SUPERSEDED');
  assert.deepEqual(
    refusals.map((e) => `${e.action}:${e.outcome}`),
    ['gateway.renew:refused', 'proxy.renew:refused'],
  );
});

/**
 * Runs `act` once, right before the next write transaction of `f`'s Authority opens: another writer (a replica)
 * acting between a renewal's judgement and its transaction (the renewal's next transaction is its issuance).
 */
function beforeNextTransaction(f: Fixture, act: () => void): void {
  const store = f.ca.store;
  const transaction = store.transaction.bind(store);
  store.transaction = <T>(fn: () => T): T => {
    store.transaction = transaction;
    act();
    return transaction(fn);
  };
}

test('two CA replicas judging renewals of one certificate at once: one successor, the other refused', async (t) => {
  const shared = sharedStore();
  t.after(shared.cleanup);
  const sealKey = randomBytes(32);
  const { f, gateway, proxy } = await enrolled({ db: shared.location, sealKey });
  const other = replicaOf(f, shared.location, sealKey);
  // A stolen copy renews at replica A while the real component renews at replica B.
  beforeNextTransaction(f, () => unwrap(other.renewGateway(renewal(f, gateway, clientKeys()))));
  let reason = refused(f.ca.renewGateway(renewal(f, gateway, clientKeys())), 'E_CERT_SUPERSEDED', 'copy at A');
  assert.match(reason, /not a retry with the successor key/);
  beforeNextTransaction(f, () => unwrap(other.renewProxy(renewal(f, proxy, clientKeys()))));
  reason = refused(f.ca.renewProxy(renewal(f, proxy, clientKeys())), 'E_CERT_SUPERSEDED', 'proxy copy at A');
  assert.match(reason, /not a retry with the successor key/);
  const renewed = unwrap(f.ca.audit(f.admin, 0)).entries.filter(
    (e) => e.action.endsWith('.renew') && e.outcome === 'ok',
  );
  assert.equal(renewed.length, 2, 'one renewal each of gateway and proxy, not two');
});

test('a renewal judged again in its transaction: the same key asked twice at once is a retry; a revocation meanwhile refuses it', async () => {
  // The component timed out at one replica and asked another with the same key: not a stolen copy.
  const { f, gateway } = await enrolled();
  const next = clientKeys();
  beforeNextTransaction(f, () => unwrap(f.ca.renewGateway(renewal(f, gateway, next))));
  unwrap(f.ca.renewGateway(renewal(f, gateway, next)));
  const last = unwrap(f.ca.audit(f.admin, 0)).entries.filter((e) => e.action === 'gateway.renew');
  assert.deepEqual(
    last.map((e) => `${e.outcome}:${e.reason}`),
    ['ok:null', 'ok:retry'],
  );
  // The certificate revoked at another replica meanwhile: no successor.
  const r = await enrolled();
  beforeNextTransaction(r.f, () =>
    unwrap(r.f.ca.revoke(r.f.admin, { kind: 'certificate', orgId: 'acme', subject: r.gatewaySerials[0]! })),
  );
  refused(r.f.ca.renewGateway(renewal(r.f, r.gateway, clientKeys())), 'E_CERT_REVOKED', 'revoked while judged');
  // The gateway revoked meanwhile.
  const s = await enrolled();
  beforeNextTransaction(s.f, () =>
    unwrap(s.f.ca.revoke(s.f.admin, { kind: 'gateway', orgId: 'acme', subject: 'gw1' })),
  );
  refused(
    s.f.ca.renewGateway(renewal(s.f, s.gateway, clientKeys())),
    'E_SUBJECT_REVOKED',
    'gateway revoked while judged',
  );
});

test("a proxy enrolled again between a renewal's judgement and its transaction: the renewal refused, the new row kept", async () => {
  const { f, proxy } = await enrolled();
  const again = clientKeys();
  beforeNextTransaction(f, () =>
    unwrap(
      f.ca.enrollProxy(f.admin, {
        scope: 'instance',
        proxyId: 'p1',
        hostnames: ['p1-new.example.test'],
        sshAddress: 'p1-new.example.test:22',
        tlsAddress: 'p1-new.example.test:443',
        csr: again.csr,
        sshPublicKey: again.sshPublicKey,
      }),
    ),
  );
  refused(f.ca.renewProxy(renewal(f, proxy, clientKeys())), 'E_CERT_SUPERSEDED', 'renewal of the old generation');
  const row = f.ca.store.enrollment.proxy(null, 'p1');
  assert.deepEqual(
    [row?.hostnames, row?.tlsAddress],
    [['p1-new.example.test'], 'p1-new.example.test:443'],
    "the enrollment's addresses stand",
  );
});

test("a lost renewal response may be retried with the successor's key; any other key is refused", async () => {
  const { f, gateway, gatewaySerials } = await enrolled();
  const next = clientKeys();
  const lost = unwrap(f.ca.renewGateway(renewal(f, gateway, next)));
  const lostSerials = [
    tlsSerial(lost.tlsCertificateChain),
    ...lost.sshCertificates.map((c) => sshSerial(c.certificate)),
  ];
  const retried = unwrap(f.ca.renewGateway(renewal(f, gateway, next)));
  assert.notEqual(tlsSerial(retried.tlsCertificateChain), lostSerials[0]);
  assert.deepEqual(
    parseCertificate(leafDer(retried.tlsCertificateChain)).spki,
    parseCertificate(leafDer(lost.tlsCertificateChain)).spki,
    'the same key, certified again',
  );
  // The undelivered successor is retired at once; the predecessor still waits for the retried one's first use.
  assert.deepEqual(revokedCerts(f), [...lostSerials].sort());
  refused(f.ca.renewGateway(renewal(f, gateway, clientKeys())), 'E_CERT_SUPERSEDED', 'a retry with another key');
  const successor: Held = { chain: retried.tlsCertificateChain, keys: next };
  assert.equal(unwrap(feedRead(f, successor)).standing, 'current');
  assert.deepEqual(revokedCerts(f), [...lostSerials, ...gatewaySerials].sort());
  refused(f.ca.renewGateway(renewal(f, gateway, next)), 'E_CERT_SUPERSEDED', 'no retry once retired');
});

test("the predecessor's certificates enter the feed at the successor's first use, and it is refused after", async () => {
  const { f, gateway, gatewaySerials, proxySerials } = await enrolled();
  const next = clientKeys();
  const renewed = unwrap(f.ca.renewGateway(renewal(f, gateway, next)));
  assert.deepEqual(revokedCerts(f), [], 'not before the successor is used');
  // The predecessor may still read the feed until then (the component has not switched yet).
  assert.equal(unwrap(feedRead(f, gateway)).standing, 'previous');
  assert.deepEqual(revokedCerts(f), []);
  const successor: Held = { chain: renewed.tlsCertificateChain, keys: next };
  unwrap(feedRead(f, successor));
  assert.deepEqual(revokedCerts(f), [...gatewaySerials].sort(), 'TLS leaf and both SSH certificates');
  assert.equal(gatewaySerials.length, 3);
  const entries = f.ca.revocationsSince(f.admin, 0).entries;
  assert.ok(entries.every((e) => e.orgId === 'acme'));
  refused(feedRead(f, gateway), 'E_CERT_SUPERSEDED', 'a retired predecessor reading the feed');
  for (const s of proxySerials)
    assert.equal(f.ca.store.revocations.has('certificate', null, s), false, 'proxy untouched');
  // The successor renews in turn, and its own predecessor (the first successor) follows the same path.
  const third = clientKeys();
  const again = unwrap(f.ca.renewGateway(renewal(f, successor, third)));
  unwrap(feedRead(f, { chain: again.tlsCertificateChain, keys: third }));
  assert.equal(revokedCerts(f).length, 6);
  assert.ok(revokedCerts(f).includes(tlsSerial(renewed.tlsCertificateChain)));
});

test('without any use of the successor, the predecessor is retired once the grace passes (no request needed)', async () => {
  const { f, proxy, proxySerials, gatewaySerials } = await enrolled();
  let wakeups = 0;
  f.ca.changes.on(() => wakeups++);
  unwrap(f.ca.renewProxy(renewal(f, proxy, clientKeys())));
  const afterRenewal = wakeups;
  f.clock.advance(119);
  assert.equal(f.ca.retireDue(), 0, 'not before the grace (120 s by default)');
  assert.deepEqual(revokedCerts(f), []);
  f.clock.advance(2);
  assert.equal(f.ca.retireDue(), 1, 'the daemon timer retires it');
  assert.ok(wakeups > afterRenewal, 'held feed reads are woken');
  assert.deepEqual(revokedCerts(f), [...proxySerials].sort());
  assert.ok(
    f.ca.revocationsSince(f.admin, 0).entries.every((e) => e.orgId === null),
    'an instance proxy: instance entries',
  );
  for (const s of gatewaySerials) assert.equal(f.ca.store.revocations.has('certificate', 'acme', s), false);

  // A feed read sweeps too; the grace is a limit (here 10 s).
  const g = await newAuthority({ limits: { supersedeGraceSec: 10 } });
  const k = clientKeys();
  const px = unwrap(
    g.ca.enrollProxy(g.admin, {
      scope: 'instance',
      proxyId: 'p9',
      hostnames: ['p9.example.test'],
      sshAddress: 'p9.example.test:22',
      tlsAddress: 'p9.example.test:443',
      csr: k.csr,
      sshPublicKey: k.sshPublicKey,
    }),
  );
  unwrap(g.ca.renewProxy(renewal(g, { chain: px.tlsCertificateChain, keys: k }, clientKeys())));
  g.clock.advance(11);
  assert.deepEqual(
    g.ca
      .revocationsSince(g.admin, 0)
      .entries.map((e) => e.subject)
      .sort(),
    [tlsSerial(px.tlsCertificateChain), sshSerial(px.sshHostCertificate)].sort(),
  );
});

test('grants and other components are never retired', async () => {
  const { f, acme, gateway, gatewaySerials, proxySerials } = await enrolled();
  const k2 = clientKeys();
  const gw2 = unwrap(
    f.ca.enrollGateway(acme.orgAdmin, { orgId: 'acme', gatewayId: 'gw2', csr: k2.csr, sshPublicKey: k2.sshPublicKey }),
  );
  unwrap(
    f.ca.addPolicy(acme.orgAdmin, 'acme', {
      subject: 'identity:alice',
      gateways: ['*'],
      targets: ['db:5432'],
      modes: ['tcp'],
    }),
  );
  const { csr } = csrFor();
  const grant = unwrap(
    f.ca.issueGrant(acme.member, {
      orgId: 'acme',
      gatewayId: 'gw1',
      target: { host: 'db', port: 5432 },
      mode: 'tcp',
      outerCsr: csr,
      innerCsr: csr,
    }),
  );
  const next = clientKeys();
  const renewed = unwrap(f.ca.renewGateway(renewal(f, gateway, next)));
  f.clock.advance(600);
  f.ca.retireDue();
  unwrap(feedRead(f, { chain: renewed.tlsCertificateChain, keys: next }));
  assert.deepEqual(revokedCerts(f), [...gatewaySerials].sort(), 'exactly the predecessor bundle');
  const others = [
    tlsSerial(gw2.tlsCertificateChain),
    ...gw2.sshCertificates.map((c) => sshSerial(c.certificate)),
    ...Object.values(grant.outerCertificateChains).map((c) => tlsSerial(c!)),
    tlsSerial(grant.innerCertificateChain),
    ...proxySerials,
  ];
  for (const s of others) assert.ok(!revokedCerts(f).includes(s), `${s} untouched`);
  assert.equal(unwrap(feedRead(f, { chain: gw2.tlsCertificateChain, keys: k2 })).standing, 'current');
});

test('enrolling an id again replaces the component: the old enrollment is retired at once', async () => {
  const { f, acme, gateway, gatewaySerials } = await enrolled();
  const keys = clientKeys();
  unwrap(
    f.ca.enrollGateway(acme.orgAdmin, {
      orgId: 'acme',
      gatewayId: 'gw1',
      csr: keys.csr,
      sshPublicKey: keys.sshPublicKey,
    }),
  );
  assert.deepEqual(revokedCerts(f), [...gatewaySerials].sort(), 'the old TLS leaf and both SSH certificates');
  refused(feedRead(f, gateway), 'E_CERT_SUPERSEDED', 'the old host reading the feed');
  refused(f.ca.renewGateway(renewal(f, gateway, clientKeys())), 'E_CERT_SUPERSEDED', 'the old host renewing');
});

test("a rotation completed at another replica between a renewal's judgement and its transaction: the certificate of the retired CA is refused E_ROTATION_MISSED", async (t) => {
  const shared = sharedStore();
  t.after(shared.cleanup);
  const sealKey = randomBytes(32);
  const { f, gateway, proxy } = await enrolled({ db: shared.location, sealKey });
  const other = replicaOf(f, shared.location, sealKey);
  // Both rotations at B up to update_servers: the components were away (offline: not waited for), so their
  // certificates are still of the old CAs, which are trusted until standby.
  const scopes = [
    { scope: { orgId: 'acme' }, authority: 'gateway-server' },
    { scope: { instance: true }, authority: 'proxy-pki-server' },
  ] as const;
  for (const { scope, authority } of scopes) {
    for (const action of ['start', 'next', 'next'] as const) advance(other.ctx, scope, authority, action);
  }
  const standby = (i: number) => () => {
    const { scope, authority } = scopes[i]!;
    assert.equal(advance(other.ctx, scope, authority, 'next').to, 'standby');
  };
  // A renews the gateway (judged: its certificate of a CA trusted in update_servers); B completes the rotation
  // right before A's transaction. A request a moment later is refused E_ROTATION_MISSED: this one is too.
  beforeNextTransaction(f, standby(0));
  let reason = refused(f.ca.renewGateway(renewal(f, gateway, clientKeys())), 'E_ROTATION_MISSED', 'gateway at A');
  assert.match(reason, /signed by org:acme:gateway-server, which a rotation of org:acme:gateway-server retired/);
  beforeNextTransaction(f, standby(1));
  reason = refused(f.ca.renewProxy(renewal(f, proxy, clientKeys())), 'E_ROTATION_MISSED', 'proxy at A');
  assert.match(reason, /signed by instance:proxy-pki-server, which a rotation/);
  refused(f.ca.renewGateway(renewal(f, gateway, clientKeys())), 'E_ROTATION_MISSED', 'the same, judged after');
  const audit = unwrap(f.ca.audit(f.admin, 0)).entries.filter((e) => e.action.endsWith('.renew'));
  assert.deepEqual(
    audit.map((e) => `${e.action}:${e.outcome}:${e.code}`),
    ['gateway.renew:refused:E_ROTATION_MISSED', 'proxy.renew:refused:E_ROTATION_MISSED'],
    'nothing issued',
  );
});
