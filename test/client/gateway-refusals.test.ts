/**
 * The gateway's status line as the client reads it (lib/client/dial.ts, step 4): every refusal code comes back
 * as a ConnectError at hop 'gateway' naming the gateway, with no failover (every proxy leads to the same
 * gateway), except that E_GRANT_EXPIRED is retried once with a fresh grant. The real gateway's side of these
 * codes is tested in test/gateway (inner.test.ts and, end to end through a real proxy, e2e-refusals.test.ts).
 */
import assert from 'node:assert/strict';
import { after, test } from 'node:test';
import { GatewayConnector } from '../../lib/client/connector.js';
import { ConnectError } from '../../lib/client/errors.js';
import { pingEachProxy } from '../../lib/client/ping.js';
import type { ErrorCode } from '../../lib/protocol/errors.js';
import type { AccessGrant } from '../../lib/protocol/grant.js';
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
async function deployment(respond: (grant: AccessGrant) => RelayStatus | 'close' | 'silent', stepTimeoutMs = 5000) {
  const gateway = await startGateway({ world, orgId: ORG, gatewayId: GW, respond });
  const relays: Awaited<ReturnType<typeof startRelay>>[] = [];
  for (const proxyId of ['p1', 'p2']) {
    relays.push(await startRelay({ world, scope: 'instance', orgId: ORG, proxyId, gatewayPort: () => gateway.port }));
  }
  toClose.push(gateway, ...relays);
  const source = new FakeGrantSource({ world, proxies: () => relays.map((r) => r.endpoint) });
  const connector = new GatewayConnector({
    source,
    orgId: ORG,
    gatewayId: GW,
    now: world.now,
    nowMs: world.nowMs,
    stepTimeoutMs,
  });
  return { connector, source, relays };
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
    const { connector, relays } = await deployment(() => ({ ok: false, code, message }));
    const err = await refusal(connector.open(target, 'tcp'));
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
