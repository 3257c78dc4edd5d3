/** Every refusal of the Authority, in-process, each with its stable code (and each fails if its check goes). */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { type ErrorCode, unwrap, type Verdict } from '../../lib/errors/codes.js';
import { buildName, signStructure } from '../../lib/pki/build.js';
import { createCsrPem } from '../../lib/pki/csr.js';
import * as der from '../../lib/pki/der.js';
import { generateKeyPairSync, spkiDer } from '../../lib/pki/keys.js';
import { toPem } from '../../lib/pki/x509.js';
import { clientKeys, csrFor, type Fixture, newAuthority, newOrg } from './helpers.js';

function refused(v: Verdict<unknown>, code: ErrorCode, why?: string): void {
  assert.equal(v.ok, false, `${why ?? code}: expected a refusal, got ${JSON.stringify(v).slice(0, 200)}`);
  assert.equal(!v.ok && v.code, code, why ?? `${!v.ok && v.reason}`);
}

const gatewayReq = (orgId: string, gatewayId: string, extra: { enrollmentToken?: string } = {}) => {
  const k = clientKeys();
  return { orgId, gatewayId, csr: k.csr, sshPublicKey: k.sshPublicKey, ...extra };
};

async function twoOrgs() {
  const f = await newAuthority();
  const acme = await newOrg(f, 'acme');
  const globex = await newOrg(f, 'globex');
  unwrap(f.ca.enrollGateway(acme.orgAdmin, gatewayReq('acme', 'gw1')));
  return { f, acme, globex };
}

test('login: wrong secret and unknown client unaudited; failures make their source wait, never the client id', async () => {
  const f = await newAuthority({ rateLimits: { login: { burst: 3, refillMs: 10_000, maxDelayMs: 60_000 } } });
  const acme = await newOrg(f, 'acme');
  const { clientId: id, clientSecret: secret } = acme.memberCreds;
  const rows = () => f.ca.store.audit.since(0, 10_000).length;
  const before = rows();
  refused(await f.ca.login({ clientId: id, clientSecret: 'wrong' }, { source: '10.0.0.1' }), 'E_AUTH_INVALID');
  refused(await f.ca.login({ clientId: 'nobody', clientSecret: 'x' }, { source: '10.0.0.2' }), 'E_AUTH_INVALID');
  // 60 guesses at alice's id from one address: the burst (3) and one more are looked at, the rest wait.
  const codes: string[] = [];
  for (let i = 0; i < 60; i++) {
    const v = await f.ca.login({ clientId: id, clientSecret: `guess-${i}` }, { source: '10.0.0.9' });
    codes.push(v.ok ? 'ok' : v.code);
  }
  assert.deepEqual(codes.slice(0, 4), Array(4).fill('E_AUTH_INVALID'));
  assert.deepEqual(codes.slice(4), Array(56).fill('E_RATE_LIMITED'));
  assert.equal(rows(), before, 'no audit row for a caller that proved nothing');
  assert.equal(f.ca.unauthenticated.count('login', 'E_AUTH_INVALID'), 6);
  assert.equal(f.ca.unauthenticated.count('login', 'E_RATE_LIMITED'), 56);
  // The holder, from another address, logs in; from the flooding address (also written mapped) it waits too.
  assert.ok((await f.ca.login({ clientId: id, clientSecret: secret }, { source: '10.0.0.3' })).ok);
  refused(await f.ca.login({ clientId: id, clientSecret: secret }, { source: '10.0.0.9' }), 'E_RATE_LIMITED');
  refused(await f.ca.login({ clientId: id, clientSecret: secret }, { source: '::ffff:10.0.0.9' }), 'E_RATE_LIMITED');
  // Each further failure waits longer: 10 s, then 20 s.
  f.clock.advance(10);
  refused(await f.ca.login({ clientId: id, clientSecret: 'again' }, { source: '10.0.0.9' }), 'E_AUTH_INVALID');
  const longer = await f.ca.login({ clientId: id, clientSecret: secret }, { source: '10.0.0.9' });
  assert.equal(!longer.ok && longer.reason, 'retry in 20 s');
  // IPv6: one /64 is one source.
  for (let i = 0; i < 4; i++) await f.ca.login({ clientId: id, clientSecret: 'x' }, { source: `2001:db8::${i + 1}` });
  refused(await f.ca.login({ clientId: id, clientSecret: secret }, { source: '2001:db8::ffff' }), 'E_RATE_LIMITED');
  assert.ok((await f.ca.login({ clientId: id, clientSecret: secret }, { source: '2001:db8:0:1::1' })).ok);
  // A caller that proved its secret is audited, refused or not.
  unwrap(f.ca.revoke(f.admin, { kind: 'identity', orgId: 'acme', subject: 'boss' }));
  const beforeRevoked = rows();
  refused(
    await f.ca.login({ clientId: acme.adminCreds.clientId, clientSecret: acme.adminCreds.clientSecret }),
    'E_SUBJECT_REVOKED',
  );
  assert.equal(rows(), beforeRevoked + 1);
});

