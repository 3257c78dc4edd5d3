/**
 * Gateway refusals end to end, as the platform sees them: lib/client → real proxy (lib/proxy) → SSH tunnel →
 * real Gateway. Each refusal arrives as a ConnectError at hop 'gateway' with the gateway's own code, read
 * from its status line inside the inner TLS (the proxy carries it as ciphertext like any payload).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { completeStream, dialViaProxy, holdInner, openRelay } from '../../lib/client/dial.js';
import { ConnectError } from '../../lib/client/errors.js';
import type { ClientGrant } from '../../lib/client/grant.js';
import type { Gateway } from '../../lib/gateway/gateway.js';
import type { Refusal } from '../../lib/gateway/inner.js';
import type { ModeAlpn } from '../../lib/protocol/relay.js';
import { freePort } from '../helpers/openssh.js';
import { World } from '../helpers/world.js';
import {
  GW,
  gatewayState,
  platformGrant,
  type RunningProxy,
  settings,
  startGateway,
  startRealProxy,
} from './deploy.js';
import { echoServer } from './harness.js';

const world = new World();
let echo: Awaited<ReturnType<typeof echoServer>>;
let proxy: RunningProxy;
let gateway: Gateway;
let refusals: Refusal[];
let closedPort: number;
/** How far the gateway's clock runs ahead of everyone else's. */
let gatewayAheadMs = 0;

before(async () => {
  echo = await echoServer();
  closedPort = await freePort();
  proxy = await startRealProxy(world, 'p1');
  const gatewayClock = () => new Date(world.nowMs() + gatewayAheadMs);
  ({ gateway, refusals } = startGateway(
    world,
    gatewayState(world, [proxy]),
    settings([echo.port, closedPort]),
    gatewayClock,
  ));
  await gateway.pool.whenUp(10_000);
});
after(async () => {
  await gateway?.close();
  await proxy?.server.stop();
  await echo?.close();
});

async function refused(grant: ClientGrant, mode: ModeAlpn): Promise<ConnectError> {
  try {
    const { socket } = await dialViaProxy(grant, grant.proxies[0]!, mode);
    socket.destroy();
  } catch (err) {
    assert.ok(err instanceof ConnectError, String(err));
    assert.equal(err.hop, 'gateway', err.describe());
    assert.equal(err.gatewayId, GW);
    return err;
  }
  assert.fail('the gateway accepted the stream');
}

const grantFor = (port: number, mode: 'tcp' | 'ping' = 'tcp', o: { lifetimeSec?: number } = {}) =>
  platformGrant(world, [proxy], { host: '127.0.0.1', port }, mode, GW, o);

