/**
 * A CA client that knows several URLs of one CA: it moves to the next URL only when a connection cannot be made
 * (refused, or no TLS handshake within the connect timeout), before any byte of the request; it keeps to the URL
 * that answered; a certificate outside the pins is an error, never a reason to try elsewhere; a request that
 * reached a CA is never sent again to another.
 */
import assert from 'node:assert/strict';
import { createServer as createTcpServer, type Server } from 'node:net';
import { after, test } from 'node:test';
import { createServer as createTlsServer } from 'node:tls';
import { startCaServer } from '../../lib/ca/http.js';
import { CaApiError, CaClient, parseCaUrls } from '../../lib/protocol/ca-client.js';
import { newAuthority } from '../ca/helpers.js';

const names = { dnsNames: ['localhost'], ipAddresses: ['127.0.0.1'] };
const closers: (() => Promise<unknown>)[] = [];
after(async () => {
  for (const c of closers) await c();
});

async function listening(server: Server): Promise<string> {
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  closers.push(() => new Promise((r) => server.close(r)));
  return `https://127.0.0.1:${(server.address() as { port: number }).port}`;
}

/**
 * A URL whose connections are reset at once (what a CA host with nothing on the port answers). It stays bound
 * for the whole test, so no other test running beside this one can take the port over.
 */
async function refusedUrl(): Promise<string> {
  return listening(createTcpServer((s) => s.resetAndDestroy()));
}

/** A real CA API server; returns its URL, pin and a count of the requests it answered. */
async function caServer() {
  const f = await newAuthority();
  const tls = f.ca.issueApiServerCertificate(names);
  const server = await startCaServer({ authority: f.ca, host: '127.0.0.1', port: 0, tls });
  closers.push(() => server.drain(Date.now() + 1000));
  return { url: server.url, pin: tls.rootFingerprint256, now: f.clock.now, tls };
}

async function refusedWith(p: Promise<unknown>, code: string, pattern?: RegExp): Promise<CaApiError> {
  let caught: CaApiError | undefined;
  await assert.rejects(p, (err: unknown) => {
    assert.ok(err instanceof CaApiError, String(err));
    assert.equal(err.code, code, err.message);
    if (pattern) assert.match(err.message, pattern);
    caught = err;
    return true;
  });
  return caught!;
}

test('parseCaUrls: one URL, a comma list or repeated values; https only; duplicates dropped, order kept', () => {
  assert.deepEqual(
    parseCaUrls('https://a:1, https://b:2').map((u) => u.origin),
    ['https://a:1', 'https://b:2'],
  );
  assert.deepEqual(
    parseCaUrls(['https://a:1', 'https://b:2,https://a:1']).map((u) => u.origin),
    ['https://a:1', 'https://b:2'],
  );
  assert.throws(() => parseCaUrls('http://a:1'), /must be https/);
  assert.throws(() => parseCaUrls('https://a:1,not a url'), /is not a URL/);
  assert.throws(() => parseCaUrls(' , '), /at least one CA API URL/);
});

test('a refused first URL: the next one answers, the failover is reported once, and the client keeps to it', async () => {
  const ca = await caServer();
  const dead = await refusedUrl();
  const events: { from: string; to: string; code: string }[] = [];
  const client = new CaClient({
    url: [dead, ca.url],
    fingerprint: ca.pin,
    now: ca.now,
    onFailover: (e) => events.push(e),
  });
  assert.equal((await client.health()).ok, true);
  assert.equal(events.length, 1);
  assert.deepEqual(
    { from: events[0]!.from, to: events[0]!.to, code: events[0]!.code },
    {
      from: dead,
      to: ca.url,
      code: 'E_CA_UNREACHABLE',
    },
  );
  assert.equal(client.currentUrl, ca.url);
  assert.equal((await client.health()).ok, true);
  assert.equal((await client.withToken('t').health()).ok, true, 'a client made with withToken keeps to it too');
  assert.equal(events.length, 1, 'no new failover: the client went straight to the URL that answered');
});

test('a URL that accepts TCP but never completes TLS is passed over after the connect timeout', async () => {
  const ca = await caServer();
  const held: import('node:net').Socket[] = [];
  const silent = createTcpServer((s) => held.push(s)); // accepts, never speaks
  const silentUrl = await listening(silent);
  closers.unshift(async () => {
    for (const s of held) s.destroy();
  });
  const events: string[] = [];
  const client = new CaClient({
    url: `${silentUrl},${ca.url}`,
    fingerprint: ca.pin,
    now: ca.now,
    connectTimeoutMs: 300,
    onFailover: (e) => events.push(e.code),
  });
  assert.equal((await client.health()).ok, true);
  assert.deepEqual(events, ['E_TIMEOUT']);
});

test('every URL unreachable: E_CA_UNREACHABLE naming every URL tried', async () => {
  const a = await refusedUrl();
  const b = await refusedUrl();
  const client = new CaClient({ url: [a, b], fingerprint: 'ab'.repeat(32) });
  const err = await refusedWith(client.health(), 'E_CA_UNREACHABLE', /tried/);
  assert.equal(err.message.split('could not be reached').length, 2, `the description once: ${err.message}`);
  assert.ok(err.message.includes(a) && err.message.includes(b), err.message);
});

test('a server outside the pins is refused E_CERT_UNTRUSTED; the client does not try the next URL', async () => {
  const ca = await caServer();
  const other = await caServer(); // a real CA, but not the pinned one
  const events: string[] = [];
  const client = new CaClient({
    url: [other.url, ca.url],
    fingerprint: ca.pin,
    now: ca.now,
    onFailover: (e) => events.push(e.code),
  });
  await refusedWith(client.health(), 'E_CERT_UNTRUSTED', /does not match the pinned fingerprint/);
  assert.deepEqual(events, [], 'a wrong certificate is not unreachability');
});

test('a request that reached a CA is not sent again to another URL when the answer is lost', async () => {
  const ca = await caServer();
  let requests = 0;
  // Shows the pinned CA's own certificate (an operator's replica), reads the request, then drops the connection.
  const dropping = createTlsServer({ cert: ca.tls.certificateChainPem, key: ca.tls.privateKeyPem }, (s) => {
    s.once('data', () => {
      requests++;
      s.destroy();
    });
  });
  const droppingUrl = await listening(dropping);
  const events: string[] = [];
  const client = new CaClient({
    url: [droppingUrl, ca.url],
    fingerprint: ca.pin,
    now: ca.now,
    onFailover: (e) => events.push(e.code),
  });
  await refusedWith(client.createOrg('acme'), 'E_CA_UNREACHABLE');
  assert.equal(requests, 1, 'the request reached the first URL');
  assert.deepEqual(events, [], 'and was not sent again to the second');
});

test('one URL: behaviour as before (no failover, the whole-request timeout applies to the connect)', async () => {
  const dead = await refusedUrl();
  const events: string[] = [];
  const client = new CaClient({ url: dead, fingerprint: 'ab'.repeat(32), onFailover: (e) => events.push(e.code) });
  const err = await refusedWith(client.health(), 'E_CA_UNREACHABLE');
  assert.doesNotMatch(err.message, /tried/);
  assert.deepEqual(client.urls, [dead]);
  assert.deepEqual(events, []);
});
