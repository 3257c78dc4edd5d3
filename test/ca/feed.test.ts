/** The revocation feed as a long-poll over HTTPS: held reads, wake-ups, the gateway's proxy list, the bounds. */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { request } from 'node:https';
import { after, before, test } from 'node:test';
import { Authority } from '../../lib/ca/authority.js';
import { type CaServer, startCaServer } from '../../lib/ca/http.js';
import { unwrap } from '../../lib/errors/codes.js';
import {
  type GatewayEnrollResponse,
  type ProxyEnrollRequest,
  proxyListVersion,
  type RevocationFeed,
  verifyRevocationFeed,
} from '../../lib/protocol/api.js';
import { CaApiError, CaClient, type CurrentCredentials } from '../../lib/protocol/ca-client.js';
import { CA_TEST_POSTGRES, freshDatabase } from '../helpers/postgres.js';
import { CHEAP_SCRYPT, clientKeys, type Fixture, newAuthority, newOrg, TD, TempDir } from './helpers.js';

let f: Fixture;
let server: CaServer;
let fingerprint: string;
let admin: CaClient;
let adminToken: string;
let anon: CaClient;

before(async () => {
  f = await newAuthority();
  const creds = f.ca.issueApiServerCertificate({ dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] });
  fingerprint = creds.fingerprint256;
  // Short request and socket bounds: a held read must outlive them (it has its own bound).
  server = await startCaServer({
    authority: f.ca,
    host: '127.0.0.1',
    port: 0,
    tls: creds,
    headersTimeoutMs: 500,
    requestTimeoutMs: 1000,
  });
  anon = new CaClient({ url: server.url, fingerprint, now: f.clock.now });
  const login = await anon.loginAs({ clientId: f.adminClientId, clientSecret: f.adminClientSecret });
  admin = login.client;
  adminToken = login.session.accessToken;
  await newOrg(f, 'acme');
  await newOrg(f, 'globex');
});
after(() => server.drain(Date.now() + 2000));

/** Polls until `cond` holds (within 10 s). */
async function until(cond: () => boolean, what: string): Promise<void> {
  const end = Date.now() + 10_000;
  while (!cond()) {
    if (Date.now() > end) assert.fail(`not within 10 s: ${what}`);
    await new Promise((r) => setTimeout(r, 20));
  }
}

function rawGet(path: string, token: string): Promise<{ status: number; body: Record<string, unknown> }> {
  return new Promise((resolve, reject) => {
    const req = request(
      {
        host: '127.0.0.1',
        port: server.port,
        path,
        rejectUnauthorized: false,
        agent: false,
        headers: { authorization: `Bearer ${token}` },
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (c: Buffer) => parts.push(c));
        res.on('end', () =>
          resolve({ status: res.statusCode ?? 0, body: JSON.parse(Buffer.concat(parts).toString()) }),
        );
      },
    );
    req.on('error', reject);
    req.end();
  });
}

function proxyRequest(proxyId: string, scope: 'instance' | 'org', orgId?: string): ProxyEnrollRequest {
  const k = clientKeys();
  return {
    scope,
    ...(orgId ? { orgId } : {}),
    proxyId,
    hostnames: [`${proxyId}.example.test`],
    sshAddress: `${proxyId}.example.test:22`,
    tlsAddress: `${proxyId}.example.test:443`,
    csr: k.csr,
    sshPublicKey: k.sshPublicKey,
  };
}

async function enrolledGateway(
  orgId: string,
  gatewayId: string,
): Promise<{ bundle: GatewayEnrollResponse; current: CurrentCredentials }> {
  const k = clientKeys();
  const bundle = await admin.enrollGateway({ orgId, gatewayId, csr: k.csr, sshPublicKey: k.sshPublicKey });
  return { bundle, current: { certificate: bundle.tlsCertificateChain, privateKey: k.tlsKey } };
}

const latest = async () => (await admin.revocations(0)).seq;

test('bad wait or proxies parameters are refused with E_REQUEST_INVALID', async () => {
  for (const q of ['wait=31', 'wait=abc', 'wait=-1', 'wait=1.5', 'wait=', 'wait=9999', 'proxies=a%20b', 'proxies=']) {
    const r = await rawGet(`/v1/revocations?since=0&${q}`, adminToken);
    assert.equal(r.status, 400, q);
    assert.equal(r.body['code'], 'E_REQUEST_INVALID', q);
  }
  const okRead = await rawGet('/v1/revocations?since=0&wait=0', adminToken);
  assert.equal(okRead.status, 200);
});

test('a waiting read returns soon after a revoke made through the API, with the new entry', async () => {
  const since = await latest();
  unwrap(await f.ca.createIdentity(f.admin, 'acme', { identityId: 'bob', role: 'member' }));
  const started = Date.now();
  const read = admin.revocations(since, { waitSec: 25, feedKey: f.ca.caBundle().revocationFeedKey });
  await until(() => server.held === 1, 'the read is held');
  await admin.revoke({ kind: 'identity', orgId: 'acme', subject: 'bob' });
  const feed = await read;
  assert.ok(Date.now() - started < 10_000, 'answered long before the end of the wait');
  assert.deepEqual(
    feed.entries.map((e) => `${e.kind}:${e.subject}`),
    ['identity:bob'],
  );
  await until(() => server.held === 0 && f.ca.changes.listenerCount === 0, 'nothing left held');
});

