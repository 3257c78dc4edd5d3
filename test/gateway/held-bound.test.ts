/**
 * Held inner sessions (`tcp+go`, `ping+go`) have their own bound, max_held_sessions (lib/gateway/inner.ts), over
 * real sockets with a real inner server:
 *   - a held session is not pending: a proxy can have max_pending_channels channels in their handshake and
 *     max_held_sessions sessions held at once, and the pending cap counts the former only;
 *   - at max_held_sessions the next session is not held: offered [`tcp+go`, `tcp`] it gets the plain mode (a stream
 *     now, as with hold_inner_sessions off), offered only `tcp+go` (a session to hold ahead of need, as
 *     lib/client dial.ts holdInner offers it) its handshake fails: no target dial, no refusal audited, one
 *     limit refusal counted (limit max_held_sessions); a slot given back holds again; the bound is live (reload);
 *   - GO, an end before GO, a refusal at GO, a byte other than GO, the handshake timeout and a channel closing
 *     each give a held slot back exactly once: with a session kept held through the others, the count is back to
 *     exactly 1, then 0.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { after, before, describe, it } from 'node:test';
import type tls from 'node:tls';
import type { LimitRefusal } from '../../lib/gateway/inner.js';
import { GO_ALPNS } from '../../lib/protocol/relay.js';
import { World } from '../helpers/world.js';
import { dialInner, echoServer, type Harness, readAll, readGatewayStatus, startHarness, waitFor } from './harness.js';

const ORG = 'org-a';
const GW = 'gw-1';
const PROXY = 'test-proxy';
const world = new World();
const id = { orgId: ORG, gatewayId: GW };
const GO = Buffer.from([0x01]);
let echo: Awaited<ReturnType<typeof echoServer>>;

before(async () => {
  echo = await echoServer();
});
after(async () => {
  await echo.close();
});

const client = (o: Partial<Parameters<World['platformInner']>[0]> = {}) =>
  world.platformInner({ orgId: ORG, gatewayId: GW, target: { host: '127.0.0.1', port: echo.port }, ...o });
const counts = (h: Harness) => ({ pending: h.inner.pendingChannels, held: h.inner.heldSessions });
const settle = () => new Promise((r) => setTimeout(r, 150));

async function harness(over: Parameters<typeof startHarness>[1]['over'] = {}) {
  const limits: LimitRefusal[] = [];
  const h = await startHarness(world, {
    orgId: ORG,
    gatewayId: GW,
    ports: [echo.port],
    over: { onChannelRefused: (r) => limits.push(r), ...over },
  });
  return { h, limits };
}

/** A session held at `h` (offered [tcp+go, tcp], as a platform's stream offers it). */
async function hold(h: Harness): Promise<tls.TLSSocket> {
  const socket = await dialInner(world, h.port, client(), [GO_ALPNS.tcp, 'tcp'], id);
  assert.equal(socket.alpnProtocol, GO_ALPNS.tcp, 'held');
  socket.on('error', () => undefined);
  return socket;
}

/** A channel that never starts its handshake (pending until it goes). */
async function silentChannel(h: Harness): Promise<net.Socket> {
  const s = net.connect(h.port, '127.0.0.1');
  s.on('error', () => undefined);
  await new Promise((r) => s.once('connect', r));
  return s;
}

