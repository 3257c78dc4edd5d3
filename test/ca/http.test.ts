/** The CA API over HTTPS: each route through the pinned client, and each refusal with its status and code. */
import assert from 'node:assert/strict';
import { request } from 'node:https';
import { after, before, test } from 'node:test';
import { connect } from 'node:tls';
import { type CaServer, startCaServer } from '../../lib/ca/http.js';
import { ErrorCodes, unwrap } from '../../lib/errors/codes.js';
import { CaApiError, CaClient } from '../../lib/protocol/ca-client.js';
import { clientKeys, csrFor, type Fixture, newAuthority } from './helpers.js';

let f: Fixture;
let server: CaServer;
let fingerprint: string;
let anon: CaClient;
let admin: CaClient;

before(async () => {
  f = await newAuthority({ rateLimits: { login: { burst: 4, refillMs: 60_000, maxDelayMs: 600_000 } } });
  const creds = f.ca.issueApiServerCertificate({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  fingerprint = creds.fingerprint256;
  server = await startCaServer({
    authority: f.ca,
    host: '127.0.0.1',
    port: 0,
    tls: creds,
    headersTimeoutMs: 1000,
    requestTimeoutMs: 2000,
  });
  anon = new CaClient({ url: server.url, fingerprint, now: f.clock.now });
  admin = (await anon.loginAs({ clientId: f.adminClientId, clientSecret: f.adminClientSecret })).client;
});
after(() => server.drain(Date.now() + 2000));

interface Raw {
  status: number;
  headers: Record<string, string | string[] | undefined>;
  body: { code?: string; message?: string } & Record<string, unknown>;
}

function raw(
  method: string,
  path: string,
  opts: { body?: string | Buffer; headers?: Record<string, string>; chunks?: Buffer[] } = {},
): Promise<Raw> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: server.port,
        method,
        path,
        rejectUnauthorized: false,
        agent: false,
        headers: opts.headers ?? {},
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () => {
          const text = Buffer.concat(parts).toString();
          resolve({ status: res.statusCode ?? 0, headers: res.headers, body: text ? JSON.parse(text) : {} });
        });
      },
    );
    req.on('error', reject);
    if (opts.chunks) {
      // One chunk at a time, stopping once the server has answered (it answers 413 without reading the rest).
      let answered = false;
      req.once('response', () => {
        answered = true;
      });
      const chunks = [...opts.chunks];
      const next = () => {
        const c = chunks.shift();
        if (answered) return;
        if (!c) req.end();
        else req.write(c, () => setTimeout(next, 5));
      };
      next();
    } else req.end(opts.body);
  });
}

async function rejects(p: Promise<unknown>, status: number, code: string): Promise<void> {
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof CaApiError, String(err));
    assert.equal(err.code, code, err.message);
    assert.equal(err.status, status, err.message);
    // The code's description once, not twice ("…: …: reason").
    const generic = ErrorCodes[err.code];
    assert.equal(err.message.split(generic).length - 1, 1, `description repeated: ${err.message}`);
    return true;
  });
}

test('public routes: health and CA bundle', async () => {
  assert.deepEqual(await anon.health(), { ok: true, version: '0.1.0' });
  const bundle = await anon.caBundle();
  assert.equal(bundle.trustDomain, 'example.test');
  assert.match(bundle.instance.proxyPkiServerCaCert, /BEGIN CERTIFICATE/);
  assert.match(bundle.instance.proxySshClientCaKey, /^ssh-ed25519 /);
});

