/**
 * The gateway's status line as the client reads it (lib/client/dial.ts, step 4): every refusal code comes back
 * as a ConnectError at hop 'gateway' naming the gateway, with no failover (every proxy leads to the same
 * gateway), except that E_GRANT_EXPIRED is retried once with a fresh grant. The real gateway's side of these
 * codes is tested in test/gateway (inner.test.ts and, end to end through a real proxy, e2e-refusals.test.ts).
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { GatewayConnector, type Progress } from '../../lib/client/connector.js';
import { ConnectError } from '../../lib/client/errors.js';
import { pingEachProxy } from '../../lib/client/ping.js';
import type { ErrorCode } from '../../lib/errors/codes.js';
import type { AccessGrant } from '../../lib/pki/grant.js';
import type { RelayStatus } from '../../lib/protocol/relay.js';
import { World } from '../helpers/world.js';
import { echo, FakeGrantSource, type Listening, startGateway, startRelay } from './fixtures.js';

const world = new World();
const ORG = 'org-a';
const GW = 'gw-1';
const target = { host: '127.0.0.1', port: 5432 };
const toClose: Listening[] = [];
after(async () => {
  await Promise.all(toClose.map((l) => l.close()));
});

/** A gateway answering `respond`, behind two relays (so that a failover would show). */
async function deployment(
  respond: (grant: AccessGrant) => RelayStatus | 'close' | 'silent',
  stepTimeoutMs = 5000,
  relayStatus: 'ok' | ErrorCode = 'ok',
) {
  const gateway = await startGateway({ world, orgId: ORG, gatewayId: GW, respond });
  const relays: Awaited<ReturnType<typeof startRelay>>[] = [];
  for (const proxyId of ['p1', 'p2']) {
    relays.push(
      await startRelay({
        world,
        scope: 'instance',
        orgId: ORG,
        proxyId,
        gatewayPort: () => gateway.port,
        status: relayStatus,
      }),
    );
  }
  toClose.push(gateway, ...relays);
  const source = new FakeGrantSource({ world, proxies: () => relays.map((r) => r.endpoint) });
  const progress: Progress[] = [];
  const connector = new GatewayConnector({
    source,
    orgId: ORG,
    gatewayId: GW,
    now: world.now,
    nowMs: world.nowMs,
    stepTimeoutMs,
    onProgress: (p) => progress.push(p),
  });
  const dropped = () => progress.filter((p) => p.step === 'grant-dropped');
  return { connector, source, relays, gateway, dropped };
}

async function refusal(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a refusal');
}

const CODES: ErrorCode[] = [
  'E_TARGET_NOT_ALLOWED',
  'E_GRANT_TARGET',
  'E_TARGET_UNREACHABLE',
  'E_CERT_REVOKED',
  'E_SUBJECT_REVOKED',
  'E_GRANT_GATEWAY',
  'E_LIMIT',
];

for (const code of CODES) {
  test(`a gateway refusal ${code} reaches the caller with its code, at hop gateway, without failover`, async () => {
    const message = `${code} from the gateway (set allow_ports there)`;
    const { connector, relays, source } = await deployment(() => ({ ok: false, code, message }));
    const err = await refusal(connector.open(target, 'tcp'));
    // A revocation drops the grant and tries one fresh grant (refused here too); nothing else asks the CA again.
    const revocation = code === 'E_CERT_REVOKED' || code === 'E_SUBJECT_REVOKED';
    assert.equal(source.requests.length, revocation ? 2 : 1);
    assert.equal(err.code, code);
    assert.equal(err.hop, 'gateway');
    assert.equal(err.gatewayId, GW);
    assert.equal(err.detail, message);
    assert.equal(relays[1]!.connections, 0, 'the next proxy was not tried');
    assert.match(err.describe(), new RegExp(`^refused by gateway ${GW} \\(via proxy p1\\): ${code}: `));
  });
}

test('E_GRANT_EXPIRED from the gateway drops the cached grant and tries one fresh grant', async () => {
  const { connector, source } = await deployment((grant) =>
    grant.grantId === 'grant-1' ? { ok: false, code: 'E_GRANT_EXPIRED', message: 'grant expired' } : { ok: true },
  );
  const stream = await connector.open(target, 'tcp');
  assert.equal(source.requests.length, 2, 'a second grant was requested');
  const data = Buffer.from('after the status line');
  assert.deepEqual(await echo(stream.socket, data), data, 'payload starts after the line');
  stream.socket.destroy();
});

test('E_GRANT_EXPIRED twice is the answer', async () => {
  const { connector, source } = await deployment(() => ({ ok: false, code: 'E_GRANT_EXPIRED', message: 'expired' }));
  const err = await refusal(connector.open(target, 'tcp'));
  assert.equal(err.code, 'E_GRANT_EXPIRED');
  assert.equal(source.requests.length, 2);
});

test('a gateway closing before its status line is E_STREAM_CLOSED at hop gateway', async () => {
  const { connector } = await deployment(() => 'close');
  const err = await refusal(connector.open(target, 'tcp'));
  assert.equal(err.code, 'E_STREAM_CLOSED');
  assert.equal(err.hop, 'gateway');
  assert.match(err.detail, /before its status line/);
});