test('login: concurrent guesses from one source hash no more secrets than its burst allows', async () => {
  const f = await newAuthority({ rateLimits: { login: { burst: 3, refillMs: 10_000, maxDelayMs: 60_000 } } });
  const acme = await newOrg(f, 'acme');
  const { clientId: id, clientSecret: secret } = acme.memberCreds;
  const all = await Promise.all(
    Array.from({ length: 40 }, (_, i) => f.ca.login({ clientId: id, clientSecret: `g${i}` }, { source: '10.1.1.1' })),
  );
  const looked = all.filter((v) => !v.ok && v.code === 'E_AUTH_INVALID').length;
  assert.equal(looked, 4, 'the burst and the one failure that starts the wait');
  assert.equal(all.length - looked, f.ca.unauthenticated.count('login', 'E_RATE_LIMITED'));
  // Concurrent correct logins from one source are all served (in turns), none refused.
  const ok = await Promise.all(
    Array.from({ length: 20 }, () => f.ca.login({ clientId: id, clientSecret: secret }, { source: '10.2.2.2' })),
  );
  assert.ok(ok.every((v) => v.ok));
});

test('access tokens: missing, unknown, expired, revoked, identity revoked', async () => {
  const f = await newAuthority();
  const acme = await newOrg(f, 'acme');
  refused(f.ca.authenticate(undefined), 'E_AUTH_REQUIRED');
  refused(f.ca.authenticate('A'.repeat(43)), 'E_AUTH_INVALID');
  const s = unwrap(
    await f.ca.login({ clientId: acme.memberCreds.clientId, clientSecret: acme.memberCreds.clientSecret }),
  );
  assert.ok(f.ca.authenticate(s.accessToken).ok);
  f.clock.advance(15 * 60);
  refused(f.ca.authenticate(s.accessToken), 'E_TOKEN_EXPIRED');
  const s2 = unwrap(
    await f.ca.login({ clientId: acme.memberCreds.clientId, clientSecret: acme.memberCreds.clientSecret }),
  );
  assert.ok(f.ca.revokeAccessToken(s2.accessToken));
  refused(f.ca.authenticate(s2.accessToken), 'E_TOKEN_REVOKED');
  const s3 = unwrap(
    await f.ca.login({ clientId: acme.memberCreds.clientId, clientSecret: acme.memberCreds.clientSecret }),
  );
  unwrap(f.ca.revoke(acme.orgAdmin, { kind: 'identity', orgId: 'acme', subject: 'alice' }));
  refused(f.ca.authenticate(s3.accessToken), 'E_TOKEN_REVOKED', 'revoking the identity ends its tokens');
});

