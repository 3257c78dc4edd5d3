/** The Authority in-process: what each operation issues, and that what it issues verifies where it should. */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { unwrap } from '../../lib/errors/codes.js';
import { checkGrant } from '../../lib/pki/grant.js';
import { verifyCertificateChain } from '../../lib/pki/verify.js';
import { parseCertificate as parseX509, pemBlocks } from '../../lib/pki/x509.js';
import { verifyRevocationFeed } from '../../lib/protocol/api.js';
import { parseCertificate, parsePublicKey, verifyCertificate } from '../../lib/sshcert/index.js';
import { clientKeys, csrFor, newAuthority, newOrg, pemCerts, TD } from './helpers.js';

async function world() {
  const f = await newAuthority();
  const acme = await newOrg(f, 'acme');
  const gk = clientKeys();
  const gateway = unwrap(
    f.ca.enrollGateway(acme.orgAdmin, { orgId: 'acme', gatewayId: 'gw1', csr: gk.csr, sshPublicKey: gk.sshPublicKey }),
  );
  const ik = clientKeys();
  const instanceProxy = unwrap(
    f.ca.enrollProxy(f.admin, {
      scope: 'instance',
      proxyId: 'p1',
      hostnames: ['proxy.example.test', '127.0.0.1'],
      sshAddress: '127.0.0.1:2222',
      tlsAddress: '127.0.0.1:8443',
      csr: ik.csr,
      sshPublicKey: ik.sshPublicKey,
    }),
  );
  const ok = clientKeys();
  const orgProxy = unwrap(
    f.ca.enrollProxy(acme.orgAdmin, {
      scope: 'org',
      orgId: 'acme',
      proxyId: 'p2',
      hostnames: ['acme-proxy.example.test'],
      sshAddress: 'acme-proxy.example.test:2222',
      tlsAddress: 'acme-proxy.example.test:443',
      csr: ok.csr,
      sshPublicKey: ok.sshPublicKey,
    }),
  );
  return { f, acme, gk, gateway, ik, instanceProxy, ok, orgProxy };
}

const now = (f: { clock: { now: () => Date } }) => f.clock.now();
const nowSec = (f: { clock: { ms: number } }) => Math.floor(f.clock.ms / 1000);

test('gateway enrollment: TLS server cert for its URI, SSH user certs per scope, trust, proxies', async () => {
  const { f, gateway } = await world();
  const uri = `spiffe://${TD}/org/acme/gateway/gw1`;
  assert.equal(gateway.gatewayUri, uri);
  const [leaf, ca] = pemCerts(gateway.tlsCertificateChain);
  const orgGatewayServerCa = f.ca.ctx.keyring.x509Pem('acme', 'gateway-server');
  assert.equal(ca, orgGatewayServerCa);
  const v = verifyCertificateChain({
    chain: gateway.tlsCertificateChain,
    anchors: orgGatewayServerCa,
    now: now(f),
    purpose: 'serverAuth',
    expectedUri: uri,
  });
  assert.ok(v.ok, JSON.stringify(v));
  assert.ok(leaf);

  assert.deepEqual(
    gateway.sshCertificates.map((c) => c.scope),
    ['instance', 'org'],
  );
  for (const { scope, certificate } of gateway.sshCertificates) {
    const cert = unwrap(parseCertificate(certificate));
    assert.equal(cert.type, 'user');
    assert.deepEqual(cert.principals, ['gw1']);
    assert.equal(cert.keyId, uri);
    assert.deepEqual(Object.keys(cert.extensions), ['permit-port-forwarding']);
    assert.deepEqual(cert.criticalOptions, {});
    assert.ok(cert.validBefore - cert.validAfter <= 24n * 3600n, 'lifetime ≤ 24 h');
    const caKey = unwrap(
      parsePublicKey(f.ca.ctx.keyring.sshPublic(scope === 'instance' ? null : 'acme', 'proxy-ssh-client')),
    );
    assert.ok(verifyCertificate(cert, { trustedCaKeys: [caKey], type: 'user', principal: 'gw1', now: nowSec(f) }).ok);
    const otherScope = unwrap(
      parsePublicKey(f.ca.ctx.keyring.sshPublic(scope === 'instance' ? 'acme' : null, 'proxy-ssh-client')),
    );
    assert.equal(verifyCertificate(cert, { trustedCaKeys: [otherScope], type: 'user', now: nowSec(f) }).ok, false);
  }
  assert.deepEqual(
    gateway.trust.sshHostCaKeys.map((k) => k.scope),
    ['instance', 'org'],
  );
  assert.deepEqual(gateway.trust.gatewayClientCaCerts, [f.ca.ctx.keyring.x509Pem('acme', 'gateway-client')]);
  assert.match(gateway.revocationFeedKey, /BEGIN PUBLIC KEY/);
  assert.ok(f.ca.store.enrollment.gateway('acme', 'gw1'));
});

