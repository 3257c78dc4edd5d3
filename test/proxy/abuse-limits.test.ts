/**
 * The proxy's pure abuse-limit decisions (lib/proxy/admission.ts): whom a per-source limit counts together,
 * the accept-time verdict, and the per-org quotas. The real-process tests are in test/lifecycle
 * (proxy-limits, org-quotas, gateway-pending).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { admitConnection, limitOf, sourceKey, withinQuota } from '../../lib/proxy/admission.js';
import { TunnelTable } from '../../lib/proxy/tunnel-table.js';

test('sourceKey: IPv4 however written, IPv6 by /64', () => {
  assert.equal(sourceKey('203.0.113.7'), '203.0.113.7');
  assert.equal(sourceKey('::ffff:203.0.113.7'), '203.0.113.7');
  assert.equal(sourceKey('2001:db8:1:2:aaaa::1'), '2001:db8:1:2::/64');
  assert.equal(sourceKey('2001:db8:1:2:ffff:ffff:ffff:ffff'), '2001:db8:1:2::/64');
  assert.notEqual(sourceKey('2001:db8:1:3::1'), sourceKey('2001:db8:1:2::1'));
  assert.equal(sourceKey(undefined), 'unknown');
});

test('admitConnection: the listener bound first, then the per-source bound on handshakes', () => {
  const limits = { maxConnections: 10, maxUnauthenticatedPerSource: 3 };
  assert.ok(admitConnection({ open: 9, unauthenticatedFromSource: 2 }, limits, 's').ok);
  const full = admitConnection({ open: 10, unauthenticatedFromSource: 0 }, limits, 's');
  assert.equal(full.ok ? 'ok' : full.code, 'E_LIMIT');
  assert.equal(limitOf(full), 'max_connections');
  const source = admitConnection({ open: 4, unauthenticatedFromSource: 3 }, limits, 's');
  assert.equal(limitOf(source), 'max_unauthenticated_per_source');
});

test('withinQuota: E_QUOTA_EXCEEDED at the quota on an instance proxy, nothing without quotas', () => {
  const quotas = { maxTunnelsPerOrg: 2, maxStreamsPerOrg: 5 };
  assert.ok(withinQuota('tunnels', 'a', 1, quotas).ok);
  const t = withinQuota('tunnels', 'a', 2, quotas);
  assert.equal(t.ok ? 'ok' : t.code, 'E_QUOTA_EXCEEDED');
  assert.equal(limitOf(t), 'max_tunnels_per_org');
  assert.equal(limitOf(withinQuota('streams', 'a', 5, quotas)), 'max_streams_per_org');
  assert.ok(withinQuota('streams', 'a', 1_000_000, undefined).ok);
});

test('TunnelTable keeps each org’s tunnels and streams, and frees them with the tunnel', () => {
  const table = new TunnelTable<null>({
    maxStreamsPerGateway: 100,
    orgQuotas: { maxTunnelsPerOrg: 1, maxStreamsPerOrg: 2 },
  });
  const login = { orgId: 'a', gatewayId: 'g', uri: 'u', serial: 1n, validBeforeMs: Number.MAX_SAFE_INTEGER };
  assert.ok(table.admitTunnel('a').ok);
  const t = table.add(login, 1, null, 0);
  assert.equal(limitOf(table.admitTunnel('a')), 'max_tunnels_per_org');
  assert.ok(table.admitTunnel('b').ok, 'another org is not charged');
  table.streamOpened(t.id);
  table.streamOpened(t.id);
  const c = table.candidates('a', 'g', 1);
  assert.equal(limitOf(c), 'max_streams_per_org');
  table.streamClosed(t.id);
  assert.ok(table.candidates('a', 'g', 1).ok);
  table.remove(t.id);
  assert.deepEqual(table.usageOf('a'), { tunnels: 0, streams: 0 });
  table.orgQuotas = undefined; // an org proxy
  table.add(login, 2, null, 0);
  assert.ok(table.admitTunnel('a').ok);
});
