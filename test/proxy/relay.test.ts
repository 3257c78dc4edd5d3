/**
 * The TLS relay over real sockets: platform outer certs from World, in-process gateways on lib/sshwire.
 * Each refusal is checked by the status line's stable code and by the proxy's refusal counter.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type { ProxyServer } from '../../lib/proxy/proxy.js';
import { World } from '../helpers/world.js';
import { closed, connectGateway, dialProxy, eventually, proxyCredentials, roundTrip, startProxy } from './harness.js';

const world = new World();
const outerA = (o: Partial<Parameters<World['platformOuter']>[0]> = {}) =>
  world.platformOuter({ orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance', ...o });

async function refused(proxy: ProxyServer, outer: ReturnType<World['platformOuter']>, code: string, o = {}) {
  const before = proxy.refusals().get(`tls:${code}`) ?? 0;
  const t0 = Date.now();
  const { status, socket } = await dialProxy(world, proxy, outer, o);
  assert.equal(status.ok, false);
  assert.equal(status.ok ? '' : status.code, code, status.ok ? '' : status.message);
  await closed(socket);
  assert.equal(proxy.refusals().get(`tls:${code}`), before + 1);
  return Date.now() - t0;
}

describe('relay: instance proxy', () => {
  let proxy: ProxyServer;
  before(async () => {
    proxy = await startProxy(world, { scope: 'instance' });
  });
  after(() => proxy.stop());

  it('carries bytes both ways to the named gateway', async () => {
    const gw = await connectGateway(world, proxy, { orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance' });
    const { status, socket } = await dialProxy(world, proxy, outerA());
    assert.deepEqual(status, { ok: true });
    const data = Buffer.alloc(256 * 1024, 7);
    assert.ok((await roundTrip(socket, data)).equals(data));
    assert.equal(proxy.stats().streams, 1);
    socket.end();
    await eventually(() => proxy.stats().streams === 0);
    gw.close();
    await eventually(() => proxy.table.size === 0);
  });

  it('answers an offline gateway at once', async () => {
    const ms = await refused(proxy, outerA({ gatewayId: 'nobody' }), 'E_GATEWAY_OFFLINE');
    assert.ok(ms < 5000, `took ${ms} ms`);
  });

  it('a channel that closed as it opened (or whose tunnel died meanwhile) is never answered ok: the next tunnel carries the stream', async () => {
    // Both can arrive in one read from the gateway's socket, before the relay's continuation runs: simulated by
    // a handle whose open resolves with a channel already destroyed, or after its tunnel closed.
    const gateways = [
      await connectGateway(world, proxy, { orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance' }),
      await connectGateway(world, proxy, { orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance' }),
      await connectGateway(world, proxy, { orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance' }),
    ];
    const breakOpen = (t: NonNullable<ReturnType<typeof proxy.table.get>>, how: 'channel' | 'tunnel') => {
      const open = t.handle.openStream;
      const tried = { count: 0 };
      t.handle.openStream = async (o) => {
        const channel = await open(o);
        tried.count++;
        if (how === 'channel') channel.destroy();
        else t.handle.close('died in the same read');
        return channel;
      };
      return tried;
    };
    for (const how of ['channel', 'tunnel'] as const) {
      const order = proxy.table.candidates('org-a', 'gw-1', Date.now());
      const first = order.ok ? order.value[0] : undefined; // the tunnel the relay tries first
      assert.ok(first);
      const tried = breakOpen(first, how);
      const { status, socket } = await dialProxy(world, proxy, outerA());
      assert.equal(tried.count, 1, `the ${how} case was tried first`);
      assert.deepEqual(status, { ok: true });
      const data = Buffer.alloc(64 * 1024, 3);
      assert.ok((await roundTrip(socket, data)).equals(data), `the stream went on another tunnel (${how})`);
      socket.end();
      await eventually(() => proxy.stats().streams === 0);
      if (how === 'channel') first.handle.close('done with it');
      await eventually(() => !proxy.table.get(first.id));
    }
    // With no tunnel left that works: a refusal, not ok then a clean end.
    const last = proxy.table.all()[0];
    assert.ok(last && proxy.table.size === 1);
    breakOpen(last, 'channel');
    await refused(proxy, outerA(), 'E_GATEWAY_OFFLINE');
    for (const g of gateways) g.close();
    await eventually(() => proxy.table.size === 0);
  });

  it("never routes org B's platform to org A's gateway of the same name", async () => {
    const gw = await connectGateway(world, proxy, { orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance' });
    await refused(
      proxy,
      world.platformOuter({ orgId: 'org-b', gatewayId: 'gw-1', scope: 'instance' }),
      'E_GATEWAY_OFFLINE',
    );
    gw.close();
    await eventually(() => proxy.table.size === 0);
  });

  it('refuses outer certs of another CA, of an org CA, expired, and without ALPN', async () => {
    await refused(proxy, outerA({ ca: world.stray.pkiClient }), 'E_CERT_UNTRUSTED');
    await refused(proxy, world.platformOuter({ orgId: 'org-a', gatewayId: 'gw-1', scope: 'org' }), 'E_CERT_UNTRUSTED');
    await refused(proxy, outerA({ expired: true }), 'E_CERT_EXPIRED');
    await refused(proxy, outerA(), 'E_ROUTE_FORBIDDEN', { alpn: null });
  });

  it('refuses a revoked identity and a revoked certificate, and closes their live streams', async () => {
    const gw = await connectGateway(world, proxy, { orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance' });
    const mallory = outerA({ identityId: 'mallory' });
    const live = await dialProxy(world, proxy, mallory);
    assert.ok(live.status.ok);
    const other = await dialProxy(world, proxy, outerA({ identityId: 'alice' }));
    assert.ok(other.status.ok);
    assert.deepEqual(proxy.revoke({ kind: 'identity', orgId: 'org-a', subject: 'mallory' }), {
      tunnels: 0,
      streams: 1,
    });
    await closed(live.socket);
    assert.equal(proxy.stats().streams, 1); // alice's stream stays
    await refused(proxy, outerA({ identityId: 'mallory' }), 'E_CERT_REVOKED');

    const cert = outerA({ identityId: 'bob' });
    proxy.revoke({ kind: 'certificate', subject: cert.issued.serialHex });
    await refused(proxy, cert, 'E_CERT_REVOKED');
    other.socket.destroy();
    gw.close();
    await eventually(() => proxy.table.size === 0 && proxy.stats().streams === 0);
  });

  it('spreads new streams over the healthy tunnels (newest first among equals), and falls back when one goes', async () => {
    const seen: string[] = [];
    const tagged = (tag: string) => (ch: import('node:stream').Duplex) => {
      seen.push(tag);
      ch.on('error', () => {});
      ch.end(tag);
    };
    const old = await connectGateway(world, proxy, {
      orgId: 'org-a',
      gatewayId: 'gw-1',
      scope: 'instance',
      onStream: tagged('old'),
    });
    const renewed = await connectGateway(world, proxy, {
      orgId: 'org-a',
      gatewayId: 'gw-1',
      scope: 'instance',
      onStream: tagged('new'),
    });
    assert.equal(proxy.table.size, 2);
    for (let i = 0; i < 3; i++) {
      const { status, socket } = await dialProxy(world, proxy, outerA());
      assert.ok(status.ok);
      socket.resume();
      await closed(socket);
    }
    assert.deepEqual(seen, ['new', 'old', 'new']);
    renewed.close();
    await eventually(() => proxy.table.size === 1);
    const { status, socket } = await dialProxy(world, proxy, outerA());
    assert.ok(status.ok);
    socket.resume();
    await closed(socket);
    assert.equal(seen.at(-1), 'old');
    old.close();
    await eventually(() => proxy.table.size === 0);
  });

  it('retries a stream whose channel open fails on the next tunnel: the client sees no failed new stream', async () => {
    const seen: string[] = [];
    const tagged = (tag: string) => (ch: import('node:stream').Duplex) => {
      seen.push(tag);
      ch.on('error', () => {});
      ch.end(tag);
    };
    let refusing = false;
    const a = await connectGateway(world, proxy, {
      orgId: 'org-a',
      gatewayId: 'gw-1',
      scope: 'instance',
      onStream: tagged('a'),
    });
    const b = await connectGateway(world, proxy, {
      orgId: 'org-a',
      gatewayId: 'gw-1',
      scope: 'instance',
      onStream: tagged('b'),
      refuseChannels: () => refusing,
    });
    const dial = async (): Promise<void> => {
      const { status, socket } = await dialProxy(world, proxy, outerA());
      assert.ok(status.ok, JSON.stringify(status));
      socket.resume();
      await closed(socket);
    };
    await dial();
    await dial();
    assert.deepEqual(seen, ['b', 'a'], 'spread over both replicas');
    refusing = true; // b is picked next (least recently used) and refuses the channel
    for (let i = 0; i < 4; i++) await dial();
    assert.deepEqual(seen.slice(2), ['a', 'a', 'a', 'a'], 'every new stream carried, by a');
    assert.ok(
      proxy.table.all().some((t) => !t.healthy),
      'the refusing tunnel is tried last from now on',
    );
    refusing = false;
    a.close();
    b.close();
    await eventually(() => proxy.table.size === 0);
  });

  it('holds a gateway to its maximum of streams', async () => {
    const p = await startProxy(world, { scope: 'instance', limits: { maxStreamsPerGateway: 2 } });
    try {
      const gw = await connectGateway(world, p, { orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance' });
      const a = await dialProxy(world, p, outerA());
      const b = await dialProxy(world, p, outerA());
      assert.ok(a.status.ok && b.status.ok);
      await refused(p, outerA(), 'E_LIMIT');
      a.socket.destroy();
      await eventually(() => p.stats().streams === 1);
      const c = await dialProxy(world, p, outerA());
      assert.ok(c.status.ok);
      b.socket.destroy();
      c.socket.destroy();
      gw.close();
    } finally {
      await p.stop();
    }
  });

  it('reloads certificates and trust without dropping a tunnel or a stream', async () => {
    const gw = await connectGateway(world, proxy, { orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance' });
    const { status, socket } = await dialProxy(world, proxy, outerA());
    assert.ok(status.ok);
    const fresh = proxyCredentials(world, 'instance', undefined, 'p1');
    proxy.reload(fresh);
    const data = Buffer.from('still here after reload');
    assert.ok((await roundTrip(socket, data)).equals(data));
    assert.equal(proxy.table.size, 1);
    // New handshakes use the new certificates; the old tunnel keeps carrying new streams.
    const second = await dialProxy(world, proxy, outerA());
    assert.ok(second.status.ok);
    assert.equal(
      second.socket.getPeerX509Certificate()?.fingerprint256,
      new (await import('node:crypto')).X509Certificate(fresh.tlsChain).fingerprint256,
    );
    // A bad reload throws and changes nothing.
    assert.throws(() => proxy.reload({ ...fresh, pkiClientCaPems: ['not a pem'] }));
    assert.throws(() => proxy.reload({ ...fresh, tlsKey: world.proxyTls({ scope: 'instance', proxyId: 'p1' }).key }));
    const third = await dialProxy(world, proxy, outerA());
    assert.ok(third.status.ok);
    for (const s of [socket, second.socket, third.socket]) s.destroy();
    gw.close();
    await eventually(() => proxy.table.size === 0 && proxy.stats().streams === 0);
  });
});

describe('relay: drain', () => {
  it('stops accepting, lets a stream finish, then closes the tunnels', async () => {
    const proxy = await startProxy(world, { scope: 'instance' });
    const gw = await connectGateway(world, proxy, { orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance' });
    const { status, socket } = await dialProxy(world, proxy, outerA());
    assert.ok(status.ok);
    const controller = new AbortController();
    let drained = false;
    const draining = proxy.drain(controller.signal).then(() => {
      drained = true;
    });
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(drained, false, 'a stream is still open');
    const data = Buffer.from('finishing my work');
    assert.ok((await roundTrip(socket, data)).equals(data));
    socket.end();
    await draining;
    assert.equal(proxy.table.size, 0);
    await new Promise<void>((resolve) => gw.client.once('close', () => resolve()));
  });

  it('closes what is left when the deadline aborts the drain', async () => {
    const proxy = await startProxy(world, { scope: 'instance' });
    await connectGateway(world, proxy, { orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance' });
    const { socket } = await dialProxy(world, proxy, outerA());
    const controller = new AbortController();
    const draining = proxy.drain(controller.signal);
    controller.abort();
    await draining;
    await closed(socket);
    assert.equal(proxy.stats().streams, 0);
  });
});

describe('relay: org proxy', () => {
  let proxy: ProxyServer;
  before(async () => {
    proxy = await startProxy(world, { scope: 'org', orgId: 'org-a' });
  });
  after(() => proxy.stop());

  it('carries its org, refuses instance and other-org outer certs', async () => {
    const gw = await connectGateway(world, proxy, { orgId: 'org-a', gatewayId: 'gw-1', scope: 'org' });
    const ok = await dialProxy(world, proxy, outerA({ scope: 'org' }), { scope: 'org', orgId: 'org-a' });
    assert.ok(ok.status.ok);
    ok.socket.destroy();
    const o = { scope: 'org' as const, orgId: 'org-a' };
    await refused(proxy, outerA(), 'E_CERT_UNTRUSTED', o);
    await refused(
      proxy,
      world.platformOuter({ orgId: 'org-b', gatewayId: 'gw-1', scope: 'org' }),
      'E_CERT_UNTRUSTED',
      o,
    );
    gw.close();
  });
});