test('proxy enrollment: instance proxies get instance CAs only, org proxies their org CAs only', async () => {
  const { f, instanceProxy, orgProxy } = await world();
  const k = f.ca.ctx.keyring;
  assert.equal(instanceProxy.proxyUri, `spiffe://${TD}/instance/proxy/p1`);
  assert.deepEqual(instanceProxy.trust.sshUserCaKeys, [k.sshPublic(null, 'proxy-ssh-client')]);
  assert.deepEqual(instanceProxy.trust.pkiClientCaCerts, [k.x509Pem(null, 'proxy-pki-client')]);
  assert.equal(orgProxy.proxyUri, `spiffe://${TD}/org/acme/proxy/p2`);
  assert.deepEqual(orgProxy.trust.sshUserCaKeys, [k.sshPublic('acme', 'proxy-ssh-client')]);
  assert.deepEqual(orgProxy.trust.pkiClientCaCerts, [k.x509Pem('acme', 'proxy-pki-client')]);

  const tls = verifyCertificateChain({
    chain: instanceProxy.tlsCertificateChain,
    anchors: k.x509Pem(null, 'proxy-pki-server'),
    now: now(f),
    purpose: 'serverAuth',
    expectedHost: '127.0.0.1',
  });
  assert.ok(tls.ok, JSON.stringify(tls));
  assert.deepEqual(tls.value.dns, ['proxy.example.test']);
  const wrongCa = verifyCertificateChain({
    chain: orgProxy.tlsCertificateChain,
    anchors: k.x509Pem(null, 'proxy-pki-server'),
    now: now(f),
    purpose: 'serverAuth',
  });
  assert.equal(wrongCa.ok, false, 'an org proxy cert does not chain to the instance CA');

  const host = unwrap(parseCertificate(instanceProxy.sshHostCertificate));
  assert.equal(host.type, 'host');
  assert.deepEqual(host.principals, ['proxy.example.test', '127.0.0.1']);
  assert.ok(host.validBefore - host.validAfter <= 30n * 24n * 3600n);
  const hostCa = unwrap(parsePublicKey(k.sshPublic(null, 'proxy-ssh-server')));
  assert.ok(
    verifyCertificate(host, { trustedCaKeys: [hostCa], type: 'host', principal: '127.0.0.1', now: nowSec(f) }).ok,
  );
});