test('every route succeeds for the right caller', async () => {
  assert.equal((await admin.createOrg('acme')).orgId, 'acme');
  assert.deepEqual(
    (await admin.listOrgs()).orgs.map((o) => o.orgId),
    ['acme'],
  );
  const boss = await admin.createIdentity('acme', { identityId: 'boss', role: 'org-admin' });
  const alice = await admin.createIdentity('acme', { identityId: 'alice', role: 'member', groups: ['dba'] });
  const orgAdmin = (await anon.loginAs({ clientId: boss.clientId, clientSecret: boss.clientSecret })).client;
  const member = (await anon.loginAs({ clientId: alice.clientId, clientSecret: alice.clientSecret })).client;
  const token = await orgAdmin.createEnrollmentToken('acme', { kind: 'gateway', subjectId: 'gw1' });
  const gk = clientKeys();
  const gw = await anon.enrollGateway({
    orgId: 'acme',
    gatewayId: 'gw1',
    csr: gk.csr,
    sshPublicKey: gk.sshPublicKey,
    enrollmentToken: token.token,
  });
  assert.equal(gw.gatewayUri, 'spiffe://example.test/org/acme/gateway/gw1');
  const ptoken = await admin.createInstanceEnrollmentToken({ kind: 'proxy', subjectId: 'p1' });
  const pk = clientKeys();
  const px = await anon.enrollProxy({
    scope: 'instance',
    proxyId: 'p1',
    hostnames: ['localhost'],
    sshAddress: '127.0.0.1:2222',
    tlsAddress: '127.0.0.1:8443',
    csr: pk.csr,
    sshPublicKey: pk.sshPublicKey,
    enrollmentToken: ptoken.token,
  });
  assert.equal(px.proxyUri, 'spiffe://example.test/instance/proxy/p1');
  const ok2 = clientKeys();
  await orgAdmin.enrollProxy({
    scope: 'org',
    orgId: 'acme',
    proxyId: 'p2',
    hostnames: ['p2.example.test'],
    sshAddress: 'p2.example.test:22',
    tlsAddress: 'p2.example.test:443',
    csr: ok2.csr,
    sshPublicKey: ok2.sshPublicKey,
  });
  assert.deepEqual(
    (await member.listGateways('acme')).gateways.map((g) => g.gatewayId),
    ['gw1'],
  );
  assert.deepEqual((await member.listProxies()).proxies.map((p) => p.proxyId).sort(), ['p1', 'p2']);
  const rule = await orgAdmin.addPolicy('acme', {
    subject: 'group:dba',
    gateways: ['gw1'],
    targets: ['10.0.0.0/8:5432'],
    modes: ['tcp'],
  });
  assert.equal((await member.listPolicies('acme')).rules.length, 1);
  const grant = await member.issueGrant({
    orgId: 'acme',
    gatewayId: 'gw1',
    target: { host: '10.1.2.3', port: 5432 },
    mode: 'tcp',
    outerCsr: csrFor().csr,
    innerCsr: csrFor().csr,
  });
  assert.deepEqual(Object.keys(grant.outerCertificateChains).sort(), ['instance', 'org']);
  const next = clientKeys();
  const renewed = await anon.renewGateway(
    { csr: next.csr, sshPublicKey: next.sshPublicKey },
    { certificate: gw.tlsCertificateChain, privateKey: gk.tlsKey },
  );
  assert.equal(renewed.gatewayUri, gw.gatewayUri);
  const prenewed = await anon.renewProxy(
    { csr: clientKeys().csr, sshPublicKey: pk.sshPublicKey },
    { certificate: px.tlsCertificateChain, privateKey: pk.tlsKey },
  );
  assert.equal(prenewed.proxyUri, px.proxyUri);
  assert.deepEqual(await orgAdmin.deletePolicy('acme', rule.id), { deleted: rule.id });
  const { seq } = await orgAdmin.revoke({ kind: 'grant', subject: grant.grantId });
  const byToken = await member.revocations(0, { feedKey: gw.revocationFeedKey });
  assert.equal(byToken.seq, seq);
  const byCert = await anon.revocations(0, {
    current: { certificate: renewed.tlsCertificateChain, privateKey: next.tlsKey },
    feedKey: renewed.revocationFeedKey,
  });
  assert.deepEqual(
    byCert.entries.filter((e) => e.kind !== 'certificate').map((e) => e.subject),
    [grant.grantId],
  );
  // That read was the successor's first use: the predecessor's TLS and two SSH certificates were retired.
  assert.equal(byCert.entries.filter((e) => e.kind === 'certificate' && e.orgId === 'acme').length, 3);
  const audit = await admin.audit(0);
  assert.ok(audit.entries.some((e) => e.action === 'grant.issue' && e.outcome === 'ok'));
  assert.equal((await admin.deleteOrg('acme')).orgId, 'acme');
  await rejects(member.listPolicies('acme'), 401, 'E_TOKEN_REVOKED');
});