test('roles: members and org-admins cannot do admin things', async () => {
  const { f, acme } = await twoOrgs();
  refused(f.ca.createOrg(acme.orgAdmin, 'evil'), 'E_FORBIDDEN');
  refused(f.ca.deleteOrg(acme.orgAdmin, 'acme'), 'E_FORBIDDEN');
  refused(await f.ca.createIdentity(acme.member, 'acme', { identityId: 'x', role: 'member' }), 'E_FORBIDDEN');
  refused(f.ca.createEnrollmentToken(acme.member, 'acme', { kind: 'gateway', subjectId: 'gw2' }), 'E_FORBIDDEN');
  refused(f.ca.createEnrollmentToken(acme.orgAdmin, null, { kind: 'proxy', subjectId: 'p9' }), 'E_FORBIDDEN');
  refused(
    f.ca.addPolicy(acme.member, 'acme', {
      subject: 'identity:alice',
      gateways: ['*'],
      targets: ['*:*'],
      modes: ['tcp'],
    }),
    'E_FORBIDDEN',
  );
  refused(f.ca.enrollGateway(acme.member, gatewayReq('acme', 'gw2')), 'E_FORBIDDEN');
  const pk = clientKeys();
  const instanceProxy = {
    scope: 'instance' as const,
    proxyId: 'p1',
    hostnames: ['p1.example.test'],
    sshAddress: 'p1.example.test:22',
    tlsAddress: 'p1.example.test:443',
    csr: pk.csr,
    sshPublicKey: pk.sshPublicKey,
  };
  refused(f.ca.enrollProxy(acme.orgAdmin, instanceProxy), 'E_FORBIDDEN', 'org-admins cannot enroll instance proxies');
  refused(f.ca.enrollProxy(null, instanceProxy), 'E_AUTH_REQUIRED');
  refused(f.ca.revoke(acme.member, { kind: 'gateway', orgId: 'acme', subject: 'gw1' }), 'E_FORBIDDEN');
  refused(f.ca.createOrg(f.admin, 'acme'), 'E_CONFLICT');
  refused(await f.ca.createIdentity(f.admin, 'acme', { identityId: 'alice', role: 'member' }), 'E_CONFLICT');
  refused(await f.ca.createIdentity(f.admin, 'nope', { identityId: 'x', role: 'member' }), 'E_NOT_FOUND');
});

test("org isolation: org B's admin and members cannot act on org A", async () => {
  const { f, globex } = await twoOrgs();
  const b = globex.orgAdmin;
  refused(await f.ca.createIdentity(b, 'acme', { identityId: 'spy', role: 'org-admin' }), 'E_ORG_MISMATCH');
  refused(f.ca.createEnrollmentToken(b, 'acme', { kind: 'gateway', subjectId: 'gw9' }), 'E_ORG_MISMATCH');
  refused(
    f.ca.addPolicy(b, 'acme', { subject: 'identity:boss', gateways: ['*'], targets: ['*:*'], modes: ['tcp'] }),
    'E_ORG_MISMATCH',
  );
  refused(f.ca.listPolicies(b, 'acme'), 'E_ORG_MISMATCH');
  refused(f.ca.deletePolicy(b, 'acme', 'r1'), 'E_ORG_MISMATCH');
  refused(f.ca.enrollGateway(b, gatewayReq('acme', 'gw1')), 'E_ORG_MISMATCH', 'claiming org A gateway name');
  refused(f.ca.revoke(b, { kind: 'gateway', orgId: 'acme', subject: 'gw1' }), 'E_ORG_MISMATCH');
  refused(
    f.ca.revoke(b, { kind: 'gateway', orgId: 'acme', subject: 'nonexistent' }),
    'E_ORG_MISMATCH',
    'no existence oracle',
  );
  refused(f.ca.listGateways(globex.member, 'acme'), 'E_ORG_MISMATCH');
  const grant = {
    orgId: 'acme',
    gatewayId: 'gw1',
    target: { host: 'db', port: 5432 },
    mode: 'tcp' as const,
    outerCsr: csrFor().csr,
    innerCsr: csrFor().csr,
  };
  refused(f.ca.issueGrant(globex.member, grant), 'E_ORG_MISMATCH');
  refused(f.ca.issueGrant(f.admin, grant), 'E_FORBIDDEN', 'the admin is not an org identity');
  // A token of org B cannot enroll into org A.
  const bToken = unwrap(f.ca.createEnrollmentToken(b, 'globex', { kind: 'gateway', subjectId: 'gw1' }));
  refused(f.ca.enrollGateway(null, gatewayReq('acme', 'gw1', { enrollmentToken: bToken.token })), 'E_ORG_MISMATCH');
});

