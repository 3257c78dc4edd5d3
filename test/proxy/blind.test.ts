/**
 * BLINDNESS: the proxy carries the platform's inner mTLS session to the gateway and never sees its plaintext.
 * The proxy's tap sees every byte it reads from or writes to a platform connection after the handshake (the
 * status line included); a marker sent inside the inner TLS must never appear in them, in either direction.
 * A control stream without inner TLS proves the tap does see what it carries.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { checkPeer } from '../../lib/pki/tls.js';
import type { ProxyServer } from '../../lib/proxy/proxy.js';
import { World } from '../helpers/world.js';
import { closed, connectGateway, dialProxy, roundTrip, startProxy, type TestGateway } from './harness.js';

const world = new World();
const MARKER = `PLAINTEXT-MARKER-${Math.random().toString(36).slice(2)}`;
const REPLY = `GATEWAY-REPLY-${Math.random().toString(36).slice(2)}`;

describe('blindness', () => {
  const seen: Buffer[] = [];
  let proxy: ProxyServer;
  let gw: TestGateway;
  let grants = 0;

  before(async () => {
    proxy = await startProxy(world, { scope: 'instance', tap: (_d, chunk) => seen.push(Buffer.from(chunk)) });
    const inner = world.gatewayInnerTls({ orgId: 'org-a', gatewayId: 'gw-1' });
    gw = await connectGateway(world, proxy, {
      orgId: 'org-a',
      gatewayId: 'gw-1',
      scope: 'instance',
      onStream: (channel) => {
        channel.on('error', () => {});
        // The first byte tells the in-test gateway whether the platform speaks TLS (0x16) or plain text.
        channel.once('readable', () => {
          const first = channel.read(1) as Buffer | null;
          if (!first) return;
          channel.unshift(first);
          if (first[0] !== 0x16) {
            channel.pipe(channel);
            return;
          }
          const s = new tls.TLSSocket(channel, {
            isServer: true,
            key: inner.keyPem,
            cert: inner.certPem,
            ca: [world.org('org-a').gatewayClient.pem],
            requestCert: true,
            rejectUnauthorized: false,
            ALPNProtocols: ['tcp'],
            minVersion: 'TLSv1.3',
          });
          s.on('error', () => {});
          s.once('secure', () => {
            const peer = checkPeer(
              s,
              { anchors: world.org('org-a').gatewayClient.pem, purpose: 'clientAuth', requireGrant: true },
              world.now(),
            );
            if (!peer.ok) return s.destroy();
            grants++;
            s.on('data', (d: Buffer) => s.write(Buffer.concat([Buffer.from(REPLY), d])));
            s.once('end', () => s.end()); // half-close: the platform's end-of-write is passed on, then we close
          });
        });
      },
    });
  });
  after(async () => {
    gw.close();
    await proxy.stop();
  });

  const carried = () => Buffer.concat(seen);

  it('never sees the plaintext of the inner TLS session', async () => {
    const { status, socket } = await dialProxy(
      world,
      proxy,
      world.platformOuter({ orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance' }),
    );
    assert.ok(status.ok);
    const innerCert = world.platformInner({ orgId: 'org-a', gatewayId: 'gw-1' });
    const inner = tls.connect({
      socket,
      key: innerCert.keyPem,
      cert: innerCert.certPem,
      ca: [world.org('org-a').gatewayServer.pem],
      ALPNProtocols: ['tcp'],
      minVersion: 'TLSv1.3',
      checkServerIdentity: (_host, cert) =>
        cert.subjectaltname === `URI:${world.gatewayUri('org-a', 'gw-1')}` ? undefined : new Error('wrong gateway'),
    });
    await once(inner, 'secureConnect');
    const payload = Buffer.from(`${MARKER} `.repeat(2000));
    const back = await roundTrip(inner, payload);
    assert.ok(back.includes(MARKER) && back.includes(REPLY), 'the gateway saw the plaintext and answered');
    assert.equal(grants, 1);
    inner.end();
    await closed(socket);

    const bytes = carried();
    assert.ok(bytes.length > payload.length, `the tap saw the stream (${bytes.length} bytes)`);
    assert.equal(bytes.includes(MARKER), false, 'marker leaked to the proxy');
    assert.equal(bytes.includes(REPLY), false, 'reply leaked to the proxy');
    assert.ok(bytes.includes('{"ok":true}\n'), 'the status line is the one thing the proxy wrote in clear');
  });

  it('control: without inner TLS the same tap does see the marker', async () => {
    seen.length = 0;
    const { status, socket } = await dialProxy(
      world,
      proxy,
      world.platformOuter({ orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance' }),
    );
    assert.ok(status.ok);
    const back = await roundTrip(socket, Buffer.from(MARKER));
    assert.ok(back.includes(MARKER));
    socket.destroy();
    assert.ok(carried().includes(MARKER));
  });
});