describe('max_held_sessions', () => {
  it('held sessions are not pending: a proxy has max_pending_channels pending and max_held_sessions held at once', async () => {
    const { h } = await harness({ maxPendingChannels: 2, maxHeldSessions: 3 });
    try {
      const held = [await hold(h), await hold(h), await hold(h)];
      await settle();
      assert.deepEqual(counts(h), { pending: 0, held: 3 });
      assert.equal(h.inner.admitChannel(PROXY), true, 'three held sessions leave the pending cap free');
      const silent = [await silentChannel(h), await silentChannel(h)];
      await waitFor(() => h.inner.pendingChannels === 2, 5000, 'two pending channels');
      assert.deepEqual(counts(h), { pending: 2, held: 3 });
      assert.equal(h.inner.admitChannel(PROXY), false, 'the pending cap counts pending channels only');
      for (const s of [...held, ...silent]) s.destroy();
      await waitFor(() => h.inner.pendingChannels + h.inner.heldSessions === 0, 5000, 'everything released');
    } finally {
      await h.close();
    }
  });

  it('at the bound a session is not held: the plain mode when offered, else no session; no target dial for a hold', async () => {
    const { h, limits } = await harness({ maxHeldSessions: 2 });
    try {
      const held = [await hold(h), await hold(h)];
      assert.equal(h.inner.heldSessions, 2);
      const connections = echo.connections();
      const refusals = h.refusals.length;

      // A stream offering [tcp+go, tcp]: the plain mode, started now, and it works.
      const plain = await dialInner(world, h.port, client(), [GO_ALPNS.tcp, 'tcp'], id);
      assert.equal(plain.alpnProtocol, 'tcp', 'at the bound: the plain mode');
      assert.deepEqual(await readGatewayStatus(plain), { ok: true });
      const back = new Promise<string>((r) => plain.once('data', (d: Buffer) => r(d.toString())));
      plain.write('plain');
      assert.equal(await back, 'plain');
      plain.destroy();
      assert.equal(echo.connections(), connections + 1, 'the plain stream dialled its target');
      assert.equal(limits.length, 1);
      assert.deepEqual(
        { limit: limits[0]?.limit, code: limits[0]?.code, proxyId: limits[0]?.proxyId },
        { limit: 'max_held_sessions', code: 'E_LIMIT', proxyId: PROXY },
      );

      // A session to hold ahead of need, offering only tcp+go: no session, nothing admitted or dialled.
      await assert.rejects(dialInner(world, h.port, client(), [GO_ALPNS.tcp], id), /no application protocol/);
      await settle();
      assert.equal(echo.connections(), connections + 1, 'no target dial for a hold refused');
      assert.equal(h.refusals.length, refusals, 'nothing audited: a hold refused is no stream refused');
      assert.equal(limits.length, 2, 'counted as a limit refusal');
      assert.deepEqual(counts(h), { pending: 0, held: 2 }, 'never past the bound');

      // A slot given back (GO): the next session is held again.
      held[0]!.write(Buffer.concat([GO, Buffer.from('go')]));
      assert.deepEqual(await readGatewayStatus(held[0]!), { ok: true });
      assert.equal(h.inner.heldSessions, 1);
      const again = await dialInner(world, h.port, client(), [GO_ALPNS.tcp], id);
      assert.equal(again.alpnProtocol, GO_ALPNS.tcp, 'below the bound again: held');
      assert.equal(h.inner.heldSessions, 2);

      // Live (SIGHUP): a lower bound applies to new sessions, the held ones stay; a higher one holds again.
      h.inner.reload({ maxHeldSessions: 1 });
      assert.equal(h.inner.settings.maxHeldSessions, 1);
      await assert.rejects(dialInner(world, h.port, client(), [GO_ALPNS.tcp], id), /no application protocol/);
      assert.equal(h.inner.heldSessions, 2, 'sessions held already stay held');
      h.inner.reload({ maxHeldSessions: 3 });
      const raised = await dialInner(world, h.port, client(), [GO_ALPNS.tcp], id);
      assert.equal(raised.alpnProtocol, GO_ALPNS.tcp, 'raised: held again');
      assert.equal(h.inner.heldSessions, 3);
      for (const s of [...held, again, raised]) s.destroy();
      await waitFor(() => h.inner.heldSessions === 0, 5000, 'the held slots back');
    } finally {
      await h.close();
    }
  });

  it('GO, end, refusal at GO, a wrong first byte, the timeout and a channel closing each give the slot back once', async () => {
    const { h } = await harness({ maxHeldSessions: 100 });
    const { h: slow } = await harness({ handshakeTimeoutMs: 1000 });
    const { h: cut } = await harness();
    try {
      const keeper = await hold(h); // held through all the others: a slot given back twice would take its count
      const n = () => h.inner.heldSessions;

      const go = await hold(h);
      go.write(Buffer.concat([GO, Buffer.from('x')]));
      assert.deepEqual(await readGatewayStatus(go), { ok: true });
      go.destroy();

      const ended = await hold(h);
      ended.end();
      await readAll(ended);

      const revokedCred = client();
      const revoked = await dialInner(world, h.port, revokedCred, [GO_ALPNS.tcp, 'tcp'], id);
      h.revoked.add({ kind: 'grant', subject: revokedCred.grant.grantId, orgId: ORG });
      revoked.write(GO);
      const refused = await readGatewayStatus(revoked);
      assert.ok(refused !== 'closed' && !refused.ok && refused.code === 'E_CERT_REVOKED', JSON.stringify(refused));

      const wrong = await hold(h);
      wrong.write(Buffer.from([0x02]));
      await readAll(wrong);

      await waitFor(() => n() === 1, 5000, 'every slot but the keeper back');
      await settle();
      assert.deepEqual(counts(h), { pending: 0, held: 1 }, 'each given back once: the keeper still counted');
      keeper.destroy();
      await waitFor(() => n() === 0, 5000, 'the keeper back');

      // The handshake timeout: a session cut at it gives its slot back, once (the later one, not yet cut, stays).
      const timedOut = await hold(slow);
      await new Promise((r) => setTimeout(r, 500));
      const later = await hold(slow);
      await readAll(timedOut);
      await waitFor(() => slow.inner.heldSessions === 1, 5000, 'the timed-out slot back');
      assert.ok(!later.destroyed, 'the later session is still held');
      await settle();
      assert.equal(slow.inner.heldSessions, 1, 'given back once: the later session still counted');
      later.destroy();
      await waitFor(() => slow.inner.heldSessions === 0, 5000, 'the later slot back');

      // The channel closing under held sessions (the tunnel gone): their slots go with it.
      await hold(cut);
      await hold(cut);
      assert.equal(cut.inner.heldSessions, 2);
      await cut.close();
      await waitFor(() => cut.inner.heldSessions === 0, 5000, 'the slots of closed channels back');
      assert.equal(cut.inner.pendingChannels, 0);
    } finally {
      await h.close();
      await slow.close();
      await cut.close();
    }
  });
});