test('a gateway that never writes its status line is a bounded wait (E_TIMEOUT at hop gateway)', async () => {
  const { connector } = await deployment(() => 'silent', 300);
  const err = await refusal(connector.open(target, 'tcp'));
  assert.equal(err.code, 'E_TIMEOUT');
  assert.equal(err.hop, 'gateway');
});

test('a malformed status line is a refusal, never acceptance', async () => {
  const { connector } = await deployment(() => ({ ok: false, code: 'E_MADE_UP' as ErrorCode, message: 'x' }));
  const err = await refusal(connector.open(target, 'tcp'));
  assert.equal(err.code, 'E_STREAM_CLOSED');
  assert.match(err.detail, /E_MADE_UP/);
});

test('http mode reads no status line: the first bytes belong to the HTTP exchange', async () => {
  const { connector } = await deployment(() => ({ ok: true }));
  const stream = await connector.open(target, 'http');
  const data = Buffer.from('GET / HTTP/1.1\r\nhost: x\r\n\r\n');
  assert.deepEqual(await echo(stream.socket, data), data, 'nothing was taken from the stream as a status line');
  stream.socket.destroy();
});

test('ping through each proxy reports the gateway refusal per proxy', async () => {
  const { connector } = await deployment(() => ({ ok: false, code: 'E_GRANT_TARGET', message: 'mode ping' }));
  const results = await pingEachProxy(await connector.grant(target, 'ping'), { now: world.now, stepTimeoutMs: 5000 });
  assert.deepEqual(
    results.map((r) => [r.proxyId, r.ok, r.error?.code, r.error?.hop]),
    [
      ['p1', false, 'E_GRANT_TARGET', 'gateway'],
      ['p2', false, 'E_GRANT_TARGET', 'gateway'],
    ],
  );
});

const revokedGrant1 = (grant: AccessGrant): RelayStatus =>
  grant.grantId === 'grant-1'
    ? { ok: false, code: 'E_CERT_REVOKED', message: 'this grant or its certificate has been revoked' }
    : { ok: true };

test('a revoked grant (E_CERT_REVOKED from the gateway) is dropped, and the stream gets through on a fresh grant', async () => {
  const { connector, source, dropped } = await deployment(revokedGrant1);
  const stream = await connector.open(target, 'tcp');
  assert.equal(source.requests.length, 2, 'a second grant was requested');
  const data = Buffer.from('through the fresh grant');
  assert.deepEqual(await echo(stream.socket, data), data);
  stream.socket.destroy();
  assert.equal((await connector.grant(target, 'tcp')).grantId, 'grant-2', 'the fresh grant is the cached one');
  const d = dropped();
  assert.equal(d.length, 1);
  assert.ok(d[0]?.step === 'grant-dropped');
  assert.equal(d[0].grantId, 'grant-1');
  assert.equal(d[0].reason, 'revoked');
  assert.equal(d[0].error.code, 'E_CERT_REVOKED');
  assert.equal(d[0].error.hop, 'gateway');
  // The next stream uses the fresh grant: no refusal, no CA request.
  const next = await connector.open(target, 'tcp');
  next.socket.destroy();
  assert.equal(source.requests.length, 2);
});

test('eight streams refused together on a revoked grant: one drop, one CA request, all eight get through', async () => {
  const { connector, source, dropped } = await deployment(revokedGrant1);
  await connector.grant(target, 'tcp');
  const streams = await Promise.all(Array.from({ length: 8 }, () => connector.open(target, 'tcp')));
  for (const [i, s] of streams.entries()) {
    const data = Buffer.from(`stream ${i}`);
    assert.deepEqual(await echo(s.socket, data), data);
    s.socket.destroy();
  }
  assert.equal(source.requests.length, 2, 'the revoked grant and ONE replacement');
  assert.equal(dropped().length, 1, 'one line for the dropped grant, not eight');
});

test('after a revocation the CA refusing a new grant is the answer: its code at hop ca, naming the revocation', async () => {
  const { connector, source } = await deployment(revokedGrant1);
  await connector.grant(target, 'tcp');
  source.o.refuse = 'E_POLICY_DENIED';
  const err = await refusal(connector.open(target, 'tcp'));
  assert.equal(err.code, 'E_POLICY_DENIED');
  assert.equal(err.hop, 'ca');
  assert.match(
    err.detail,
    /^grant grant-1 was revoked \(gateway said E_CERT_REVOKED\) and the policy no longer allows/,
  );
  assert.equal(source.requests.length, 2);
  // Nothing is cached: the next stream asks the CA again (and the CA decides).
  await refusal(connector.open(target, 'tcp'));
  assert.equal(source.requests.length, 3);
});

test('proxies refusing the grant as revoked (their status line) drop it too, after the failover', async () => {
  const { connector, source, dropped, gateway } = await deployment(() => ({ ok: true }), 5000, 'E_CERT_REVOKED');
  const err = await refusal(connector.open(target, 'tcp'));
  assert.equal(err.code, 'E_CERT_REVOKED');
  assert.equal(err.hop, 'proxy');
  assert.equal(source.requests.length, 2, 'one fresh grant was tried');
  assert.deepEqual(
    dropped().map((p) => p.step === 'grant-dropped' && [p.grantId, p.error.hop, p.error.proxyId]),
    [
      ['grant-1', 'proxy', 'p2'],
      ['grant-2', 'proxy', 'p2'],
    ],
    'both grants dropped: the next stream asks the CA again',
  );
  assert.equal(gateway.connections, 0);
});
