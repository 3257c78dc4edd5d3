/**
 * Inner TLS 1.3 session resumption (lib/pki/tls.ts mtlsResumableServerOptions, lib/client/grant-tls.ts): a
 * resumed session saves the handshake's signatures and certificates, never a decision. The gateway admits the
 * grant of a resumed session exactly as a full one: refused once the grant is revoked, or expired by the
 * injected clock. Real sockets, the gateway's InnerServer (test/gateway/harness.ts).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import tls from 'node:tls';
import { mtlsClientOptions } from '../../lib/pki/tls.js';
import type { RelayStatus } from '../../lib/protocol/relay.js';
import { World } from '../helpers/world.js';
import { echoServer, type Harness, readGatewayStatus, startHarness } from './harness.js';

const ORG = 'org-a';
const GW = 'gw-1';
const world = new World();
let echo: Awaited<ReturnType<typeof echoServer>>;
let h: Harness;

before(async () => {
  echo = await echoServer();
  h = await startHarness(world, { orgId: ORG, gatewayId: GW, ports: [echo.port] });
});
after(async () => {
  await h.close();
  await echo.close();
});

const client = (o: Partial<Parameters<World['platformInner']>[0]> = {}) =>
  world.platformInner({ orgId: ORG, gatewayId: GW, target: { host: '127.0.0.1', port: echo.port }, ...o });

/** One inner session in ping mode, offering `session`; its status line, whether it resumed, and its ticket. */
async function dial(cred: ReturnType<typeof client>, session?: Buffer) {
  const socket = tls.connect({
    ...mtlsClientOptions({
      key: cred.keyPem,
      chain: cred.certPem,
      anchors: [world.org(ORG).gatewayServer.pem],
      alpn: ['ping'],
      host: '127.0.0.1',
      port: h.port,
    }),
    ...(session ? { session } : {}),
  });
  const ticket = new Promise<Buffer>((resolve) => socket.once('session', resolve));
  await once(socket, 'secureConnect');
  const status = await readGatewayStatus(socket);
  const resumed = socket.isSessionReused();
  const got = status !== 'closed' && status.ok ? await Promise.race([ticket, delay(2000)]) : undefined;
  socket.destroy();
  return { status, resumed, ticket: got };
}

const delay = (ms: number) => new Promise<undefined>((r) => setTimeout(() => r(undefined), ms));

function refusedWith(status: RelayStatus | 'closed', code: string): void {
  assert.ok(status !== 'closed' && !status.ok, `refused: ${JSON.stringify(status)}`);
  assert.equal(status.code, code, status.message);
}

describe('inner session resumption', () => {
  it('a resumed session is admitted while its grant holds', async () => {
    const cred = client();
    const first = await dial(cred);
    assert.deepEqual(first.status, { ok: true });
    assert.equal(first.resumed, false);
    assert.ok(first.ticket, 'the gateway gives a ticket');
    const again = await dial(cred, first.ticket);
    assert.equal(again.resumed, true, 'the second session resumed the first');
    assert.deepEqual(again.status, { ok: true });
  });

  it('a resumed session is refused once its grant is revoked', async () => {
    const cred = client({ identityId: 'revoked-later' });
    const first = await dial(cred);
    assert.ok(first.ticket);
    h.revoked.add({ kind: 'grant', subject: cred.grant.grantId, orgId: ORG });
    const before = h.refusals.length;
    const again = await dial(cred, first.ticket);
    assert.equal(again.resumed, true);
    refusedWith(again.status, 'E_CERT_REVOKED');
    assert.equal(h.refusals.length, before + 1);
  });

  it('a resumed session is refused once its grant has expired', async () => {
    const cred = client({ identityId: 'expires', lifetimeSec: 120 });
    const first = await dial(cred);
    assert.ok(first.ticket);
    const skip = cred.grant.notAfter * 1000 - world.nowMs() + 30_000;
    world.advance(skip);
    try {
      const again = await dial(cred, first.ticket);
      assert.equal(again.resumed, true);
      refusedWith(again.status, 'E_GRANT_EXPIRED');
    } finally {
      world.advance(-skip);
    }
  });
});