describe('gateway refusals reach the platform with their code', () => {
  it('accepted: the status line is consumed, payload follows', async () => {
    const grant = await grantFor(echo.port);
    const { socket } = await dialViaProxy(grant, grant.proxies[0]!, 'tcp');
    const back = new Promise<string>((resolve) => socket.once('data', (d: Buffer) => resolve(d.toString())));
    socket.write('hello');
    assert.equal(await back, 'hello');
    socket.destroy();
  });

  it('E_TARGET_NOT_ALLOWED, naming the allowlist key', async () => {
    const err = await refused(await grantFor(1), 'tcp');
    assert.equal(err.code, 'E_TARGET_NOT_ALLOWED');
    assert.match(err.detail, /127\.0\.0\.1:1 .*allow_ports/);
    assert.equal(refusals.at(-1)?.code, 'E_TARGET_NOT_ALLOWED');
  });

  it('E_GRANT_TARGET: a tcp grant used for another mode', async () => {
    const err = await refused(await grantFor(echo.port, 'tcp'), 'ping');
    assert.equal(err.code, 'E_GRANT_TARGET');
    assert.match(err.detail, /mode ping/);
  });

  it('E_TARGET_UNREACHABLE: allowed, but nothing listens', async () => {
    const err = await refused(await grantFor(closedPort), 'tcp');
    assert.equal(err.code, 'E_TARGET_UNREACHABLE');
    assert.match(err.detail, /ECONNREFUSED/);
  });

  it('E_CERT_REVOKED: the grant was revoked at the gateway', async () => {
    const grant = await grantFor(echo.port);
    gateway.revoke({ kind: 'grant', subject: grant.grantId, orgId: 'org-a' });
    const err = await refused(grant, 'tcp');
    assert.equal(err.code, 'E_CERT_REVOKED');
  });

  it('E_GRANT_EXPIRED: the gateway judges the grant past its notAfter', async () => {
    const grant = await grantFor(echo.port, 'tcp', { lifetimeSec: 120 });
    // The gateway's clock is past the grant (inside the certificate's 60 s skew); the proxy's is not, so it
    // routes (it ends a stream at the outer certificate's notAfter, as the gateway does at the grant's).
    gatewayAheadMs = grant.expiresAtMs - world.nowMs() + 30_000;
    try {
      const err = await refused(grant, 'tcp');
      assert.equal(err.code, 'E_GRANT_EXPIRED', err.describe());
      assert.equal(refusals.at(-1)?.code, 'E_GRANT_EXPIRED');
    } finally {
      gatewayAheadMs = 0;
    }
  });

  it('a session held ahead (tcp+go) carries the stream, and the gateway certificate is judged again when used', async () => {
    const grant = await grantFor(echo.port);
    const first = await dialViaProxy(grant, grant.proxies[0]!, 'tcp');
    first.socket.destroy();
    let aheadMs = 0;
    const now = () => new Date(world.nowMs() + aheadMs);
    const held = await holdInner(await openRelay(grant, grant.proxies[0]!, { now }), 'tcp', { now });
    assert.ok(held.held, 'the gateway negotiated tcp+go on the first stream: the inner session is held');
    const used = await completeStream(held, 'tcp', { now });
    assert.equal(used.held, true);
    const back = new Promise<string>((resolve) => used.socket.once('data', (d: Buffer) => resolve(d.toString())));
    used.socket.write('held');
    assert.equal(await back, 'held');
    used.socket.destroy();

    // Judged when held, and again when used: by then the gateway's certificate has expired (the client's clock).
    const later = await holdInner(await openRelay(grant, grant.proxies[0]!, { now }), 'tcp', { now });
    aheadMs = 20 * 365 * 86_400_000;
    await assert.rejects(
      completeStream(later, 'tcp', { now }),
      (err) => err instanceof ConnectError && err.hop === 'gateway' && /gateway certificate/.test(err.detail),
    );
  });

  it('a ping session held ahead (ping+go) carries a ping stream, its probe sent with GO; it serves no other mode', async () => {
    const grant = await grantFor(echo.port, 'ping');
    const first = await dialViaProxy(grant, grant.proxies[0]!, 'ping');
    assert.equal(first.socket.alpnProtocol, 'ping+go', 'a new gateway picks ping+go');
    first.socket.destroy();
    const held = await holdInner(await openRelay(grant, grant.proxies[0]!), 'ping');
    assert.ok(held.held, 'the gateway negotiated ping+go on the first stream: the inner session is held');
    const used = await completeStream(held, 'ping', { firstBytes: () => Buffer.from('probe') });
    assert.equal(used.held, true);
    assert.equal(used.sentFirst, 5, 'the probe went with GO');
    const back = new Promise<string>((resolve) => used.socket.once('data', (d: Buffer) => resolve(d.toString())));
    assert.equal(await back, 'probe');
    used.socket.destroy();
    // Held for ping: a tcp stream cannot take it (a relay gone, dialled again by the connector).
    const other = await holdInner(await openRelay(grant, grant.proxies[0]!), 'ping');
    await assert.rejects(
      completeStream(other, 'tcp'),
      (err) => err instanceof ConnectError && err.code === 'E_STREAM_CLOSED' && /held for ping/.test(err.detail),
    );
  });
});
