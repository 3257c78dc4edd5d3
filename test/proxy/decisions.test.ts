/** The proxy's pure parts: admission decisions, the tunnel table, the revocation list. No sockets. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import {
  admitForward,
  admitGateway,
  admitRoute,
  type GatewayLogin,
  type ProxyScope,
} from '../../lib/proxy/admission.js';
import { scopeOf } from '../../lib/proxy/proxy.js';
import { RevocationList } from '../../lib/proxy/revocations.js';
import { TunnelTable } from '../../lib/proxy/tunnel-table.js';
import { World } from '../helpers/world.js';

const world = new World();
const instance: ProxyScope = { scope: 'instance', trustDomain: 'example.test' };
const orgA: ProxyScope = { scope: 'org', orgId: 'org-a', trustDomain: 'example.test' };
const code = (v: { ok: boolean; code?: string }) => (v.ok ? 'ok' : v.code);

describe('admitGateway', () => {
  const cert = (o: Parameters<World['gatewaySsh']>[0]) => world.gatewaySsh(o).cert;
  const base = { orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance' as const };

  it('admits principal = user = key id gateway, with permit-port-forwarding', () => {
    const v = admitGateway(cert(base), 'gw-1', instance);
    assert.ok(v.ok);
    assert.equal(v.value.orgId, 'org-a');
    assert.equal(v.value.uri, world.gatewayUri('org-a', 'gw-1'));
  });

  it("reads a replica's name from its certificate (for logs), the gateway it names unchanged", () => {
    const ext = { 'permit-port-forwarding': '', 'replica@infisical': 'host-a' };
    const v = admitGateway(cert({ ...base, extensions: ext }), 'gw-1', instance);
    assert.ok(v.ok);
    assert.equal(v.value.gatewayId, 'gw-1');
    assert.equal(v.value.replica, 'host-a');
    const bad = admitGateway(cert({ ...base, extensions: { ...ext, 'replica@infisical': '../x' } }), 'gw-1', instance);
    assert.ok(bad.ok && bad.value.replica === undefined, 'a name outside the id rule is not shown');
    const plain = admitGateway(cert(base), 'gw-1', instance);
    assert.ok(plain.ok && plain.value.replica === undefined);
  });

  it('refuses each mismatch with its code', () => {
    assert.equal(code(admitGateway(cert(base), 'gw-2', instance)), 'E_CERT_WRONG_PRINCIPAL');
    assert.equal(
      code(admitGateway(cert({ ...base, principals: ['gw-1', 'gw-2'] }), 'gw-1', instance)),
      'E_CERT_WRONG_PRINCIPAL',
    );
    assert.equal(code(admitGateway(cert({ ...base, keyId: 'gw-1' }), 'gw-1', instance)), 'E_CERT_IDENTITY');
    assert.equal(
      code(admitGateway(cert({ ...base, keyId: world.proxyUri('instance', 'gw-1') }), 'gw-1', instance)),
      'E_CERT_IDENTITY',
    );
    assert.equal(
      code(admitGateway(cert({ ...base, keyId: 'spiffe://other.test/org/org-a/gateway/gw-1' }), 'gw-1', instance)),
      'E_CERT_IDENTITY',
    );
    assert.equal(code(admitGateway(cert({ ...base, orgId: 'org-b' }), 'gw-1', orgA)), 'E_ORG_MISMATCH');
    assert.equal(code(admitGateway(cert({ ...base, extensions: {} }), 'gw-1', instance)), 'E_CERT_USAGE');
  });
});

describe('admitForward', () => {
  const login: GatewayLogin = { orgId: 'org-a', gatewayId: 'gw-1', uri: 'u', serial: 1n, validBeforeMs: 1 };
  it('allows only its own name', () => {
    assert.ok(admitForward(login, 'gw-1', 0).ok);
    assert.equal(code(admitForward(login, 'gw-2', 0)), 'E_CERT_WRONG_PRINCIPAL');
    assert.equal(code(admitForward(login, '', 0)), 'E_CERT_WRONG_PRINCIPAL');
    assert.equal(code(admitForward(login, '0.0.0.0', 0)), 'E_CERT_WRONG_PRINCIPAL');
  });
});

describe('admitRoute', () => {
  const peer = (uri: string, route?: { orgId: string; gatewayId: string }) => ({
    uris: [uri],
    serialHex: 'ab',
    notAfter: new Date(0),
    ...(route ? { route } : {}),
  });
  const id = (org: string) => `spiffe://example.test/org/${org}/identity/alice`;

  it('admits a route of the identity’s own org', () => {
    const v = admitRoute(peer(id('org-a'), { orgId: 'org-a', gatewayId: 'gw-1' }), instance);
    assert.ok(v.ok && v.value.gatewayId === 'gw-1');
  });

  it('refuses a route to another org than the identity’s, on any proxy', () => {
    assert.equal(
      code(admitRoute(peer(id('org-b'), { orgId: 'org-a', gatewayId: 'gw-1' }), instance)),
      'E_ORG_MISMATCH',
    );
  });

  it('an org proxy refuses routes to other orgs', () => {
    assert.equal(code(admitRoute(peer(id('org-b'), { orgId: 'org-b', gatewayId: 'gw-1' }), orgA)), 'E_ORG_MISMATCH');
  });

  it('refuses no route, non-identity subjects, other trust domains, several URIs', () => {
    assert.equal(code(admitRoute(peer(id('org-a')), instance)), 'E_ROUTE_FORBIDDEN');
    const r = { orgId: 'org-a', gatewayId: 'gw-1' };
    assert.equal(code(admitRoute(peer(world.gatewayUri('org-a', 'gw-2'), r), instance)), 'E_CERT_IDENTITY');
    assert.equal(code(admitRoute(peer('spiffe://x.test/org/org-a/identity/a', r), instance)), 'E_CERT_IDENTITY');
    assert.equal(
      code(admitRoute({ ...peer(id('org-a'), r), uris: [id('org-a'), id('org-a')] }, instance)),
      'E_CERT_IDENTITY',
    );
  });
});

describe('TunnelTable', () => {
  const login = (orgId: string, gatewayId: string, validBeforeMs = 10_000): GatewayLogin => ({
    orgId,
    gatewayId,
    uri: `${orgId}/${gatewayId}`,
    serial: 1n,
    validBeforeMs,
  });

  it('orders healthy first (fewest streams, least recently picked, newest), then unhealthy; skips expired; keys by org', () => {
    const t = new TunnelTable<string>({ maxStreamsPerGateway: 10 });
    const a = t.add(login('org-a', 'gw'), 1, 'a', 100);
    const b = t.add(login('org-a', 'gw'), 2, 'b', 200);
    const c = t.add(login('org-a', 'gw', 250), 3, 'c', 300);
    t.add(login('org-b', 'gw'), 4, 'other-org', 400);
    const pick = (now: number) => {
      const v = t.candidates('org-a', 'gw', now);
      return v.ok ? v.value.map((x) => x.handle) : v.code;
    };
    assert.deepEqual(pick(0), ['c', 'b', 'a']);
    assert.deepEqual(pick(300), ['b', 'a']);
    // Spread: fewest open streams first, then the least recently picked (round-robin), then the newest.
    t.streamOpened(b.id);
    assert.deepEqual(pick(300), ['a', 'b'], 'b carries a stream');
    t.streamOpened(a.id);
    t.streamClosed(a.id);
    t.streamClosed(b.id);
    assert.deepEqual(pick(300), ['b', 'a'], 'both idle: b was picked longer ago');
    t.setHealthy(b.id, false);
    assert.deepEqual(pick(300), ['a', 'b']);
    t.remove(a.id);
    t.remove(b.id);
    assert.equal(pick(300), 'E_GATEWAY_OFFLINE');
    t.remove(c.id);
    assert.equal(code(t.candidates('org-c', 'gw', 0)), 'E_GATEWAY_OFFLINE');
    assert.equal(t.size, 1);
    assert.equal(t.gatewayCount, 1);
  });

  it('counts streams per gateway over all its tunnels and refuses at the limit', () => {
    const t = new TunnelTable<string>({ maxStreamsPerGateway: 2 });
    const a = t.add(login('org-a', 'gw'), 1, 'a', 1);
    const b = t.add(login('org-a', 'gw'), 2, 'b', 2);
    t.streamOpened(a.id);
    t.streamOpened(b.id);
    assert.equal(code(t.candidates('org-a', 'gw', 0)), 'E_LIMIT');
    t.streamClosed(b.id);
    assert.ok(t.candidates('org-a', 'gw', 0).ok);
    assert.equal(t.streamCount, 1);
    t.remove(a.id);
    assert.equal(t.streamCount, 0);
  });
});

describe('RevocationList', () => {
  const tunnel = { orgId: 'org-a', gatewayId: 'gw-1', uri: world.gatewayUri('org-a', 'gw-1'), serial: 42n };
  const stream = { orgId: 'org-a', identityUri: 'spiffe://example.test/org/org-a/identity/alice', serialHex: '0a1b' };

  it('matches gateways by id in their org, by URI, and by SSH serial (hex)', () => {
    const l = new RevocationList();
    assert.equal(l.tunnelRevoked(tunnel), undefined);
    l.add({ kind: 'gateway', orgId: 'org-b', subject: 'gw-1' });
    assert.equal(l.tunnelRevoked(tunnel), undefined);
    l.add({ kind: 'gateway', orgId: 'org-a', subject: 'gw-1' });
    assert.ok(l.tunnelRevoked(tunnel));
    const byUri = new RevocationList();
    byUri.add({ kind: 'gateway', subject: tunnel.uri });
    assert.ok(byUri.tunnelRevoked(tunnel));
    const bySerial = new RevocationList();
    bySerial.add({ kind: 'certificate', subject: '000000000000002A' }); // 42, as the CA records SSH serials
    assert.ok(bySerial.tunnelRevoked(tunnel));
  });

  it('matches streams by identity and by X.509 serial (hex, any case, leading zeros)', () => {
    const l = new RevocationList();
    l.add({ kind: 'identity', orgId: 'org-b', subject: 'alice' });
    assert.equal(l.streamRevoked(stream), undefined);
    l.add({ kind: 'identity', orgId: 'org-a', subject: 'alice' });
    assert.ok(l.streamRevoked(stream));
    const s = new RevocationList();
    s.add({ kind: 'certificate', subject: '0x0A1B' });
    assert.ok(s.streamRevoked(stream));
    assert.ok(s.certificateRevoked('a1b'));
    assert.equal(s.add({ kind: 'certificate', subject: 'a1b' }), false);
  });

  it('grants and proxies close nothing here', () => {
    const l = new RevocationList();
    l.add({ kind: 'grant', subject: 'gw-1' });
    l.add({ kind: 'proxy', subject: 'alice' });
    assert.equal(l.tunnelRevoked(tunnel), undefined);
    assert.equal(l.streamRevoked(stream), undefined);
  });
});

describe('scopeOf', () => {
  it('reads scope, org and trust domain from the proxy URI', () => {
    assert.deepEqual(scopeOf(world.proxyUri('instance', 'p1')), instance);
    assert.deepEqual(scopeOf(world.proxyUri('org', 'p1', 'org-a')), orgA);
    assert.throws(() => scopeOf(world.gatewayUri('org-a', 'gw')), /not a proxy identity/);
  });
});
