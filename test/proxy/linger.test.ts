/**
 * A stream whose splice is done while its platform is still sending: the proxy reads and drops the platform's
 * late bytes for a moment (lib/protocol/splice.ts LINGER_MS) instead of answering them with a reset. Such a
 * lingering platform socket stays the relay listener's: the proxy's stop() and a revocation of its certificate
 * (closeStreams) destroy it at once, not LINGER_MS later; a tunnel that goes does not reset it.
 */
import assert from 'node:assert/strict';
import type { Duplex } from 'node:stream';
import { after, describe, it } from 'node:test';
import type { TLSSocket } from 'node:tls';
import { LINGER_MS } from '../../lib/protocol/splice.js';
import type { ProxyServer } from '../../lib/proxy/proxy.js';
import { World } from '../helpers/world.js';
import { closed, connectGateway, dialProxy, eventually, startProxy, type TestGateway } from './harness.js';

const world = new World();
const outerA = (identityId = 'platform') =>
  world.platformOuter({ orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance', identityId });
/** Far below LINGER_MS: a socket closed within it was cut, not left to linger out. */
const AT_ONCE_MS = 500;

/** The gateway answers the first bytes, ends its side and closes the channel (an HTTP server's refusal). */
function answerAndClose(channel: Duplex & { close(): void }): void {
  channel.on('error', () => {});
  channel.once('data', () => channel.end('answer', () => channel.close()));
  channel.resume();
}

/**
 * A platform stream whose splice is done while the platform keeps its write side open and keeps sending: the
 * proxy's socket for it lingers. Resolves once the stream left the table, its answer and end received.
 */
async function lingering(proxy: ProxyServer, outer = outerA()): Promise<{ socket: TLSSocket; stop: () => void }> {
  const { status, socket } = await dialProxy(world, proxy, outer, { allowHalfOpen: true });
  assert.deepEqual(status, { ok: true });
  const got: Buffer[] = [];
  socket.on('data', (d: Buffer) => got.push(d));
  const ended = new Promise<void>((r) => socket.once('end', () => r()));
  socket.write('request');
  await ended;
  assert.equal(Buffer.concat(got).toString(), 'answer');
  await eventually(() => proxy.stats().streams === 0);
  // Still sending, as a client whose request body is still coming: the proxy reads and drops it.
  const beat = setInterval(() => socket.write('late'), 20);
  socket.once('close', () => clearInterval(beat));
  return { socket, stop: () => clearInterval(beat) };
}

/** Milliseconds until `socket` closes, `LINGER_MS * 2` at most (then: the time waited). */
async function closeWithin(socket: TLSSocket, since: number): Promise<number> {
  const limit = new Promise<void>((r) => setTimeout(r, LINGER_MS * 2).unref());
  await Promise.race([closed(socket), limit]);
  return Date.now() - since;
}

describe("lingering platform sockets stay the proxy relay's", () => {
  const cleanups: (() => unknown)[] = [];
  after(async () => {
    for (const c of cleanups.reverse()) await c();
  });

  async function setup(): Promise<{ proxy: ProxyServer; gw: TestGateway }> {
    const proxy = await startProxy(world, { scope: 'instance' });
    cleanups.push(() => proxy.stop());
    const gw = await connectGateway(world, proxy, {
      orgId: 'org-a',
      gatewayId: 'gw-1',
      scope: 'instance',
      onStream: (ch) => answerAndClose(ch as Duplex & { close(): void }),
    });
    cleanups.push(() => gw.close());
    return { proxy, gw };
  }

  it('a lingering platform socket lingers: open after the stream is done, read and dropped', async () => {
    const { proxy } = await setup();
    const { socket, stop } = await lingering(proxy);
    await new Promise((r) => setTimeout(r, 200));
    assert.equal(socket.destroyed, false, 'still open after the stream was done');
    stop();
    socket.end(); // its end: the proxy's side is destroyed, as soon as it comes
    await closed(socket);
  });

  it('stop() destroys a lingering platform socket at once', async () => {
    const { proxy } = await setup();
    const { socket } = await lingering(proxy);
    const t0 = Date.now();
    const stopped = proxy.stop();
    const ms = await closeWithin(socket, t0);
    assert.ok(ms < AT_ONCE_MS, `the platform socket closed ${ms} ms after stop() (LINGER_MS ${LINGER_MS})`);
    await stopped;
  });

  it("a revocation of the stream's certificate destroys its lingering platform socket at once, and no other", async () => {
    const { proxy } = await setup();
    const revoked = outerA('mallory');
    const hit = await lingering(proxy, revoked);
    const other = await lingering(proxy, outerA('alice'));
    const t0 = Date.now();
    proxy.revoke({ kind: 'certificate', subject: revoked.issued.serialHex });
    const ms = await closeWithin(hit.socket, t0);
    assert.ok(ms < AT_ONCE_MS, `the revoked platform socket closed ${ms} ms after the revocation`);
    assert.equal(other.socket.destroyed, false, "the other certificate's lingering socket is left to linger");
    other.stop();
    other.socket.end();
    await closed(other.socket);
  });

  it('a tunnel that goes leaves a lingering platform socket alone (no reset over its delivered answer)', async () => {
    const { proxy, gw } = await setup();
    const { socket, stop } = await lingering(proxy);
    let error: Error | undefined;
    socket.on('error', (err) => {
      error = err;
    });
    gw.close();
    await eventually(() => proxy.table.size === 0);
    await new Promise((r) => setTimeout(r, 100));
    assert.equal(socket.destroyed, false, 'still lingering after its tunnel went');
    stop();
    socket.end();
    await closed(socket);
    assert.equal(error, undefined, `the platform saw ${error?.message}`);
  });
});
