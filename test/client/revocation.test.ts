/**
 * Revocation as the platform meets it, in a whole installation (installation.ts: the CA behind its HTTPS API,
 * two proxies, a gateway): a grant revoked at the CA and pushed to the gateway (what its revocation feed does)
 * is dropped by the connector at the first refusal, and the stream gets through on a new grant; once the
 * policy no longer allows the access (or the identity is revoked), the CA's refusal is the answer, naming the
 * revocation. Before, every stream failed until the cached grant neared its expiry (minutes).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import http from 'node:http';
import net, { type AddressInfo } from 'node:net';
import { after, before, test } from 'node:test';
import type tls from 'node:tls';
import { CaGrantSource } from '../../lib/client/ca-source.js';
import { GatewayConnector, type Progress } from '../../lib/client/connector.js';
import { ConnectError } from '../../lib/client/errors.js';
import { LocalForwarder } from '../../lib/client/forward.js';
import { CaClient } from '../../lib/protocol/ca-client.js';
import { GATEWAY, type Installation, ORG, startInstallation } from './installation.js';

let inst: Installation;
let target: { host: string; port: number };
let echoServer: net.Server;
let web: http.Server;
let webPort: number;
const progress: Progress[] = [];
let connector: GatewayConnector;

before(async () => {
  echoServer = net.createServer((s) => {
    s.on('error', () => undefined);
    s.pipe(s);
  });
  echoServer.listen(0, '127.0.0.1');
  await once(echoServer, 'listening');
  target = { host: '127.0.0.1', port: (echoServer.address() as AddressInfo).port };
  web = http.createServer((req, res) => res.end(`hello ${req.url}`));
  web.listen(0, '127.0.0.1');
  await once(web, 'listening');
  webPort = (web.address() as AddressInfo).port;
  inst = await startInstallation({
    proxies: 2,
    policyTargets: [`127.0.0.1:${target.port}`, `127.0.0.1:${webPort}`],
    allowPorts: [target.port, webPort],
  });
  const ca = new CaClient({ url: inst.caUrl, fingerprint: inst.fingerprint });
  connector = new GatewayConnector({
    source: new CaGrantSource({ ca, clientId: inst.clientId, clientSecret: inst.clientSecret }),
    orgId: ORG,
    gatewayId: GATEWAY,
    onProgress: (p) => progress.push(p),
  });
});

after(async () => {
  await inst?.close();
  echoServer?.close();
  web?.closeAllConnections();
  web?.close();
});

const sha256 = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Sends `data` through the stream to the echo target and reads it all back. */
async function roundTrip(socket: tls.TLSSocket, data: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  const back = new Promise<void>((resolve, reject) => {
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      n += c.length;
      if (n >= data.length) resolve();
    });
    socket.on('error', reject);
    socket.on('close', () => (n >= data.length ? resolve() : reject(new Error(`closed after ${n} bytes`))));
  });
  socket.write(data);
  await back;
  socket.destroy();
  return Buffer.concat(chunks);
}

/** Revoked at the CA (the API an operator uses), then at the gateway, as the CA's feed would bring it. */
async function revoke(kind: 'grant' | 'identity', subject: string): Promise<number> {
  await inst.admin.revoke({ kind, orgId: ORG, subject, reason: 'test' });
  return inst.revokeAtGateway({ kind, subject, orgId: ORG });
}

const since = (i: number) => progress.slice(i);

async function refusal(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a refusal');
}

test('a revoked grant: the live stream is cut, the next streams get through on ONE new grant', async () => {
  const live = await connector.open(target, 'tcp');
  const first = (await connector.grant(target, 'tcp')).grantId;
  const cut = new Promise<void>((resolve) => live.socket.once('close', () => resolve()));
  live.socket.resume();
  const mark = progress.length;
  assert.equal(await revoke('grant', first), 1, 'the gateway ended the live stream');
  await cut;

  // Eight streams at once, all dialled with the revoked grant first.
  const payloads = Array.from({ length: 8 }, () => randomBytes(256 * 1024));
  const streams = await Promise.all(payloads.map(() => connector.open(target, 'tcp')));
  const echoed = await Promise.all(streams.map((s, i) => roundTrip(s.socket, payloads[i]!)));
  for (const [i, b] of echoed.entries()) assert.equal(sha256(b), sha256(payloads[i]!), `stream ${i}`);

  const second = (await connector.grant(target, 'tcp')).grantId;
  assert.notEqual(second, first, 'a new grant id');
  const events = since(mark);
  const granted = events.filter((p) => p.step === 'granted');
  assert.deepEqual(
    granted.map((p) => p.step === 'granted' && p.grantId),
    [second],
    'one CA request for all eight',
  );
  const dropped = events.filter((p) => p.step === 'grant-dropped');
  assert.equal(dropped.length, 1, 'one drop, however many streams were refused');
  assert.ok(dropped[0]?.step === 'grant-dropped');
  assert.equal(dropped[0].grantId, first);
  assert.equal(dropped[0].reason, 'revoked');
  assert.equal(dropped[0].error.code, 'E_CERT_REVOKED');
  assert.equal(dropped[0].error.hop, 'gateway');
  assert.ok(
    inst.refusals.some((r) => r.code === 'E_CERT_REVOKED'),
    'the gateway refused the revoked grant',
  );
});