test('authentication refusals: no token, malformed header, unknown, expired, revoked', async () => {
  await rejects(anon.listOrgs(), 401, 'E_AUTH_REQUIRED');
  const bad = await raw('GET', '/v1/orgs', { headers: { authorization: 'Basic abc' } });
  assert.deepEqual([bad.status, bad.body.code], [401, 'E_AUTH_INVALID']);
  await rejects(anon.withToken('A'.repeat(43)).listOrgs(), 401, 'E_AUTH_INVALID');
  const session = await anon.login({ clientId: f.adminClientId, clientSecret: f.adminClientSecret });
  f.ca.revokeAccessToken(session.accessToken);
  await rejects(anon.withToken(session.accessToken).listOrgs(), 401, 'E_TOKEN_REVOKED');
  const later = await anon.login({ clientId: f.adminClientId, clientSecret: f.adminClientSecret });
  f.clock.advance(16 * 60);
  await rejects(anon.withToken(later.accessToken).listOrgs(), 401, 'E_TOKEN_EXPIRED');
  admin = (await anon.loginAs({ clientId: f.adminClientId, clientSecret: f.adminClientSecret })).client;
});

test('login refusals: wrong secret 401, then 429 with Retry-After once the source is over its budget', async () => {
  const id = await admin.createOrg('lim').then(() => admin.createIdentity('lim', { identityId: 'x', role: 'member' }));
  const auditBefore = f.ca.store.audit.since(0, 10_000).length;
  // The burst (4), then one more failure that starts the source's first wait.
  for (let i = 0; i < 5; i++)
    await rejects(anon.login({ clientId: id.clientId, clientSecret: 'wrong' }), 401, 'E_AUTH_INVALID');
  const limited = await raw('POST', '/v1/auth/login', {
    body: JSON.stringify({ clientId: id.clientId, clientSecret: id.clientSecret }),
  });
  assert.deepEqual([limited.status, limited.body.code], [429, 'E_RATE_LIMITED']);
  assert.equal(limited.headers['retry-after'], '60');
  assert.equal(f.ca.store.audit.since(0, 10_000).length, auditBefore, 'no audit row for a caller that proved nothing');
  assert.equal(f.ca.unauthenticated.count('login', 'E_AUTH_INVALID'), 5);
  assert.equal(f.ca.unauthenticated.count('login', 'E_RATE_LIMITED'), 1);
  f.clock.advance(61); // the wait is over: this source (127.0.0.1) may log in again
  await anon.login({ clientId: id.clientId, clientSecret: id.clientSecret });
});

test('body refusals: oversized (declared and streamed), malformed JSON, unknown fields, wrong types, body on GET', async () => {
  const big = await raw('POST', '/v1/auth/login', { body: Buffer.alloc(70 * 1024, 0x20) });
  assert.deepEqual([big.status, big.body.code], [413, 'E_REQUEST_TOO_LARGE']);
  const streamed = await raw('POST', '/v1/auth/login', {
    headers: { 'transfer-encoding': 'chunked' },
    chunks: Array.from({ length: 20 }, () => Buffer.alloc(8 * 1024, 0x20)),
  });
  assert.deepEqual([streamed.status, streamed.body.code], [413, 'E_REQUEST_TOO_LARGE']);
  const malformed = await raw('POST', '/v1/auth/login', { body: '{"clientId": ' });
  assert.deepEqual([malformed.status, malformed.body.code], [400, 'E_REQUEST_MALFORMED']);
  const unknown = await raw('POST', '/v1/auth/login', {
    body: JSON.stringify({ clientId: 'a', clientSecret: 'b', admin: true }),
  });
  assert.deepEqual([unknown.status, unknown.body.code], [400, 'E_REQUEST_INVALID']);
  assert.match(unknown.body.message ?? '', /\$\.admin: unknown field/);
  const wrongType = await raw('POST', '/v1/auth/login', { body: JSON.stringify({ clientId: 1, clientSecret: 'b' }) });
  assert.deepEqual([wrongType.status, wrongType.body.code], [400, 'E_REQUEST_INVALID']);
  const getBody = await raw('GET', '/v1/health', { body: '{}', headers: { 'content-length': '2' } });
  assert.deepEqual([getBody.status, getBody.body.code], [400, 'E_REQUEST_INVALID']);
  // The schema is checked before authentication: a bad body without a token is a 400, not a 401.
  const first = await raw('POST', '/v1/orgs', { body: JSON.stringify({ orgId: '../etc' }) });
  assert.deepEqual([first.status, first.body.code], [400, 'E_REQUEST_INVALID']);
  const grantTarget = await raw('POST', '/v1/grants', {
    body: JSON.stringify({
      orgId: 'a',
      gatewayId: 'g',
      target: { host: 'h', port: 1, name: 'n' },
      mode: 'tcp',
      outerCsr: 'x',
      innerCsr: 'y',
    }),
  });
  assert.deepEqual([grantTarget.status, grantTarget.body.code], [400, 'E_REQUEST_INVALID']);
});

