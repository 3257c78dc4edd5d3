/**
 * A relay opened ahead of need (lib/client/warm.ts), or its inner session held too (dial.ts holdInner), that the
 * proxy cut while it waited is a relay gone, seen at once, over real sockets (lib/proxy and lib/gateway in this
 * process, an SSH tunnel between them): the stream is dialled again (connector.ts RELAY_GONE, not the gateway's
 * answer), never left to wait out the step bound and fail E_TIMEOUT as if the gateway had answered. Both cases
 * failed with E_TIMEOUT after the whole bound before: the inner handshake wrapped an outer session that had
 * delivered its end, and a held session whose end was emitted before anyone listened for it waited for a status
 * line (half-open: no close either).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { completeStream, dialViaProxy, holdInner, openRelay } from '../../lib/client/dial.js';
import { ConnectError } from '../../lib/client/errors.js';
import type { ClientGrant } from '../../lib/client/grant.js';
import { gatewayAnswered } from '../../lib/client/inner-session.js';
import { type EchoPair, startEchoPair } from '../gateway/deploy.js';
import { World } from '../helpers/world.js';

const world = new World();
let pair: EchoPair;
/** The step bound of these dials: a relay gone must be seen well before it. */
const STEP_MS = 4000;
const opts = { stepTimeoutMs: STEP_MS, allowHalfOpen: true };

before(async () => {
  pair = await startEchoPair(world);
});
after(() => pair?.close());

const cutAtProxy = (): number => pair.proxy.server.relay.closeStreams(() => true, 'cut for the test');

async function goneAtOnce(p: Promise<unknown>): Promise<void> {
  const t0 = performance.now();
  const err = await p.then(
    () => assert.fail('a stream opened on a relay the proxy had cut'),
    (e: unknown) => e,
  );
  const ms = performance.now() - t0;
  assert.ok(err instanceof ConnectError, String(err));
  // E_STREAM_CLOSED: seen ended; E_GATEWAY_OFFLINE: its GO written into the reset that followed the cut.
  assert.ok(['E_STREAM_CLOSED', 'E_GATEWAY_OFFLINE'].includes(err.code), err.describe());
  assert.equal(gatewayAnswered(err), false, 'a relay gone, dialled again: not the gateway answering');
  assert.ok(ms < STEP_MS / 2, `seen at once, not at the step bound (${ms.toFixed(0)} ms)`);
}

async function tcpGrant(): Promise<ClientGrant> {
  return pair.grant();
}

describe('a relay cut by the proxy while it waited is a relay gone', () => {
  it('a relay opened ahead (outer session only): the inner handshake is not run on its ended stream', async () => {
    const grant = await tcpGrant();
    const relay = await openRelay(grant, grant.proxies[0]!, opts);
    assert.equal(cutAtProxy(), 1);
    await new Promise((r) => setTimeout(r, 100)); // the proxy's end arrives; half-open, the socket stays open
    await goneAtOnce(completeStream(relay, 'tcp', opts));
  });

  it('a held inner session whose end was emitted before the stream listened', async () => {
    const grant = await tcpGrant();
    (await dialViaProxy(grant, grant.proxies[0]!, 'tcp', opts)).socket.destroy(); // tcp+go learnt
    const relay = await holdInner(await openRelay(grant, grant.proxies[0]!, opts), 'tcp', opts);
    const held = relay.held;
    assert.ok(held, 'held');
    // As when the cut arrives in the same read as the handshake's end: nothing watches the session yet.
    held.use();
    assert.equal(cutAtProxy(), 1);
    // Taken the moment its end is seen (its GO crossing the cut, before any reset came back).
    const taken = await new Promise<{ stream: Promise<unknown> }>((resolve) => {
      held.socket.once('end', () => resolve({ stream: completeStream(relay, 'tcp', opts) }));
    });
    await goneAtOnce(taken.stream);
  });

  it('a held inner session cut while it waits is ended, and a stream dialled in full goes through', async () => {
    const grant = await tcpGrant();
    (await dialViaProxy(grant, grant.proxies[0]!, 'tcp', opts)).socket.destroy();
    const relay = await holdInner(await openRelay(grant, grant.proxies[0]!, opts), 'tcp', opts);
    assert.equal(cutAtProxy(), 1);
    await new Promise<void>((resolve) => {
      if (relay.outer.destroyed) resolve();
      else relay.outer.once('close', () => resolve());
    });
    await goneAtOnce(completeStream(relay, 'tcp', opts));
    const again = await dialViaProxy(grant, grant.proxies[0]!, 'tcp', opts);
    const back = new Promise<string>((resolve) => again.socket.once('data', (d: Buffer) => resolve(d.toString())));
    again.socket.write('again');
    assert.equal(await back, 'again');
    again.socket.destroy();
  });

  it('a held session cut after its GO carried bytes is not dialled again: the target may have them already', async () => {
    const grant = await tcpGrant();
    (await dialViaProxy(grant, grant.proxies[0]!, 'tcp', opts)).socket.destroy();
    const relay = await holdInner(await openRelay(grant, grant.proxies[0]!, opts), 'tcp', opts);
    const request = Buffer.from('INSERT INTO t VALUES (1);');
    // GO and the request are written before completeStream's first await; the cut follows at once.
    const stream = completeStream(relay, 'tcp', { ...opts, firstBytes: () => request });
    assert.equal(cutAtProxy(), 1);
    const err = await stream.then(
      () => assert.fail('a stream opened on a relay the proxy had cut'),
      (e: unknown) => e,
    );
    assert.ok(err instanceof ConnectError, String(err));
    assert.equal(gatewayAnswered(err), true, `not dialled again once bytes went (${err.describe()})`);
  });
});
