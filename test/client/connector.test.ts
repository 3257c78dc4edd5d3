/**
 * The client against in-test relays and gateways (fixtures.ts) that run the same lib/pki checks as the real
 * daemons: failover, no failover on refusals about us, and the gateway identity check.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { GatewayConnector, type Progress } from '../../lib/client/connector.js';
import { ConnectError } from '../../lib/client/errors.js';
import type { ProxyEndpoint } from '../../lib/client/grant.js';
import { World } from '../helpers/world.js';
import {
  deadPort,
  echo,
  FakeGrantSource,
  intermediateCa,
  type Listening,
  startGateway,
  startRelay,
} from './fixtures.js';

const world = new World();
const ORG = 'org-a';
const GW = 'gw-1';
const target = { host: '127.0.0.1', port: 5432 };
const toClose: Listening[] = [];
let gateway: Listening;

before(async () => {
  gateway = await startGateway({ world, orgId: ORG, gatewayId: GW });
  toClose.push(gateway);
});
after(async () => {
  await Promise.all(toClose.map((l) => l.close()));
});

async function relay(proxyId: string, o: Partial<Parameters<typeof startRelay>[0]> = {}) {
  const r = await startRelay({ world, scope: 'instance', orgId: ORG, proxyId, gatewayPort: () => gateway.port, ...o });
  toClose.push(r);
  return r;
}

function connector(proxies: ProxyEndpoint[], extra: { refuse?: 'E_POLICY_DENIED' } = {}) {
  const source = new FakeGrantSource({ world, proxies: () => proxies, ...extra });
  const events: Progress[] = [];
  const c = new GatewayConnector({
    source,
    orgId: ORG,
    gatewayId: GW,
    now: world.now,
    nowMs: world.nowMs,
    stepTimeoutMs: 5000,
    onProgress: (p) => events.push(p),
  });
  return { c, source, events };
}

async function rejects(p: Promise<unknown>): Promise<ConnectError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof ConnectError, `expected a ConnectError, got ${String(err)}`);
    return err;
  }
  assert.fail('expected a refusal');
}

test('a stream through a relay reaches the gateway and carries bytes both ways', async () => {
  const r = await relay('p-ok');
  const { c, source } = connector([r.endpoint]);
  const stream = await c.open(target, 'tcp');
  assert.equal(stream.proxy.proxyId, 'p-ok');
  assert.deepEqual(stream.gateway.uris, [world.gatewayUri(ORG, GW)]);
  const data = Buffer.alloc(256 * 1024, 7);
  assert.deepEqual(await echo(stream.socket, data), data);
  stream.socket.destroy();
  // The key stays here: the CA saw CSRs only.
  assert.match(source.requests[0]!.outerCsr, /BEGIN CERTIFICATE REQUEST/);
  assert.doesNotMatch(JSON.stringify(source.requests[0]), /PRIVATE KEY/);
  // A second stream reuses the cached grant.
  (await c.open(target, 'tcp')).socket.destroy();
  assert.equal(source.requests.length, 1);
});

test('failover: a dead proxy and one saying E_GATEWAY_OFFLINE are skipped', async () => {
  const dead: ProxyEndpoint = {
    proxyId: 'p-dead',
    scope: 'instance',
    hostname: 'localhost',
    hostnames: ['localhost'],
    tlsAddress: `127.0.0.1:${await deadPort()}`,
  };
  const offline = await relay('p-offline', { status: 'E_GATEWAY_OFFLINE' });
  const good = await relay('p-good');
  const { c, events } = connector([dead, offline.endpoint, good.endpoint]);
  const stream = await c.open(target, 'tcp');
  assert.equal(stream.proxy.proxyId, 'p-good');
  stream.socket.destroy();
  const failed = events.filter((e) => e.step === 'proxy-failed');
  assert.deepEqual(
    failed.map((e) => e.step === 'proxy-failed' && [e.proxyId, e.error.code, e.error.hop, e.next]),
    [
      ['p-dead', 'E_PROXY_UNREACHABLE', 'proxy', true],
      ['p-offline', 'E_GATEWAY_OFFLINE', 'proxy', true],
    ],
  );
  // The proxy that worked is tried first next time.
  const before = offline.connections;
  (await c.open(target, 'tcp')).socket.destroy();
  assert.equal(offline.connections, before);
});

test('failover: a proxy whose server cert is from an untrusted CA is skipped', async () => {
  const impostor = await relay('p-impostor', {
    credentials: world.proxyTls({ scope: 'instance', proxyId: 'p-impostor', ca: world.stray.pkiServer }),
  });
  const good = await relay('p-good2');
  const { c, events } = connector([impostor.endpoint, good.endpoint]);
  const stream = await c.open(target, 'tcp');
  assert.equal(stream.proxy.proxyId, 'p-good2');
  stream.socket.destroy();
  const f = events.find((e) => e.step === 'proxy-failed');
  assert.ok(f && f.step === 'proxy-failed' && f.error.code === 'E_CERT_UNTRUSTED' && f.error.hop === 'proxy');
});

test('all proxies failing reports every attempt', async () => {
  const a = await relay('p-off1', { status: 'E_GATEWAY_OFFLINE' });
  const b = await relay('p-off2', { status: 'E_GATEWAY_OFFLINE' });
  const { c } = connector([a.endpoint, b.endpoint]);
  const err = await rejects(c.open(target, 'tcp'));
  assert.equal(err.code, 'E_GATEWAY_OFFLINE');
  assert.deepEqual(
    err.attempts.map((x) => x.proxyId),
    ['p-off1', 'p-off2'],
  );
});

test('no failover when the proxy refuses the route (E_ROUTE_FORBIDDEN)', async () => {
  const forbidden = await relay('p-forbid', { status: 'E_ROUTE_FORBIDDEN' });
  const good = await relay('p-unused');
  const { c } = connector([forbidden.endpoint, good.endpoint]);
  const err = await rejects(c.open(target, 'tcp'));
  assert.equal(err.code, 'E_ROUTE_FORBIDDEN');
  assert.equal(err.hop, 'proxy');
  assert.equal(err.proxyId, 'p-forbid');
  assert.equal(good.connections, 0, 'the next proxy was not tried');
  assert.match(err.describe(), /refused by proxy p-forbid: E_ROUTE_FORBIDDEN/);
});

test('no failover (and no proxy dialled) when the CA policy refuses the grant', async () => {
  const good = await relay('p-never');
  const { c } = connector([good.endpoint], { refuse: 'E_POLICY_DENIED' });
  const err = await rejects(c.open(target, 'tcp'));
  assert.equal(err.code, 'E_POLICY_DENIED');
  assert.equal(err.hop, 'ca');
  assert.equal(good.connections, 0);
});

test('the client refuses a gateway presenting ANOTHER gateway identity of the same org', async () => {
  const other = await startGateway({
    world,
    orgId: ORG,
    gatewayId: GW,
    credentials: world.gatewayInnerTls({ orgId: ORG, gatewayId: 'gw-2' }),
  });
  toClose.push(other);
  const r = await relay('p-to-gw2', { gatewayPort: () => other.port });
  const { c } = connector([r.endpoint]);
  const err = await rejects(c.open(target, 'tcp'));
  assert.equal(err.hop, 'gateway');
  assert.equal(err.code, 'E_CERT_IDENTITY');
  assert.equal(err.attempts.length, 0);
});

test("the client refuses a gateway whose cert comes from another org's gateway server CA", async () => {
  // Same gateway URI, signed by org-b's gateway server CA: fails cryptographically, not by name.
  const foreign = await startGateway({
    world,
    orgId: ORG,
    gatewayId: GW,
    credentials: world.gatewayInnerTls({ orgId: ORG, gatewayId: GW, ca: world.org('org-b').gatewayServer }),
  });
  toClose.push(foreign);
  const r = await relay('p-to-foreign', { gatewayPort: () => foreign.port });
  const { c } = connector([r.endpoint]);
  const err = await rejects(c.open(target, 'tcp'));
  assert.equal(err.hop, 'gateway');
  assert.equal(err.code, 'E_CERT_UNTRUSTED');
});

test('an expired gateway cert is refused with E_CERT_EXPIRED at the gateway hop', async () => {
  const stale = await startGateway({
    world,
    orgId: ORG,
    gatewayId: GW,
    credentials: world.gatewayInnerTls({ orgId: ORG, gatewayId: GW, expired: true }),
  });
  toClose.push(stale);
  const r = await relay('p-to-stale', { gatewayPort: () => stale.port });
  const { c } = connector([r.endpoint]);
  const err = await rejects(c.open(target, 'tcp'));
  assert.equal(err.hop, 'gateway');
  assert.equal(err.code, 'E_CERT_EXPIRED');
});

test('a proxy presenting ANOTHER proxy identity (right CA) is refused by name and skipped', async () => {
  const wrongName = await relay('p-named', {
    credentials: world.proxyTls({ scope: 'instance', proxyId: 'p-someone-else' }),
  });
  const good = await relay('p-good3');
  const { c, events } = connector([wrongName.endpoint, good.endpoint]);
  const stream = await c.open(target, 'tcp');
  assert.equal(stream.proxy.proxyId, 'p-good3');
  stream.socket.destroy();
  const f = events.find((e) => e.step === 'proxy-failed');
  assert.ok(f && f.step === 'proxy-failed' && f.error.code === 'E_CERT_IDENTITY' && f.error.hop === 'proxy');
});

test('a proxy whose cert does not carry the host name we dialled is refused', async () => {
  const r = await relay('p-host', {
    credentials: world.proxyTls({ scope: 'instance', proxyId: 'p-host', dnsNames: ['other.example'], ipAddresses: [] }),
  });
  const { c } = connector([r.endpoint]);
  const err = await rejects(c.open(target, 'tcp'));
  assert.equal(err.hop, 'proxy');
  assert.equal(err.code, 'E_CERT_IDENTITY');
});

test('a gateway whose cert comes from an intermediate under the org CA is accepted (the full chain is read)', async () => {
  // The leaf alone does not reach the anchor: verifyPeer falls back to the whole chain the gateway sent.
  const inter = intermediateCa(world, world.org(ORG).gatewayServer, 'gateway server intermediate');
  const leaf = world.gatewayInnerTls({ orgId: ORG, gatewayId: GW, ca: inter });
  const chained = await startGateway({
    world,
    orgId: ORG,
    gatewayId: GW,
    credentials: { ...leaf, certPem: leaf.certPem + inter.pem },
  });
  toClose.push(chained);
  const r = await relay('p-to-chained', { gatewayPort: () => chained.port });
  const { c } = connector([r.endpoint]);
  const stream = await c.open(target, 'tcp');
  assert.equal(stream.gateway.pathLength, 3);
  stream.socket.destroy();
  // Without the intermediate the chain cannot be built: refused, not accepted by the fast path.
  const bare = await startGateway({ world, orgId: ORG, gatewayId: GW, credentials: leaf });
  toClose.push(bare);
  const r2 = await relay('p-to-bare', { gatewayPort: () => bare.port });
  const err = await rejects(connector([r2.endpoint]).c.open(target, 'tcp'));
  assert.equal(err.hop, 'gateway');
  assert.equal(err.code, 'E_CERT_UNTRUSTED');
});