test('routing refusals: unknown path 404, wrong method 405, bad path parameter 404', async () => {
  const nf = await raw('GET', '/v1/nope');
  assert.deepEqual([nf.status, nf.body.code], [404, 'E_NOT_FOUND']);
  const method = await raw('PUT', '/v1/orgs');
  assert.equal(method.status, 405);
  assert.match(String(method.headers['allow']), /GET/);
  const param = await raw('DELETE', '/v1/orgs/..');
  assert.equal(param.status, 404);
});

test('decision refusals over HTTP: used enrollment token, policy denial, wrong org, bad CSR', async () => {
  await admin.createOrg('a1');
  await admin.createOrg('b1');
  const bossA = await admin.createIdentity('a1', { identityId: 'boss', role: 'org-admin' });
  const bossB = await admin.createIdentity('b1', { identityId: 'boss', role: 'org-admin' });
  const memberA = await admin.createIdentity('a1', { identityId: 'm', role: 'member' });
  const a = (await anon.loginAs({ clientId: bossA.clientId, clientSecret: bossA.clientSecret })).client;
  const b = (await anon.loginAs({ clientId: bossB.clientId, clientSecret: bossB.clientSecret })).client;
  const m = (await anon.loginAs({ clientId: memberA.clientId, clientSecret: memberA.clientSecret })).client;
  const t = await a.createEnrollmentToken('a1', { kind: 'gateway', subjectId: 'gw' });
  const k = clientKeys();
  const req = { orgId: 'a1', gatewayId: 'gw', csr: k.csr, sshPublicKey: k.sshPublicKey, enrollmentToken: t.token };
  await anon.enrollGateway(req);
  await rejects(anon.enrollGateway(req), 401, 'E_TOKEN_USED');
  await rejects(b.createEnrollmentToken('a1', { kind: 'gateway', subjectId: 'x' }), 403, 'E_ORG_MISMATCH');
  await rejects(b.revoke({ kind: 'gateway', orgId: 'a1', subject: 'gw' }), 403, 'E_ORG_MISMATCH');
  await rejects(
    m.issueGrant({
      orgId: 'a1',
      gatewayId: 'gw',
      target: { name: 'db' },
      mode: 'tcp',
      outerCsr: csrFor().csr,
      innerCsr: csrFor().csr,
    }),
    403,
    'E_POLICY_DENIED',
  );
  const { enrollmentToken: _t, ...withoutToken } = req;
  await rejects(
    a.enrollGateway({
      ...withoutToken,
      gatewayId: 'gw2',
      csr: '-----BEGIN CERTIFICATE REQUEST-----\nAAAA\n-----END CERTIFICATE REQUEST-----',
    }),
    400,
    'E_CSR_INVALID',
  );
});

test('the client checks the pin before sending anything', async () => {
  const before = f.ca.store.audit.since(0, 100_000).length;
  const wrong = new CaClient({ url: server.url, fingerprint: '00'.repeat(32) });
  await rejects(wrong.login({ clientId: f.adminClientId, clientSecret: f.adminClientSecret }), 0, 'E_CERT_UNTRUSTED');
  assert.equal(f.ca.store.audit.since(0, 100_000).length, before, 'the server saw no login');
  await rejects(new CaClient({ url: 'https://127.0.0.1:1', fingerprint }).health(), 0, 'E_CA_UNREACHABLE');
  assert.throws(() => new CaClient({ url: 'http://127.0.0.1:1', fingerprint }), /https/);
});

test('slow input: a client that never finishes its headers is disconnected', async () => {
  const socket = connect({ host: '127.0.0.1', port: server.port, rejectUnauthorized: false });
  await new Promise<void>((resolve) => socket.once('secureConnect', () => resolve()));
  socket.write('POST /v1/auth/login HTTP/1.1\r\nHost: x\r\n');
  const closed = await new Promise<boolean>((resolve) => {
    const timer = setTimeout(() => resolve(false), 20_000);
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(true);
    });
    socket.on('data', () => {});
    socket.on('error', () => {});
  });
  assert.ok(closed, 'server closed the slow connection');
});

export { unwrap };