test('a read with nothing new ends with the same empty answer after its wait (past the request timeout)', async () => {
  const since = await latest();
  const started = Date.now();
  const feed = await admin.revocations(since, { waitSec: 2 });
  assert.ok(Date.now() - started >= 1900, 'it waited');
  assert.equal(feed.entries.length, 0);
  assert.equal(feed.seq, since);
  assert.equal(feed.proxies, undefined, 'no proxy list for an admin reader');
});

test('a gateway gets its proxy list at once when its version differs, and is held when it matches', async () => {
  unwrap(f.ca.enrollProxy(f.admin, proxyRequest('inst1', 'instance')));
  unwrap(f.ca.enrollProxy(f.admin, proxyRequest('acme1', 'org', 'acme')));
  unwrap(f.ca.enrollProxy(f.admin, proxyRequest('globex1', 'org', 'globex')));
  const gw = await enrolledGateway('acme', 'gw-list');
  const feedKey = gw.bundle.revocationFeedKey;
  const since = await latest();
  const ids = (feed: RevocationFeed) => feed.proxies?.list.map((p) => `${p.scope}/${p.proxyId}`).sort();

  const started = Date.now();
  const fresh = await anon.revocations(since, { current: gw.current, feedKey, waitSec: 25 });
  assert.ok(Date.now() - started < 5_000, 'no version held: answered at once');
  assert.deepEqual(ids(fresh), ['instance/inst1', 'org/acme1']);
  assert.equal(fresh.proxies?.version, proxyListVersion(fresh.proxies!.list));
  assert.deepEqual(
    gw.bundle.proxies.map((p) => p.proxyId).sort(),
    ['acme1', 'inst1'],
    'the enrollment bundle follows the same rule',
  );

  const stale = await anon.revocations(since, { current: gw.current, feedKey, waitSec: 25, proxiesVersion: 'old' });
  assert.ok(Date.now() - started < 10_000, 'another version: answered at once');
  assert.deepEqual(ids(stale), ['instance/inst1', 'org/acme1']);

  // Holding the current version: held until a proxy enrolls; the signed answer names it.
  const held = anon.revocations(since, {
    current: gw.current,
    feedKey,
    waitSec: 25,
    proxiesVersion: fresh.proxies!.version,
  });
  await until(() => server.held === 1, 'the gateway read is held');
  // Another org's proxy wakes the read, which looks again and waits on.
  unwrap(f.ca.enrollProxy(f.admin, proxyRequest('globex2', 'org', 'globex')));
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(server.held, 1, "another org's proxy does not answer the read");
  await admin.enrollProxy(proxyRequest('acme2', 'org', 'acme'));
  const grown = await held;
  assert.deepEqual(ids(grown), ['instance/inst1', 'org/acme1', 'org/acme2']);
  assert.ok(verifyRevocationFeed(grown, feedKey).ok, 'the list is signed with the feed');
  const forged = { ...grown, proxies: { ...grown.proxies!, list: grown.proxies!.list.slice(1) } };
  assert.equal(verifyRevocationFeed(forged, feedKey).ok, false, 'a trimmed list breaks the signature');

  // Revoking a proxy: held read answered, the list no longer has it; the instance proxy goes for every org.
  const again = anon.revocations(grown.seq, {
    current: gw.current,
    feedKey,
    waitSec: 25,
    proxiesVersion: grown.proxies!.version,
  });
  await until(() => server.held === 1, 'held again');
  await admin.revoke({ kind: 'proxy', subject: 'inst1' });
  const shrunk = await again;
  assert.deepEqual(ids(shrunk), ['org/acme1', 'org/acme2']);
  assert.deepEqual(
    shrunk.entries.map((e) => `${e.kind}:${e.subject}`),
    ['proxy:inst1'],
  );
  const globexGw = await enrolledGateway('globex', 'gw-g');
  const globexFeed = await anon.revocations(0, { current: globexGw.current, feedKey });
  assert.deepEqual(ids(globexFeed), ['org/globex1', 'org/globex2'], "globex never sees acme's proxies");
  const pk = clientKeys();
  const px = await admin.enrollProxy({ ...proxyRequest('acme3', 'org', 'acme'), csr: pk.csr });
  const proxyReader = await anon.revocations(0, {
    current: { certificate: px.tlsCertificateChain, privateKey: pk.tlsKey },
    feedKey,
  });
  assert.equal(proxyReader.proxies, undefined, 'a proxy reader gets no proxy list');
  assert.ok(proxyReader.entries.length > 0);
});