test('grant: inner cert carries the grant (org gateway client CA), outer certs the route per proxy scope', async () => {
  const { f, acme } = await world();
  unwrap(
    f.ca.addPolicy(acme.orgAdmin, 'acme', {
      subject: 'group:dba',
      gateways: ['gw1'],
      targets: ['db.internal:5432'],
      modes: ['tcp'],
    }),
  );
  const outer = csrFor();
  const inner = csrFor();
  const g = unwrap(
    f.ca.issueGrant(acme.member, {
      orgId: 'acme',
      gatewayId: 'gw1',
      target: { host: 'db.internal', port: 5432 },
      mode: 'tcp',
      outerCsr: outer.csr,
      innerCsr: inner.csr,
    }),
  );
  const k = f.ca.ctx.keyring;
  assert.deepEqual(Object.keys(g.outerCertificateChains).sort(), ['instance', 'org']);
  assert.equal(g.outerCertificateChain, g.outerCertificateChains.org);
  assert.deepEqual(g.trust.gatewayServerCaCerts, [k.x509Pem('acme', 'gateway-server')]);
  assert.deepEqual(g.trust.proxyServerCaCerts, [
    k.x509Pem(null, 'proxy-pki-server'),
    k.x509Pem('acme', 'proxy-pki-server'),
  ]);
  assert.deepEqual(
    g.proxies.map((p) => p.proxyId),
    ['p1', 'p2'],
  );
  const innerV = verifyCertificateChain({
    chain: g.innerCertificateChain,
    anchors: k.x509Pem('acme', 'gateway-client'),
    now: now(f),
    purpose: 'clientAuth',
    requireGrant: true,
  });
  assert.ok(innerV.ok, JSON.stringify(innerV));
  const grantContext = { orgId: 'acme', gatewayId: 'gw1', mode: 'tcp' as const, now: now(f) };
  assert.ok(checkGrant(innerV.value.grant!, { ...grantContext, target: { host: 'db.internal', port: 5432 } }).ok);
  assert.equal(innerV.value.grant?.grantId, g.grantId);
  assert.equal(innerV.value.grant?.actor, `spiffe://${TD}/org/acme/identity/alice`);
  assert.ok(innerV.value.notAfter.getTime() - f.clock.ms <= 5 * 60_000, 'inner cert ≤ 5 min by default');
  const otherTarget = checkGrant(innerV.value.grant!, { ...grantContext, target: { host: 'db.internal', port: 22 } });
  assert.equal(!otherTarget.ok && otherTarget.code, 'E_GRANT_TARGET');
  for (const scope of ['instance', 'org'] as const) {
    const v = verifyCertificateChain({
      chain: g.outerCertificateChains[scope]!,
      anchors: k.x509Pem(scope === 'instance' ? null : 'acme', 'proxy-pki-client'),
      now: now(f),
      purpose: 'clientAuth',
      requireRoute: true,
    });
    assert.ok(v.ok, `${scope}: ${JSON.stringify(v)}`);
    assert.deepEqual(v.value.route, { version: 1, orgId: 'acme', gatewayId: 'gw1' });
  }
  // Every certificate handed out is on record, with who asked for it.
  for (const pem of [g.innerCertificateChain, g.outerCertificateChains.instance!, g.outerCertificateChains.org!]) {
    const leaf = parseX509(pemBlocks(pem, 'CERTIFICATE')[0]!);
    const row = f.ca.store.issuance.certificate(leaf.serialHex);
    assert.equal(row?.grantId, g.grantId);
    assert.equal(row?.requestedBy, 'org:acme/identity:alice');
  }
  assert.equal(f.ca.store.issuance.grant(g.grantId)?.identityId, 'alice');
});

test('grant with only instance proxies gets only the instance outer chain', async () => {
  const f = await newAuthority();
  const acme = await newOrg(f, 'acme');
  const gk = clientKeys();
  unwrap(
    f.ca.enrollGateway(acme.orgAdmin, { orgId: 'acme', gatewayId: 'gw1', csr: gk.csr, sshPublicKey: gk.sshPublicKey }),
  );
  const pk = clientKeys();
  unwrap(
    f.ca.enrollProxy(f.admin, {
      scope: 'instance',
      proxyId: 'p1',
      hostnames: ['p1.example.test'],
      sshAddress: 'p1.example.test:22',
      tlsAddress: 'p1.example.test:443',
      csr: pk.csr,
      sshPublicKey: pk.sshPublicKey,
    }),
  );
  unwrap(
    f.ca.addPolicy(acme.orgAdmin, 'acme', {
      subject: 'identity:alice',
      gateways: ['*'],
      targets: ['name:db'],
      modes: ['tcp'],
    }),
  );
  const g = unwrap(
    f.ca.issueGrant(acme.member, {
      orgId: 'acme',
      gatewayId: 'gw1',
      target: { name: 'db' },
      mode: 'tcp',
      outerCsr: csrFor().csr,
      innerCsr: csrFor().csr,
      ttlSeconds: 60,
    }),
  );
  assert.deepEqual(Object.keys(g.outerCertificateChains), ['instance']);
  assert.equal(Date.parse(g.expiresAt) - f.clock.ms, 60_000);
});

test('org isolation: every per-org CA is its own key, distinct from the other org and the instance', async () => {
  const f = await newAuthority();
  await newOrg(f, 'acme');
  await newOrg(f, 'globex');
  const k = f.ca.ctx.keyring;
  const seen = new Map<string, string>();
  const record = (label: string, material: string) => {
    assert.ok(!seen.has(material), `${label} shares key material with ${seen.get(material)}`);
    seen.set(material, label);
  };
  for (const org of [null, 'acme', 'globex']) {
    const purposes = ['proxy-ssh-client', 'proxy-ssh-server', 'proxy-pki-client', 'proxy-pki-server'] as const;
    const all = org === null ? purposes : ([...purposes, 'gateway-client', 'gateway-server'] as const);
    for (const p of all) {
      if (p.includes('ssh')) record(`${org}/${p}`, k.sshPublic(org, p).split(' ')[1]!);
      else {
        const cert = parseX509(pemBlocks(k.x509Pem(org, p), 'CERTIFICATE')[0]!);
        assert.ok(cert.basicConstraints?.ca, 'a CA certificate');
        assert.ok(cert.issuer.equals(cert.subject), `${org}/${p} is a root (self-issued)`);
        record(`${org}/${p}`, cert.spki.toString('hex'));
      }
    }
  }
  assert.equal(seen.size, 4 + 6 + 6);
});

