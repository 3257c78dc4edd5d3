/**
 * The infisical-gateway daemon as a process: `serve` from a state database alone (written here as `enroll`
 * would), /readyz once a tunnel to a real proxy is up, a stream carried, SIGHUP reloading the config without
 * dropping that stream, SIGTERM draining and exiting 0, and the stream's audit record left in SQLite.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, it } from 'node:test';
import { dialViaProxy } from '../../lib/client/dial.js';
import { GatewayStore } from '../../lib/gateway/state.js';
import { World } from '../helpers/world.js';
import { platformGrant, type RunningProxy, spawnGatewayDaemon, startRealProxy } from './deploy.js';
import { echoServer, waitFor } from './harness.js';

const world = new World();
const dir = mkdtempSync(join(tmpdir(), 'gw-daemon-'));
let child: ChildProcess | undefined;
let proxy: RunningProxy | undefined;
let echo: Awaited<ReturnType<typeof echoServer>> | undefined;
after(async () => {
  child?.kill('SIGKILL');
  await proxy?.server.stop();
  await echo?.close();
  rmSync(dir, { recursive: true, force: true });
});

async function readyz(url: string): Promise<{ status: number; body: Record<string, unknown> }> {
  try {
    const res = await fetch(`${url}/readyz`);
    return { status: res.status, body: (await res.json()) as Record<string, unknown> };
  } catch {
    return { status: 0, body: {} };
  }
}

it('serves from SQLite alone, reloads on SIGHUP without dropping streams, drains on SIGTERM', async () => {
  echo = await echoServer();
  proxy = await startRealProxy(world, 'p1');
  const daemon = await spawnGatewayDaemon(world, dir, [proxy], [echo.port]);
  child = daemon.child;
  const { opsPort } = daemon;
  const url = `http://127.0.0.1:${opsPort}`;
  let ready = await readyz(url);
  const start = Date.now();
  while (ready.status !== 200 && Date.now() - start < 20_000) {
    await new Promise((r) => setTimeout(r, 100));
    ready = await readyz(url);
  }
  assert.equal(ready.status, 200, daemon.output());
  assert.deepEqual(ready.body['detail'], { tunnelsUp: 1, tunnelsTotal: 1, proxies: [{ proxyId: 'p1', state: 'up' }] });
  const metrics = await (await fetch(`${url}/metrics`)).text();
  assert.match(metrics, /infisical_gateway_tunnels_up 1/);

  const grant = await platformGrant(world, [proxy], { host: '127.0.0.1', port: echo.port }, 'tcp');
  const { socket } = await dialViaProxy(grant, grant.proxies[0]!, 'tcp');
  const echoOnce = (text: string) =>
    new Promise<string>((resolve) => {
      socket.once('data', (d: Buffer) => resolve(d.toString()));
      socket.write(text);
    });
  assert.equal(await echoOnce('before reload'), 'before reload');

  daemon.allowPorts([echo.port, 5432]);
  daemon.child.kill('SIGHUP');
  await waitFor(() => /"msg":"reloaded"/.test(daemon.output()), 10_000, 'reload log line');
  assert.equal(await echoOnce('after reload'), 'after reload');
  assert.equal((await readyz(url)).status, 200);

  const closed = once(socket, 'close');
  daemon.child.kill('SIGTERM');
  const [code] = (await once(daemon.child, 'exit')) as [number | null];
  child = undefined;
  assert.equal(code, 0, daemon.output());
  await closed;

  const after = GatewayStore.open(join(dir, 'state', 'gateway.db'));
  const events = after.audit().map((r) => r.event);
  const stream = after.audit().find((r) => r.event === 'gateway.stream');
  after.close();
  assert.ok(events.includes('gateway.stream'), JSON.stringify(events));
  assert.equal(stream?.fields['grantId'], grant.grantId);
  assert.equal(stream?.fields['bytesIn'], 'before reload'.length + 'after reload'.length);
});
