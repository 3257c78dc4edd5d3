/**
 * The client against a gateway at its max_held_sessions (lib/gateway/inner.ts; lib/client dial.ts holdInner), over
 * real sockets (lib/proxy and lib/gateway in this process, an SSH tunnel between them), the gateway holding at
 * most one session per proxy:
 *   - a session to hold ahead offers `tcp+go` alone: past the bound its handshake fails, no stream starts (no
 *     stream record, no target connection), the gateway audits nothing, and the grant holds none ahead until a stream negotiates `tcp+go`
 *     again; the stream itself, dialled in full, gets plain tcp and goes through; the held one still serves its own;
 *   - two connectors with relays opened ahead: a connector whose hold is declined dials its stream in full (one
 *     target connection, no failure seen), every stream byte-exact, and the held count never past the bound.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { GatewayConnector } from '../../lib/client/connector.js';
import { completeStream, dialViaProxy, holdInner, openRelay, type RelayedStream } from '../../lib/client/dial.js';
import { ConnectError } from '../../lib/client/errors.js';
import type { ClientGrant } from '../../lib/client/grant.js';
import { grantTls } from '../../lib/client/grant-tls.js';
import type { Gateway } from '../../lib/gateway/gateway.js';
import type { LimitRefusal, Refusal } from '../../lib/gateway/inner.js';
import type { StreamRecord } from '../../lib/gateway/streams.js';
import { GO_ALPNS } from '../../lib/protocol/relay.js';
import {
  clientProxies,
  type EchoPair,
  GW,
  ORG,
  platformGrant,
  type RunningProxy,
  startEchoPair,
} from '../gateway/deploy.js';
import { waitFor } from '../gateway/harness.js';
import { World } from '../helpers/world.js';
import { FakeGrantSource } from './fixtures.js';

const world = new World();
let pair: EchoPair;
let echo: EchoPair['echo'];
let proxy: RunningProxy;
let gateway: Gateway;
let refusals: Refusal[];
let records: StreamRecord[];
let limits: LimitRefusal[];
const opts = { stepTimeoutMs: 5000 };
const settle = () => new Promise((r) => setTimeout(r, 200));

before(async () => {
  pair = await startEchoPair(world, { maxHeldSessions: 1 });
  ({ echo, proxy, gateway, refusals, limits, records } = pair);
});
after(() => pair?.close());

const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');

/** Sends 64 KiB through the stream to the echo target and checks what comes back, byte for byte; then closes it. */
async function echoed(stream: RelayedStream, what: string): Promise<void> {
  const data = randomBytes(64 * 1024);
  const { socket } = stream;
  const back = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      n += c.length;
      if (n >= data.length) resolve(Buffer.concat(chunks));
    });
    socket.once('error', reject);
    socket.once('close', () => reject(new Error(`${what}: closed after ${n} bytes`)));
    socket.write(data);
  });
  assert.equal(sha(back), sha(data), `${what}: byte-exact`);
  socket.destroy();
}

const heldLimits = () => limits.filter((l) => l.limit === 'max_held_sessions').length;

describe('the client at the gateway max_held_sessions', () => {
  it('a hold past the bound fails before any target dial; the stream is dialled in full and goes through', async () => {
    const grant: ClientGrant = await platformGrant(world, [proxy], { host: '127.0.0.1', port: echo.port }, 'tcp', GW);
    const p = grant.proxies[0]!;
    (await dialViaProxy(grant, p, 'tcp', opts)).socket.destroy(); // tcp+go learnt
    assert.equal(grantTls(grant).innerGo, true);
    const first = await holdInner(await openRelay(grant, p, opts), 'tcp', opts);
    assert.ok(first.held, 'the first session is held');
    await waitFor(() => gateway.inner.heldSessions === 1, 5000, 'one held session');

    const connections = echo.connections();
    const audited = refusals.length;
    const streams = records.length;
    const declined = heldLimits();
    const second = await openRelay(grant, p, opts);
    await assert.rejects(holdInner(second, 'tcp', opts), ConnectError);
    await settle();
    assert.equal(echo.connections(), connections, 'no target connection for the hold declined');
    assert.equal(refusals.length, audited, 'nothing audited');
    assert.equal(records.length, streams, 'no stream started for it (offered the plain mode too, it would be)');
    assert.equal(heldLimits(), declined + 1, 'counted as a max_held_sessions refusal');
    assert.equal(gateway.inner.heldSessions, 1, 'never past the bound');
    assert.equal(grantTls(grant).innerGo, false, 'no more sessions held ahead for this grant for now');

    const full = await dialViaProxy(grant, p, 'tcp', opts);
    assert.equal(full.socket.alpnProtocol, 'tcp', 'at the bound the stream gets plain tcp');
    await echoed(full, 'the stream dialled in full');
    const taken = await completeStream(first, 'tcp', opts);
    assert.equal(taken.socket.alpnProtocol, GO_ALPNS.tcp);
    assert.equal(taken.held, true);
    await echoed(taken, 'the held stream');
    await waitFor(() => gateway.inner.heldSessions === 0, 5000, 'its slot back at GO');
  });

  it('connectors whose holds are declined dial in full: every stream byte-exact, the held count never past 1', async () => {
    let maxHeld = 0;
    const sampler = setInterval(() => {
      maxHeld = Math.max(maxHeld, gateway.inner.heldSessions);
    }, 2);
    let grants = 0;
    const connector = (refillDelayMs: number) =>
      new GatewayConnector({
        source: new FakeGrantSource({
          world,
          proxies: () => clientProxies([proxy]),
          grantId: () => `held-${++grants}`,
        }),
        orgId: ORG,
        gatewayId: GW,
        stepTimeoutMs: 5000,
        warmRelayMs: 8000,
        warmRefillDelayMs: refillDelayMs,
      });
    // c1 opens its next relay only when its next stream asks for it (a long refill delay); c2 at once.
    const c1 = connector(60_000);
    const c2 = connector(0);
    const target = { host: '127.0.0.1', port: echo.port };
    try {
      const a1 = await c1.open(target, 'tcp');
      assert.equal(a1.socket.alpnProtocol, GO_ALPNS.tcp, 'c1 learns tcp+go (nothing held yet)');
      await echoed(a1, 'c1 stream 1');
      const b1 = await c2.open(target, 'tcp');
      await echoed(b1, 'c2 stream 1');
      await waitFor(() => gateway.inner.heldSessions === 1, 5000, "c2's next session held");

      // c1's next relay opens now, for this stream, and its hold is declined: the stream is dialled in full.
      const declined = heldLimits();
      const connections = echo.connections();
      const a2 = await c1.open(target, 'tcp');
      assert.equal(a2.held ?? false, false, 'not on a held session');
      assert.equal(a2.warm ?? false, false, 'dialled in full');
      await echoed(a2, 'c1 stream 2, dialled in full');
      assert.ok(heldLimits() > declined, 'its hold was declined by max_held_sessions');
      assert.equal(echo.connections(), connections + 1, 'one target connection: none for the declined hold');

      const b2 = await c2.open(target, 'tcp');
      assert.equal(b2.held, true, "c2's stream ran on its held session");
      await echoed(b2, 'c2 stream 2');
      for (let i = 3; i <= 6; i++) {
        await echoed(await c1.open(target, 'tcp'), `c1 stream ${i}`);
        await echoed(await c2.open(target, 'tcp'), `c2 stream ${i}`);
      }
      assert.ok(maxHeld <= 1, `the held count never past the bound (max ${maxHeld})`);
    } finally {
      clearInterval(sampler);
      c1.close();
      c2.close();
    }
  });
});
