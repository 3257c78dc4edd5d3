/**
 * Limits over real sockets: a stalled reader does not make the proxy buffer without bound, connection floods
 * and slow handshakes hit their limits on both listeners, idle streams are closed.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { connect, type Socket } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { ProxyServer } from '../../lib/proxy/proxy.js';
import type { ClientChannel } from '../../lib/sshwire/ssh2.js';
import { World } from '../helpers/world.js';
import { closed, connectGateway, dialProxy, eventually, startProxy, type TestGateway } from './harness.js';

const world = new World();
const outer = () => world.platformOuter({ orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance' });
const MiB = 1024 * 1024;

/**
 * For the enclosing suite: a proxy and one gateway connected to it; `onStream` sees each channel the proxy opens
 * to the gateway. Read the proxy through the returned getter once the suite's before() has run.
 */
function proxyWithGateway(onStream: (ch: ClientChannel) => void): () => ProxyServer {
  let proxy: ProxyServer;
  let gw: TestGateway;
  before(async () => {
    proxy = await startProxy(world, { scope: 'instance' });
    gw = await connectGateway(world, proxy, {
      orgId: 'org-a',
      gatewayId: 'gw-1',
      scope: 'instance',
      onStream: (ch) => {
        ch.on('error', () => {});
        onStream(ch);
      },
    });
  });
  after(async () => {
    gw.close();
    await proxy.stop();
  });
  return () => proxy;
}

describe('backpressure', () => {
  let stalled: ClientChannel | undefined;
  const deployed = proxyWithGateway((ch) => {
    ch.pause(); // the gateway stops reading: the SSH window closes
    stalled = ch;
  });

  it('a stalled gateway stalls the platform; the proxy holds a bounded amount', async () => {
    const proxy = deployed();
    const { status, socket } = await dialProxy(world, proxy, outer());
    assert.ok(status.ok);
    const chunk = Buffer.alloc(64 * 1024, 1);
    const goal = 256 * MiB;
    let accepted = 0;
    let maxBuffered = 0;
    const rssBefore = process.memoryUsage().rss;
    // Write with the platform's own backpressure until a drain does not come for 1.5 s: the pipe is full.
    for (;;) {
      while (accepted < goal && socket.write(chunk)) accepted += chunk.length;
      maxBuffered = Math.max(maxBuffered, proxy.stats().bufferedBytes);
      if (accepted >= goal) break;
      accepted += chunk.length;
      const drained = await Promise.race([
        once(socket, 'drain').then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 1500)),
      ]);
      maxBuffered = Math.max(maxBuffered, proxy.stats().bufferedBytes);
      if (!drained) break;
    }
    const rssGrowth = process.memoryUsage().rss - rssBefore;
    const gatewayHeld = stalled?.readableLength ?? 0;
    assert.ok(accepted < goal, `the platform could write all ${goal} bytes: nothing pushed back`);
    // Channel high-water mark (2 MiB) + TLS socket buffers: a few MiB at most, whatever the platform sends.
    assert.ok(maxBuffered < 4 * MiB, `proxy buffered ${maxBuffered} bytes`);
    // ssh2's receive side: 2 MiB high-water mark + the 1 MiB it re-opens the window by before noticing.
    assert.ok(gatewayHeld <= 3 * MiB + chunk.length, `gateway received ${gatewayHeld} bytes past its window`);
    assert.ok(rssGrowth < 64 * MiB, `rss grew by ${rssGrowth} bytes`);

    // Resume: everything written arrives, in order.
    let received = 0;
    stalled?.on('data', (d: Buffer) => {
      received += d.length;
    });
    stalled?.resume();
    await eventually(() => received === accepted, 20_000);
    socket.destroy();
  });
});

