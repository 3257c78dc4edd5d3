/**
 * Interop: the real OpenSSH client serves as a gateway. `ssh -N -R <gatewayId>:0:127.0.0.1:PORT` with a World
 * user cert and an `@cert-authority` known_hosts line for the proxy's host cert holds a tunnel that carries a
 * platform stream to a local echo server; asking to forward any other name is refused.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer, type Server } from 'node:net';
import { after, before, describe, it } from 'node:test';
import type { ProxyServer } from '../../lib/proxy/proxy.js';
import { TempDir } from '../helpers/openssh.js';
import { World } from '../helpers/world.js';
import { closed, dialProxy, echo, eventually, roundTrip, startProxy } from './harness.js';

const world = new World();

function sshGateway(
  dir: TempDir,
  proxy: ProxyServer,
  o: { gatewayId: string; forwardName: string; targetPort: number },
): { child: ChildProcess; stderr: () => string; exit: Promise<number | null> } {
  const ssh = world.gatewaySsh({ orgId: 'org-a', gatewayId: o.gatewayId, scope: 'instance' });
  const key = dir.write(`${o.gatewayId}-${o.forwardName}`, ssh.privateKey);
  const cert = dir.write(`${o.gatewayId}-${o.forwardName}-cert.pub`, `${ssh.certificateLine}\n`);
  const knownHosts = dir.write('known_hosts', `@cert-authority * ${world.instance.sshServer.publicLine}\n`);
  const child = spawn(
    'ssh',
    [
      '-F',
      '/dev/null',
      '-N',
      '-o',
      `UserKnownHostsFile=${knownHosts}`,
      '-o',
      'GlobalKnownHostsFile=/dev/null',
      '-o',
      'StrictHostKeyChecking=yes',
      '-o',
      'BatchMode=yes',
      '-o',
      'IdentitiesOnly=yes',
      '-o',
      'ExitOnForwardFailure=yes',
      '-o',
      'ConnectTimeout=10',
      '-i',
      key,
      '-o',
      `CertificateFile=${cert}`,
      '-R',
      `${o.forwardName}:0:127.0.0.1:${o.targetPort}`,
      '-p',
      String(proxy.sshPort),
      `${o.gatewayId}@127.0.0.1`,
    ],
    { stdio: ['ignore', 'ignore', 'pipe'] },
  );
  let stderr = '';
  child.stderr?.setEncoding('utf8').on('data', (d: string) => {
    stderr += d;
  });
  const exit = once(child, 'exit').then(([code]) => code as number | null);
  return { child, stderr: () => stderr, exit };
}

describe('OpenSSH client as a gateway', () => {
  const dir = new TempDir('proxy-openssh-');
  let proxy: ProxyServer;
  let target: Server;
  let targetPort = 0;

  before(async () => {
    proxy = await startProxy(world, { scope: 'instance' });
    target = createServer(echo).listen(0, '127.0.0.1');
    await once(target, 'listening');
    targetPort = (target.address() as { port: number }).port;
  });
  after(async () => {
    await proxy.stop();
    target.close();
    dir.remove();
  });

  it('holds a tunnel for its own name and carries a platform stream through it', async () => {
    const gw = sshGateway(dir, proxy, { gatewayId: 'gw-1', forwardName: 'gw-1', targetPort });
    try {
      await eventually(() => proxy.table.size === 1 || gw.child.exitCode !== null, 20_000);
      assert.equal(proxy.table.size, 1, gw.stderr());
      const { status, socket } = await dialProxy(
        world,
        proxy,
        world.platformOuter({ orgId: 'org-a', gatewayId: 'gw-1', scope: 'instance' }),
      );
      assert.deepEqual(status, { ok: true });
      const data = Buffer.alloc(1024 * 1024, 0x5a);
      assert.ok((await roundTrip(socket, data)).equals(data));
      socket.end();
      await closed(socket);
    } finally {
      gw.child.kill('SIGTERM');
      await gw.exit;
    }
    await eventually(() => proxy.table.size === 0);
  });

  it('is refused for any other name (ExitOnForwardFailure)', async () => {
    const before = proxy.refusals().get('ssh:E_CERT_WRONG_PRINCIPAL') ?? 0;
    const gw = sshGateway(dir, proxy, { gatewayId: 'gw-1', forwardName: 'gw-2', targetPort });
    const code = await Promise.race([
      gw.exit,
      new Promise<string>((r) => setTimeout(() => r('still running'), 20_000)),
    ]);
    if (code === 'still running') gw.child.kill('SIGKILL');
    assert.notEqual(code, 0);
    assert.match(gw.stderr(), /remote port forwarding failed/i);
    assert.equal(proxy.refusals().get('ssh:E_CERT_WRONG_PRINCIPAL'), before + 1);
    assert.equal(proxy.table.size, 0);
  });
});
