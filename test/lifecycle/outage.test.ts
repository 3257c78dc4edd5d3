/**
 * A proxy outage as the gateway sees it, through the real programs: the log says which kind of failure each
 * retry backs off from. A killed proxy (SIGKILL) is "not reachable" (refused/reset: retried within a second),
 * and the tunnel comes back once the proxy is started again. Something at the proxy's address that answers but
 * will not do (an SSH server without the proxy's host certificate) is "refused": backed off hard. The time to
 * come back is a benchmark (bench/outage.ts), not asserted here.
 */
import assert from 'node:assert/strict';
import { generateKeyPairSync } from 'node:crypto';
import { once } from 'node:events';
import { test } from 'node:test';
import { toOpenSshPrivateKey } from '../../lib/sshcert/index.js';
import { Server as SshServer } from '../../lib/sshwire/ssh2.js';
import { withDeployment } from './deploy.js';
import { waitFor } from './process.js';

test('the gateway logs which kind of failure it backs off from, and gets its tunnel back', async () => {
  await withDeployment({ proxies: 2, gateways: 1 }, async (d) => {
    const [proxy] = d.proxies;
    const gw = d.gateways[0]!;
    const backoffs = (since: number) =>
      gw
        .logLines()
        .slice(since)
        .filter((l) => l['proxyId'] === proxy!.proxyId && typeof l['failure'] === 'string');

    // 1. Killed: nothing listens at its address.
    let mark = gw.logLines().length;
    await proxy!.kill();
    // The first retry follows the tunnel's close, the next ones refused connects.
    const unreachable = await waitFor(
      () => backoffs(mark).some((l) => /ECONNREFUSED/.test(String(l['err']))) && backoffs(mark),
      { what: 'a backoff line for a refused connect to the killed proxy', detail: () => gw.tail() },
    );
    for (const l of unreachable) {
      assert.equal(l['failure'], 'unreachable', JSON.stringify(l));
      assert.equal(l['msg'], 'proxy not reachable (refused or reset): retrying soon');
      assert.ok(Number(l['delayMs']) < 1000, `retried within a second: ${JSON.stringify(l)}`);
    }
    await proxy!.start();
    await gw.waitTunnels(2, 60_000);

    // 2. Killed again, and an SSH server without the proxy's host certificate takes its address.
    await proxy!.kill();
    const impostor = new SshServer(
      { hostKeys: [toOpenSshPrivateKey(generateKeyPairSync('ed25519').privateKey)] },
      (client) => client.on('error', () => undefined),
    );
    impostor.listen(proxy!.sshPort, '127.0.0.1');
    await once(impostor, 'listening');
    try {
      mark = gw.logLines().length;
      const refused = await waitFor(() => backoffs(mark).find((l) => l['failure'] === 'refused'), {
        what: 'a "refused" backoff line',
        timeoutMs: 60_000,
        detail: () => gw.tail(),
      });
      assert.equal(refused['msg'], 'proxy refused the tunnel: backing off');
      assert.equal(await gw.tunnelsUp(), 1, 'only the other proxy carries the gateway');
    } finally {
      impostor.close();
    }
  });
});