test('enrollment tokens: one-time, expiring, bound to kind, org and subject', async () => {
  const { f, acme } = await twoOrgs();
  const t = () =>
    unwrap(f.ca.createEnrollmentToken(acme.orgAdmin, 'acme', { kind: 'gateway', subjectId: 'gw2', ttlSeconds: 60 }))
      .token;
  const tok = t();
  assert.ok(f.ca.enrollGateway(null, gatewayReq('acme', 'gw2', { enrollmentToken: tok })).ok);
  refused(f.ca.enrollGateway(null, gatewayReq('acme', 'gw2', { enrollmentToken: tok })), 'E_TOKEN_USED');
  const late = t();
  f.clock.advance(61);
  refused(f.ca.enrollGateway(null, gatewayReq('acme', 'gw2', { enrollmentToken: late })), 'E_TOKEN_EXPIRED');
  refused(
    f.ca.enrollGateway(null, gatewayReq('acme', 'gw3', { enrollmentToken: t() })),
    'E_FORBIDDEN',
    'other subject',
  );
  const pk = clientKeys();
  const asProxy = f.ca.enrollProxy(null, {
    scope: 'org',
    orgId: 'acme',
    proxyId: 'gw2',
    hostnames: ['x.example.test'],
    sshAddress: 'x.example.test:22',
    tlsAddress: 'x.example.test:443',
    csr: pk.csr,
    sshPublicKey: pk.sshPublicKey,
    enrollmentToken: t(),
  });
  refused(asProxy, 'E_FORBIDDEN', 'a gateway token does not enroll a proxy');
  refused(f.ca.enrollGateway(null, gatewayReq('acme', 'gw2', { enrollmentToken: 'x'.repeat(43) })), 'E_AUTH_INVALID');
  // A token refused for a bad CSR is not spent.
  const keep = t();
  refused(
    f.ca.enrollGateway(null, { ...gatewayReq('acme', 'gw2'), csr: 'not a csr', enrollmentToken: keep }),
    'E_CSR_INVALID',
  );
  assert.ok(f.ca.enrollGateway(null, gatewayReq('acme', 'gw2', { enrollmentToken: keep })).ok);
  refused(
    f.ca.createEnrollmentToken(acme.orgAdmin, 'acme', { kind: 'gateway', subjectId: 'g', ttlSeconds: 8 * 24 * 3600 }),
    'E_REQUEST_INVALID',
  );
});

test('bad and mismatched CSRs and SSH keys are refused', async () => {
  const { f, acme } = await twoOrgs();
  const base = gatewayReq('acme', 'gw5');
  refused(f.ca.enrollGateway(acme.orgAdmin, { ...base, csr: 'garbage' }), 'E_CSR_INVALID');
  // A CSR whose signature was made by another key than the one it names: no proof of possession.
  const a = generateKeyPairSync('ecdsa-p256');
  const b = generateKeyPairSync('ecdsa-p256');
  const info = der.seq(der.uint(0), buildName({ commonName: 'x' }), der.raw(spkiDer(a.publicKey)), der.ctx(0, []));
  const mismatched = toPem(signStructure(info, b.privateKey), 'CERTIFICATE REQUEST');
  assert.ok(createCsrPem({ privateKey: a.privateKey }).length > 0);
  const r = f.ca.enrollGateway(acme.orgAdmin, { ...base, csr: mismatched });
  refused(r, 'E_CSR_INVALID', 'CSR signed by another key');
  refused(f.ca.enrollGateway(acme.orgAdmin, { ...base, sshPublicKey: 'ssh-ed25519 AAAA' }), 'E_REQUEST_INVALID');
  const gw1 = f.ca.enrollGateway(acme.orgAdmin, gatewayReq('acme', 'gw1'));
  const certLine = unwrap(gw1).sshCertificates[0]!.certificate;
  refused(
    f.ca.enrollGateway(acme.orgAdmin, { ...base, sshPublicKey: certLine }),
    'E_KEY_UNSUPPORTED',
    'a cert as a key',
  );
  assert.equal(f.ca.store.enrollment.gateway('acme', 'gw5'), undefined, 'nothing recorded for refused enrollments');
});