test('a client that goes away mid-wait leaves no listener and no held slot', async () => {
  const since = await latest();
  const abort = new AbortController();
  const read = admin.revocations(since, { waitSec: 25, signal: abort.signal });
  await until(() => server.held === 1 && f.ca.changes.listenerCount === 1, 'held');
  abort.abort();
  await assert.rejects(read, (err: unknown) => err instanceof CaApiError && err.code === 'E_TIMEOUT');
  await until(() => server.held === 0 && f.ca.changes.listenerCount === 0, 'listener and slot freed');
});

test('held reads beyond the bound are refused with E_LIMIT; reads with news are still answered', async () => {
  const creds = f.ca.apiServerCredentials();
  const small = await startCaServer({ authority: f.ca, host: '127.0.0.1', port: 0, tls: creds, maxHeldRequests: 1 });
  try {
    const client = new CaClient({ url: small.url, fingerprint, now: f.clock.now, accessToken: adminToken });
    const since = await latest();
    const first = client.revocations(since, { waitSec: 25 });
    await until(() => small.held === 1, 'first held');
    await assert.rejects(
      client.revocations(since, { waitSec: 25 }),
      (err: unknown) => err instanceof CaApiError && err.code === 'E_LIMIT' && err.status === 503,
    );
    const behind = await client.revocations(0, { waitSec: 25 });
    assert.ok(behind.entries.length > 0, 'a reader that is behind needs no slot');
    // Draining answers the held read at once instead of after its wait.
    const started = Date.now();
    await small.drain(Date.now() + 25_000);
    assert.ok(Date.now() - started < 10_000, 'drain did not wait for the held read');
    const feed = await first;
    assert.equal(feed.entries.length, 0);
    assert.equal(f.ca.changes.listenerCount, 0);
  } finally {
    await small.drain(Date.now() + 1000).catch(() => {});
  }
});

test("another process's commit (the admin CLI on the same database) raises the change signal", async () => {
  const dir = new TempDir();
  try {
    const sealKey = randomBytes(32);
    const path = dir.file('ca.db');
    const daemon = Authority.open({ db: path, sealKey, trustDomain: TD, limits: { scrypt: CHEAP_SCRYPT } });
    unwrap(await daemon.init());
    const cli = Authority.open({ db: path, sealKey });
    let raised = 0;
    const off = daemon.changes.on(() => raised++);
    daemon.noticeExternalChanges();
    daemon.noticeExternalChanges();
    assert.equal(raised, 0, 'nothing changed');
    unwrap(cli.createOrg(cli.localAdmin(), 'initech'));
    daemon.noticeExternalChanges();
    assert.equal(raised, 1, 'the other connection committed');
    unwrap(daemon.createOrg(daemon.localAdmin(), 'own'));
    daemon.noticeExternalChanges();
    assert.equal(raised, 1, "the daemon's own commits raise the signal where they happen, not here");
    off();
    cli.close();
    daemon.close();
  } finally {
    dir.remove();
  }
});

test("a revocation another replica commits between the feed's two reads is carried by the next read, not skipped", async () => {
  // Two Authorities on one database: two CA replicas on PostgreSQL (when this suite runs there), or the daemon
  // and the admin CLI on one SQLite file.
  const dir = new TempDir();
  const server = process.env[CA_TEST_POSTGRES];
  const db = server ? freshDatabase(server) : dir.file('ca.db');
  const sealKey = randomBytes(32);
  const a = Authority.open({ db, sealKey, trustDomain: TD, limits: { scrypt: CHEAP_SCRYPT } });
  const b = Authority.open({ db, sealKey, trustDomain: TD, limits: { scrypt: CHEAP_SCRYPT } });
  try {
    unwrap(await a.init());
    const admin = b.localAdmin();
    unwrap(b.createOrg(admin, 'acme'));
    for (const identityId of ['one', 'two']) {
      unwrap(await b.createIdentity(admin, 'acme', { identityId, role: 'member' }));
    }
    unwrap(b.revoke(admin, { kind: 'identity', orgId: 'acme', subject: 'one' }));
    // B commits its revocation of `two` right after A's first read of the revocations, whichever that read is
    // (the newest seq, or the entries): the window a feed read spans between its two statements.
    const revocations = a.store.revocations;
    let interleave = true;
    for (const name of ['latestSeq', 'since'] as const) {
      const read = revocations[name].bind(revocations) as (...args: unknown[]) => unknown;
      Object.assign(revocations, {
        [name]: (...args: unknown[]) => {
          const result = read(...args);
          if (interleave) {
            interleave = false;
            unwrap(b.revoke(admin, { kind: 'identity', orgId: 'acme', subject: 'two' }));
          }
          return result;
        },
      });
    }
    const reader = a.localAdmin();
    const first = a.revocationsSince(reader, 0);
    assert.equal(interleave, false, 'B committed between the two reads');
    assert.deepEqual(
      first.entries.map((e) => e.subject),
      ['one'],
    );
    const next = a.revocationsSince(reader, first.seq);
    assert.deepEqual(
      next.entries.map((e) => e.subject),
      ['two'],
      `the reader's cursor (${first.seq}) does not pass the revocation committed between the reads`,
    );
  } finally {
    b.close();
    a.close();
    dir.remove();
  }
});