/** One GET on a new local connection (no keep-alive: each connection is its own stream). */
function get(port: number, path: string): Promise<{ status: number; error: string | undefined; body: string }> {
  return new Promise((resolve, reject) => {
    const req = http.get({ host: '127.0.0.1', port, path, agent: false, timeout: 10_000 }, (res) => {
      let body = '';
      res.on('data', (d: Buffer) => {
        body += d.toString();
      });
      res.on('end', () =>
        resolve({ status: res.statusCode ?? 0, error: res.headers['x-infisical-error'] as string | undefined, body }),
      );
    });
    req.on('error', reject);
    req.on('timeout', () => req.destroy(new Error('timeout')));
  });
}

test("http mode: the gateway's HTTP refusal of a revoked grant drops it; the next connection gets a new grant", async () => {
  const web$ = { host: '127.0.0.1', port: webPort };
  const forwarder = new LocalForwarder({ connector, target: web$, mode: 'http', host: '127.0.0.1', port: 0 });
  const { port } = await forwarder.listen();
  try {
    assert.deepEqual(await get(port, '/a'), { status: 200, error: undefined, body: 'hello /a' });
    const first = (await connector.grant(web$, 'http')).grantId;
    const mark = progress.length;
    await revoke('grant', first);
    // The request in flight on the revoked grant is answered by the gateway (http mode has no status line).
    const refused = await get(port, '/b');
    assert.deepEqual([refused.status, refused.error], [403, 'E_CERT_REVOKED']);
    assert.deepEqual(await get(port, '/c'), { status: 200, error: undefined, body: 'hello /c' });
    const second = (await connector.grant(web$, 'http')).grantId;
    assert.notEqual(second, first, 'a new grant id');
    const dropped = since(mark).filter((p) => p.step === 'grant-dropped');
    assert.deepEqual(
      dropped.map((p) => p.step === 'grant-dropped' && [p.grantId, p.reason, p.error.code, p.error.hop]),
      [[first, 'revoked', 'E_CERT_REVOKED', 'gateway']],
    );
  } finally {
    await forwarder.close();
  }
});

test('a revoked grant when the policy no longer allows the access: E_POLICY_DENIED at hop ca, naming the revocation', async () => {
  const held = (await connector.grant(target, 'tcp')).grantId;
  await inst.admin.deletePolicy(ORG, inst.policyId);
  await revoke('grant', held);
  const err = await refusal(connector.open(target, 'tcp'));
  assert.equal(err.code, 'E_POLICY_DENIED');
  assert.equal(err.hop, 'ca');
  assert.match(
    err.detail,
    new RegExp(
      `^grant ${held} was revoked \\(gateway said E_CERT_REVOKED\\) and the policy no longer allows this access: `,
    ),
  );
  assert.match(err.describe(), /^refused by ca: E_POLICY_DENIED: grant .* was revoked/);
});

test('a revoked identity: the gateway refuses the grant it holds, the CA refuses a new one, at hop ca', async () => {
  const rule = await inst.admin.addPolicy(ORG, {
    subject: 'identity:app',
    gateways: [GATEWAY],
    targets: [`127.0.0.1:${target.port}`],
    modes: ['tcp'],
  });
  assert.ok(rule.id);
  const stream = await connector.open(target, 'tcp');
  const data = randomBytes(64 * 1024);
  assert.equal(sha256(await roundTrip(stream.socket, data)), sha256(data), 'the policy allows it again');
  const held = (await connector.grant(target, 'tcp')).grantId;
  await revoke('identity', 'app');
  const err = await refusal(connector.open(target, 'tcp'));
  assert.equal(err.hop, 'ca');
  assert.equal(err.code, 'E_SUBJECT_REVOKED');
  assert.match(
    err.detail,
    new RegExp(
      `^grant ${held} was revoked \\(gateway said E_SUBJECT_REVOKED\\) and the identity \\(or the gateway\\) is revoked: `,
    ),
  );
});