test('grants: policy denial, unknown or revoked gateway, ttl above the limit, bad CSR', async () => {
  const { f, acme } = await twoOrgs();
  const req = (over: Record<string, unknown> = {}) => ({
    orgId: 'acme',
    gatewayId: 'gw1',
    target: { host: 'db.internal', port: 5432 } as { host: string; port: number },
    mode: 'tcp' as const,
    outerCsr: csrFor().csr,
    innerCsr: csrFor().csr,
    ...over,
  });
  refused(f.ca.issueGrant(acme.member, req()), 'E_POLICY_DENIED', 'deny by default');
  unwrap(
    f.ca.addPolicy(acme.orgAdmin, 'acme', {
      id: 'r1',
      subject: 'group:dba',
      gateways: ['gw1'],
      targets: ['db.internal:5432'],
      modes: ['tcp'],
    }),
  );
  assert.ok(f.ca.issueGrant(acme.member, req()).ok);
  refused(f.ca.issueGrant(acme.member, req({ target: { host: 'db.internal', port: 22 } })), 'E_POLICY_DENIED');
  refused(f.ca.issueGrant(acme.member, req({ mode: 'http' })), 'E_POLICY_DENIED');
  refused(f.ca.issueGrant(acme.orgAdmin, req()), 'E_POLICY_DENIED', 'the org-admin is not in group dba');
  refused(f.ca.issueGrant(acme.member, req({ gatewayId: 'gw9' })), 'E_NOT_FOUND');
  refused(f.ca.issueGrant(acme.member, req({ ttlSeconds: 7200 })), 'E_REQUEST_INVALID');
  refused(f.ca.issueGrant(acme.member, req({ innerCsr: 'x' })), 'E_CSR_INVALID');
  refused(
    f.ca.addPolicy(acme.orgAdmin, 'acme', {
      id: 'r1',
      subject: 'group:dba',
      gateways: ['gw1'],
      targets: ['db:1'],
      modes: ['tcp'],
    }),
    'E_CONFLICT',
  );
  refused(
    f.ca.addPolicy(acme.orgAdmin, 'acme', { subject: 'nobody', gateways: ['gw1'], targets: ['db:1'], modes: ['tcp'] }),
    'E_REQUEST_INVALID',
  );
  unwrap(f.ca.deletePolicy(acme.orgAdmin, 'acme', 'r1'));
  refused(f.ca.issueGrant(acme.member, req()), 'E_POLICY_DENIED', 'rule deleted');
  unwrap(
    f.ca.addPolicy(acme.orgAdmin, 'acme', {
      subject: 'group:dba',
      gateways: ['gw1'],
      targets: ['db.internal:5432'],
      modes: ['tcp'],
    }),
  );
  unwrap(f.ca.revoke(acme.orgAdmin, { kind: 'gateway', orgId: 'acme', subject: 'gw1' }));
  refused(f.ca.issueGrant(acme.member, req()), 'E_SUBJECT_REVOKED');
  refused(f.ca.enrollGateway(acme.orgAdmin, gatewayReq('acme', 'gw1')), 'E_SUBJECT_REVOKED', 'no re-enrollment');
});

export type { Fixture };
