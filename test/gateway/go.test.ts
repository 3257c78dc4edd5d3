/**
 * `tcp+go` (lib/protocol/relay.ts): the inner session held until the platform's GO byte, over real sockets.
 *   - it is mode tcp for the grant: a grant without tcp is refused with it exactly as with `tcp`;
 *   - a gateway offered [`tcp+go`, `tcp`] picks `tcp+go`; the target sees no connection before GO;
 *   - the grant is judged again at GO: revoked while held, it is refused then (E_CERT_REVOKED), no target dial;
 *   - a session ended before GO is no refusal and no target connection, and it stops being pending;
 *   - a session held past the handshake timeout is refused E_TIMEOUT, no target connection.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import type tls from 'node:tls';
import { GO_ALPN, type RelayStatus } from '../../lib/protocol/relay.js';
import { World } from '../helpers/world.js';
import { dialInner, echoServer, type Harness, readAll, readGatewayStatus, startHarness, waitFor } from './harness.js';

const ORG = 'org-a';
const GW = 'gw-1';
const world = new World();
let echo: Awaited<ReturnType<typeof echoServer>>;
let h: Harness;
let slow: Harness;

before(async () => {
  echo = await echoServer();
  h = await startHarness(world, { orgId: ORG, gatewayId: GW, ports: [echo.port] });
  slow = await startHarness(world, {
    orgId: ORG,
    gatewayId: GW,
    ports: [echo.port],
    over: { handshakeTimeoutMs: 400 },
  });
});
after(async () => {
  await h.close();
  await slow.close();
  await echo.close();
});

const id = { orgId: ORG, gatewayId: GW };
const client = (o: Parameters<World['platformInner']>[0] extends infer P ? Partial<P> : never = {}) =>
  world.platformInner({ orgId: ORG, gatewayId: GW, target: { host: '127.0.0.1', port: echo.port }, ...o });
const GO = Buffer.from([0x01]);
const settle = () => new Promise((r) => setTimeout(r, 200));

async function refusedWith(socket: tls.TLSSocket, code: string): Promise<void> {
  const status = await readGatewayStatus(socket);
  assert.ok(status !== 'closed', 'the platform is told why');
  assert.equal(status.ok, false);
  assert.equal((status as Extract<RelayStatus, { ok: false }>).code, code);
  assert.equal((await readAll(socket)).data, '', 'no byte after the refusal');
}

describe('inner server: tcp+go', () => {
  it('does not widen a grant: a grant without tcp is refused with tcp+go as with tcp', async () => {
    for (const modes of [['ping'], ['http'], ['health']] as const) {
      const before = h.refusals.length;
      const connections = echo.connections();
      const socket = await dialInner(world, h.port, client({ modes: [...modes] }), GO_ALPN, id);
      socket.write(Buffer.concat([GO, Buffer.from('must not arrive')]));
      await refusedWith(socket, 'E_GRANT_TARGET');
      await waitFor(() => h.refusals.length > before, 5000, 'refusal record');
      assert.match(h.refusals.at(-1)?.reason ?? '', /mode tcp/, `tcp+go is mode tcp for a ${modes[0]} grant`);
      assert.equal(echo.connections(), connections, 'the target saw no connection');
    }
  });

  it('is picked before tcp, dials the target only at GO, then carries the first bytes', async () => {
    const cred = client();
    const connections = echo.connections();
    const socket = await dialInner(world, h.port, cred, GO_ALPN, id);
    assert.equal(socket.alpnProtocol, GO_ALPN);
    await settle();
    assert.equal(echo.connections(), connections, 'no target connection before GO');
    assert.equal(h.inner.pendingChannels, 1, 'held: one pending channel');
    socket.write(Buffer.concat([GO, Buffer.from('hello')]));
    const status = await readGatewayStatus(socket);
    assert.deepEqual(status, { ok: true });
    const echoed = await new Promise<string>((resolve) => {
      let data = '';
      socket.on('data', (d: Buffer) => {
        data += d.toString();
        if (data.length >= 5) resolve(data);
      });
    });
    assert.equal(echoed, 'hello');
    assert.equal(echo.connections(), connections + 1);
    assert.equal(h.inner.pendingChannels, 0);
    socket.end();
    await waitFor(() => h.records.some((r) => r.grantId === cred.grant.grantId), 5000, 'stream record');
    assert.equal(h.records.find((r) => r.grantId === cred.grant.grantId)?.mode, 'tcp', 'audited as mode tcp');
  });

  it('judges the grant again at GO: revoked while held, refused then, no target connection', async () => {
    const cred = client();
    const connections = echo.connections();
    const socket = await dialInner(world, h.port, cred, GO_ALPN, id);
    await settle();
    const before = h.refusals.length;
    h.revoked.add({ kind: 'grant', subject: cred.grant.grantId, orgId: ORG });
    socket.write(Buffer.concat([GO, Buffer.from('must not arrive')]));
    await refusedWith(socket, 'E_CERT_REVOKED');
    await waitFor(() => h.refusals.length > before, 5000, 'refusal record');
    assert.equal(h.refusals.at(-1)?.code, 'E_CERT_REVOKED');
    assert.equal(echo.connections(), connections, 'the target saw no connection');
  });

  it('a session ended before GO is no refusal and no target connection', async () => {
    const before = h.refusals.length;
    const connections = echo.connections();
    const socket = await dialInner(world, h.port, client(), GO_ALPN, id);
    await settle();
    assert.equal(h.inner.pendingChannels, 1);
    socket.end();
    await readAll(socket);
    await waitFor(() => h.inner.pendingChannels === 0, 5000, 'the held session to go');
    await settle();
    assert.equal(h.refusals.length, before, 'a platform that gave up is no refusal');
    assert.equal(echo.connections(), connections, 'the target saw no connection');
  });

  it('a session held past the handshake timeout is refused E_TIMEOUT, no target connection', async () => {
    const before = slow.refusals.length;
    const connections = echo.connections();
    const socket = await dialInner(world, slow.port, client(), GO_ALPN, id);
    await readAll(socket);
    await waitFor(() => slow.refusals.length > before, 5000, 'refusal record');
    assert.equal(slow.refusals.at(-1)?.code, 'E_TIMEOUT');
    await waitFor(() => slow.inner.pendingChannels === 0, 5000, 'the held session to stop being pending');
    assert.equal(echo.connections(), connections, 'the target saw no connection');
  });
});