describe('backpressure, the download direction', () => {
  let sending: ClientChannel | undefined;
  const deployed = proxyWithGateway((ch) => {
    sending = ch;
  });

  it('a platform that stops reading stalls the gateway; the proxy holds a bounded amount', async () => {
    const proxy = deployed();
    const { status, socket } = await dialProxy(world, proxy, outer());
    assert.ok(status.ok);
    socket.pause(); // the platform stops reading
    await eventually(() => sending !== undefined, 5_000);
    const ch = sending!;
    const chunk = Buffer.alloc(64 * 1024, 2);
    let sent = 0;
    let maxBuffered = 0;
    for (;;) {
      while (sent < 256 * MiB && ch.write(chunk)) sent += chunk.length;
      maxBuffered = Math.max(maxBuffered, proxy.stats().bufferedBytes);
      if (sent >= 256 * MiB) break;
      sent += chunk.length;
      const drained = await Promise.race([
        once(ch, 'drain').then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 1500)),
      ]);
      maxBuffered = Math.max(maxBuffered, proxy.stats().bufferedBytes);
      if (!drained) break;
    }
    assert.ok(sent < 256 * MiB, 'the gateway could send everything: nothing pushed back');
    // The channel's 2 MiB (+ the 1 MiB ssh2 re-opens) and the platform socket's 1 MiB write threshold
    // (PLATFORM_WRITE_BUFFER), plus TLS records in flight: a few MiB, however much the gateway has.
    assert.ok(maxBuffered < 6 * MiB, `proxy buffered ${maxBuffered} bytes`);
    let received = 0;
    socket.on('data', (d: Buffer) => {
      received += d.length;
    });
    socket.resume();
    await eventually(() => received === sent, 20_000);
    socket.destroy();
  });
});

describe('connection limits and timeouts', () => {
  let proxy: ProxyServer;
  before(async () => {
    proxy = await startProxy(world, {
      scope: 'instance',
      limits: { maxConnections: 20, handshakeTimeoutMs: 500, idleTimeoutMs: 700 },
    });
  });
  after(() => proxy.stop());

  const refusals = (k: string) => proxy.refusals().get(k) ?? 0;

  async function flood(port: number, n: number): Promise<Socket[]> {
    const sockets = await Promise.all(
      Array.from({ length: n }, async () => {
        const s = connect(port, '127.0.0.1');
        s.on('error', () => {});
        s.resume(); // read what the server says, so its close is seen
        await once(s, 'connect');
        return s;
      }),
    );
    return sockets;
  }

  it('a TLS connection flood beyond max_connections is dropped at accept', async () => {
    const before = refusals('tls:E_LIMIT');
    const sockets = await flood(proxy.tlsPort, 50);
    await eventually(() => refusals('tls:E_LIMIT') - before >= 30);
    await eventually(() => sockets.filter((s) => s.destroyed || s.readableEnded).length >= 30);
    for (const s of sockets) s.destroy();
  });

  it('an SSH connection flood beyond max_connections is dropped at accept', async () => {
    const before = refusals('ssh:E_LIMIT');
    const sockets = await flood(proxy.sshPort, 50);
    await eventually(() => refusals('ssh:E_LIMIT') - before >= 30);
    for (const s of sockets) s.destroy();
  });

  it('a silent TLS client is cut at the handshake timeout', async () => {
    await eventually(() => proxy.relay.connections === 0 && proxy.stats().sshConnections === 0);
    const before = refusals('tls:E_TIMEOUT');
    const [s] = await flood(proxy.tlsPort, 1);
    await closed(s!);
    assert.equal(refusals('tls:E_TIMEOUT'), before + 1);
  });

  it('a silent or slow SSH client is cut at the handshake timeout', async () => {
    const before = refusals('ssh:E_TIMEOUT');
    const [silent, slow] = await flood(proxy.sshPort, 2);
    // The slow one sends its version line a byte at a time, never finishing the key exchange in time.
    const ident = Buffer.from('SSH-2.0-slowloris\r\n');
    let i = 0;
    const drip = setInterval(() => slow!.write(ident.subarray(i, ++i)), 100);
    await Promise.all([closed(silent!), closed(slow!)]);
    clearInterval(drip);
    assert.equal(refusals('ssh:E_TIMEOUT'), before + 2);
  });

  it('an idle stream is closed', async () => {
    const gw = await connectGateway(world, proxy, { orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance' });
    const { status, socket } = await dialProxy(world, proxy, outer());
    assert.ok(status.ok);
    socket.resume();
    await closed(socket);
    assert.equal(proxy.stats().streams, 0);
    gw.close();
  });
});