test('revocation feed: signed, paged by seq, filtered per org', async () => {
  const { f, acme, gateway } = await world();
  await newOrg(f, 'globex');
  unwrap(f.ca.revoke(acme.orgAdmin, { kind: 'gateway', orgId: 'acme', subject: 'gw1', reason: 'stolen' }));
  unwrap(f.ca.revoke(f.admin, { kind: 'proxy', subject: 'p1' }));
  unwrap(f.ca.revoke(f.admin, { kind: 'identity', orgId: 'globex', subject: 'alice' }));
  const all = f.ca.revocationsSince(f.admin, 0);
  assert.equal(all.entries.length, 3);
  assert.equal(all.seq, 3);
  assert.ok(verifyRevocationFeed(all, gateway.revocationFeedKey).ok);
  const tampered = { ...all, entries: all.entries.slice(1) };
  assert.equal(verifyRevocationFeed(tampered, gateway.revocationFeedKey).ok, false);
  const acmeView = f.ca.revocationsSince(acme.member, 0);
  assert.deepEqual(
    acmeView.entries.map((e) => `${e.kind}:${e.orgId}:${e.subject}`),
    ['gateway:acme:gw1', 'proxy:null:p1'],
  );
  assert.equal(f.ca.revocationsSince(f.admin, 3).entries.length, 0);
  assert.equal(f.ca.revocationsSince(f.admin, 1).entries[0]?.seq, 2);
  // Revoking twice keeps one entry.
  assert.equal(unwrap(f.ca.revoke(f.admin, { kind: 'proxy', subject: 'p1' })).seq, 2);
});

test('deleting an org revokes what it had and destroys its CA keys', async () => {
  const { f, acme } = await world();
  const r = unwrap(f.ca.deleteOrg(f.admin, 'acme'));
  assert.equal(r.revoked, 1 + 1 + 2); // gateway gw1, proxy p2, identities boss and alice
  assert.equal(f.ca.authenticate(undefined).ok, false);
  const login = await f.ca.login({ clientId: acme.memberCreds.clientId, clientSecret: acme.memberCreds.clientSecret });
  assert.equal(!login.ok && login.code, 'E_SUBJECT_REVOKED');
  assert.throws(() => f.ca.ctx.keyring.x509('acme', 'gateway-client'), /E_NOT_FOUND|destroyed|no such/);
  const again = f.ca.createOrg(f.admin, 'acme');
  assert.equal(!again.ok && again.code, 'E_CONFLICT');
  const rows = f.ca.store.sql
    .prepare("SELECT count(*) AS n FROM authorities WHERE org_id = 'acme' AND sealed_key IS NOT NULL")
    .get() as { n: number };
  assert.equal(rows.n, 0);
});

test('audit: logins, issuance, denials and revocations are recorded', async () => {
  const { f, acme } = await world();
  const denied = f.ca.issueGrant(acme.member, {
    orgId: 'acme',
    gatewayId: 'gw1',
    target: { host: 'db.internal', port: 5432 },
    mode: 'tcp',
    outerCsr: csrFor().csr,
    innerCsr: csrFor().csr,
  });
  assert.equal(!denied.ok && denied.code, 'E_POLICY_DENIED');
  unwrap(f.ca.revoke(f.admin, { kind: 'gateway', orgId: 'acme', subject: 'gw1' }));
  const entries = unwrap(f.ca.audit(f.admin, 0)).entries;
  const actions = entries.map((e) => `${e.action}:${e.outcome}`);
  for (const want of [
    'init:ok',
    'login:ok',
    'org.create:ok',
    'gateway.enroll:ok',
    'proxy.enroll:ok',
    'grant.issue:refused',
    'revoke.gateway:ok',
  ]) {
    assert.ok(actions.includes(want), `${want} in ${actions.join(' ')}`);
  }
  const denial = entries.find((e) => e.action === 'grant.issue')!;
  assert.equal(denial.code, 'E_POLICY_DENIED');
  assert.equal(denial.actor, 'org:acme/identity:alice');
  assert.match(denial.reason ?? '', /no rule/);
  const orgView = unwrap(f.ca.audit(acme.orgAdmin, 0)).entries;
  assert.ok(orgView.length > 0 && orgView.every((e) => e.orgId === 'acme'));
  assert.equal(f.ca.audit(acme.member, 0).ok, false);
});
