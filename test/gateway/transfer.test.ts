/**
 * A 30-second transfer through a real proxy and the infisical-gateway daemon (a process) loses no byte while
 * the gateway is reloaded twice: SIGHUP with a new config, then renewal as the daemon performs it (fresh SSH
 * and TLS certificates written to its state database, then SIGHUP: the new tunnel comes up before the old one,
 * which keeps carrying the stream, is drained). SHA-256 of what the platform sent, what the target received and
 * what came back are compared; the gateway's audit record counts the same bytes. TRANSFER_MS=… shortens it
 * while iterating.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { dialViaProxy } from '../../lib/client/dial.js';
import { GatewayStore } from '../../lib/gateway/state.js';
import { World } from '../helpers/world.js';
import { GW, gatewayState, platformGrant, type RunningProxy, spawnGatewayDaemon, startRealProxy } from './deploy.js';
import { waitFor } from './harness.js';

const TRANSFER_MS = Number(process.env['TRANSFER_MS'] ?? 30_000);
const CHUNK = 64 * 1024;
const world = new World();
const dir = mkdtempSync(join(tmpdir(), 'gw-transfer-'));
let child: ChildProcess | undefined;
let proxy: RunningProxy | undefined;
let target: net.Server | undefined;
after(async () => {
  child?.kill('SIGKILL');
  await proxy?.server.stop();
  target?.close();
  rmSync(dir, { recursive: true, force: true });
});

/** An echo server that hashes what each connection sent it. */
async function hashingEcho(): Promise<{ port: number; received: { bytes: number; sha256: string }[] }> {
  const received: { bytes: number; sha256: string }[] = [];
  target = net.createServer((s) => {
    const hash = createHash('sha256');
    let bytes = 0;
    s.on('data', (d: Buffer) => {
      hash.update(d);
      bytes += d.length;
    });
    s.once('close', () => received.push({ bytes, sha256: hash.digest('hex') }));
    s.on('error', () => {});
    s.pipe(s);
  });
  target.listen(0, '127.0.0.1');
  await once(target, 'listening');
  return { port: (target.address() as net.AddressInfo).port, received };
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const t0 = Date.now();
const step = (what: string) => console.log(`# ${((Date.now() - t0) / 1000).toFixed(1)} s: ${what}`);

it('a 30 s transfer loses no byte across a SIGHUP reload and a renewal (make-before-break)', async () => {
  const echo = await hashingEcho();
  proxy = await startRealProxy(world, 'p1');
  const daemon = await spawnGatewayDaemon(world, dir, [proxy], [echo.port]);
  child = daemon.child;
  const { dbPath } = daemon;
  await waitFor(() => proxy!.server.stats().tunnels === 1, 20_000, 'the gateway tunnel');
  step('tunnel up');
  const reloads = () => daemon.output().match(/"msg":"reloaded"/g)?.length ?? 0;

  const grant = await platformGrant(world, [proxy], { host: '127.0.0.1', port: echo.port }, 'tcp', GW, {
    lifetimeSec: 600,
  });
  const { socket } = await dialViaProxy(grant, grant.proxies[0]!, 'tcp');
  const sent = createHash('sha256');
  const back = createHash('sha256');
  let sentBytes = 0;
  let backBytes = 0;
  socket.on('data', (d: Buffer) => {
    back.update(d);
    backBytes += d.length;
  });
  const closed = once(socket, 'close');

  const started = Date.now();
  const writer = (async () => {
    while (Date.now() - started < TRANSFER_MS) {
      const chunk = randomBytes(CHUNK);
      sent.update(chunk);
      sentBytes += chunk.length;
      if (!socket.write(chunk)) await once(socket, 'drain');
      await sleep(4); // about 15 MiB/s: a steady transfer, not a CPU benchmark
    }
  })();

  step('streaming');
  // One third in: SIGHUP with a new config (another allowed port); the stream must not notice.
  await sleep(TRANSFER_MS / 3);
  daemon.allowPorts([echo.port, 5432]);
  daemon.child.kill('SIGHUP');
  await waitFor(() => reloads() === 1, 10_000, 'the first reload');

  step('reloaded');
  // Two thirds in: renewal as the daemon does it (new certificates saved, then reload from the database).
  await sleep(TRANSFER_MS / 3);
  const renewed = GatewayStore.open(dbPath);
  renewed.saveEnrollment(gatewayState(world, [proxy]));
  renewed.close();
  daemon.child.kill('SIGHUP');
  await waitFor(() => reloads() === 2, 10_000, 'the renewal reload');
  step('renewal reloaded');
  // Make before break: a second SSH connection (the new certificate) while the old one still carries our stream.
  await waitFor(() => proxy!.server.stats().sshConnections === 2, 10_000, 'the renewed tunnel beside the old one');
  assert.equal(proxy.server.stats().tunnels, 1, 'the old forward is cancelled once the new one is up');
  step('two ssh connections');
  const fresh = await dialViaProxy(grant, grant.proxies[0]!, 'tcp');
  fresh.socket.write('via the renewed tunnel');
  const [reply] = (await once(fresh.socket, 'data')) as [Buffer];
  assert.equal(reply.toString(), 'via the renewed tunnel');
  fresh.socket.end();

  step('fresh stream ok');
  await writer;
  await waitFor(() => backBytes === sentBytes, 30_000, `all ${sentBytes} bytes echoed back (have ${backBytes})`);
  step('all echoed');
  socket.end();
  await closed;
  const digest = sent.digest('hex');
  assert.ok(sentBytes > 50 * CHUNK, `only ${sentBytes} bytes sent`);
  await waitFor(() => echo.received.length === 2, 10_000, 'both target connections closed');
  assert.deepEqual(
    echo.received.find((r) => r.bytes !== 'via the renewed tunnel'.length),
    { bytes: sentBytes, sha256: digest },
    'what the target received differs from what was sent',
  );
  assert.equal(back.digest('hex'), digest, 'what came back differs from what was sent');
  // The old SSH connection is let go once its last stream is done.
  await waitFor(() => proxy!.server.stats().sshConnections === 1, 10_000, 'the old tunnel drained');

  daemon.child.kill('SIGTERM');
  const [code] = (await once(daemon.child, 'exit')) as [number | null];
  child = undefined;
  assert.equal(code, 0, daemon.output().slice(-2000));
  const audit = GatewayStore.open(dbPath);
  const streams = audit.audit().filter((r) => r.event === 'gateway.stream' && r.fields['grantId'] === grant.grantId);
  audit.close();
  const bytesIn = streams.map((r) => Number(r.fields['bytesIn']));
  assert.ok(bytesIn.includes(sentBytes), `audit bytesIn ${bytesIn.join(', ')} vs ${sentBytes} sent`);
});
