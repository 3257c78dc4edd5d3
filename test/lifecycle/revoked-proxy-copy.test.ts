/**
 * Issue 11 item 1: a revoked proxy is never trusted again, in its attack form. A full copy of proxy-1's state
 * directory (sealing.key included) is taken while proxy-1 is still trusted; proxy-1 is revoked and both
 * gateways drop their tunnel to it; the CA is stopped (so the copy can never learn it is revoked) and the copy
 * serves on proxy-1's own ports (its advertised addresses). Then gw-1 reloads (SIGHUP) and gw-2 restarts, both
 * rebuilding their pool from the stored proxy list: neither may connect to the copy, and traffic still flows,
 * byte-exact, through proxy-2.
 */
import assert from 'node:assert/strict';
import { cpSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import { assertByteExact, Daemon, type GatewayHandle, startDeployment } from './deploy.js';

const FEED = ['--revocation-poll', '1s'];

async function tunnelDetail(g: GatewayHandle): Promise<{ tunnelsUp?: number; tunnelsTotal?: number }> {
  const r = await g.readyz().catch(() => undefined);
  return (r?.json?.['detail'] ?? {}) as { tunnelsUp?: number; tunnelsTotal?: number };
}

const revokedProxy1 = (l: Record<string, unknown>) =>
  l['event'] === 'gateway.revocation' && l['kind'] === 'proxy' && l['subject'] === 'proxy-1';

test('a copy of a revoked proxy, serving on its address, is never connected to again', async (t) => {
  const d = await startDeployment({ proxies: 2, gateways: 2, proxyArgs: FEED, gatewayArgs: FEED });
  t.after(() => d.close());
  let copy: Daemon | undefined;
  try {
    const [proxy1, proxy2] = d.proxies as [(typeof d.proxies)[0], (typeof d.proxies)[0]];
    const [gw1, gw2] = d.gateways as [GatewayHandle, GatewayHandle];

    // The thief's copy: the whole state directory of a stopped, still trusted proxy-1.
    await proxy1.stop();
    const copyDir = join(d.dir, 'proxy-1-copy');
    cpSync(proxy1.stateDir, copyDir, { recursive: true });
    await proxy1.start();
    await Promise.all([gw1.waitTunnels(2), gw2.waitTunnels(2)]);

    // Grants for both gateways while the CA answers (each lists both proxies).
    const c1 = await d.connect({ gateway: gw1 });
    const c2 = await d.connect({ gateway: gw2 });
    assertByteExact(await d.transfer(c1, 256 * 1024), 'through gw-1 before the revocation');
    assertByteExact(await d.transfer(c2, 256 * 1024), 'through gw-2 before the revocation');

    const { ms } = await d.revokeAndMeasure(
      'proxy',
      'proxy-1',
      async () => {
        // Applied (the audit line), not a passing flap: the pool holds one proxy, its tunnel up.
        if (!gw1.logLines().some(revokedProxy1) || !gw2.logLines().some(revokedProxy1)) return false;
        const [a, b] = await Promise.all([tunnelDetail(gw1), tunnelDetail(gw2)]);
        return a.tunnelsUp === 1 && a.tunnelsTotal === 1 && b.tunnelsUp === 1 && b.tunnelsTotal === 1;
      },
      { timeoutMs: 15_000, what: 'both gateways to drop their tunnel to proxy-1 (tunnelsUp 2 -> 1)' },
    );
    t.diagnostic(`both gateways down to one tunnel ${ms} ms after the revocation`);

    // The CA goes away: the copy cannot learn it is revoked. proxy-1 itself (revoked) goes too, freeing its ports.
    await d.ca.stop();
    await proxy1.stop();
    copy = new Daemon({
      name: 'proxy proxy-1 (stolen copy)',
      program: 'proxy',
      stateDir: copyDir,
      logFile: join(d.dir, 'logs', 'proxy-1-copy.log'),
      opsPort: proxy1.opsPort!,
      args: proxy1.args.map((a) => (a === proxy1.stateDir ? copyDir : a)),
    });
    await copy.start();
    assert.equal((await copy.readyz()).status, 200, 'the copy serves (it does not know it is revoked)');

    gw1.hup();
    await gw2.restart();

    // For 8 s: each gateway keeps exactly one tunnel (to proxy-2); the copy holds none.
    const until = Date.now() + 8000;
    let samples = 0;
    while (Date.now() < until) {
      const [a, b, c]: [
        Awaited<ReturnType<typeof tunnelDetail>>,
        Awaited<ReturnType<typeof tunnelDetail>>,
        Awaited<ReturnType<Daemon['readyz']>>,
      ] = await Promise.all([tunnelDetail(gw1), tunnelDetail(gw2), copy.readyz()]);
      const cd = (c.json?.['detail'] ?? {}) as { tunnels?: number; gateways?: number };
      assert.equal(a.tunnelsUp, 1, `gw-1 tunnels after SIGHUP: ${JSON.stringify(a)}\n${d.tails()}`);
      assert.equal(b.tunnelsUp, 1, `gw-2 tunnels after restart: ${JSON.stringify(b)}\n${d.tails()}`);
      assert.equal(a.tunnelsTotal, 1, `gw-1 keeps proxy-1 out of its pool: ${JSON.stringify(a)}`);
      assert.equal(b.tunnelsTotal, 1, `gw-2 keeps proxy-1 out of its pool: ${JSON.stringify(b)}`);
      assert.equal(cd.tunnels, 0, `the copy holds no tunnel: ${c.text}`);
      assert.equal(cd.gateways, 0, `no gateway is connected to the copy: ${c.text}`);
      samples++;
      await new Promise((r) => setTimeout(r, 250));
    }
    t.diagnostic(`${samples} samples over 8 s: one tunnel each, none to the copy`);
    const p2 = (await proxy2.readyz()).json?.['detail'] as { tunnels?: number; gateways?: number };
    assert.equal(p2.gateways, 2, `proxy-2 still holds both gateways: ${JSON.stringify(p2)}`);

    // Traffic through the remaining proxy, on the grants taken before the CA went away.
    for (const [c, name] of [
      [c1, 'gw-1'],
      [c2, 'gw-2'],
    ] as const) {
      const r = await d.transfer(c, 1024 * 1024);
      assertByteExact(r, `1 MiB through ${name} after the copy appeared`);
      const opened = c.events().filter((e) => e['event'] === 'opened');
      assert.equal(opened.at(-1)?.['proxyId'], 'proxy-2', `${name}'s last stream went through proxy-2`);
    }
    const end = (await copy.readyz()).json?.['detail'] as { tunnels?: number };
    assert.equal(end.tunnels, 0, 'still no tunnel to the copy at the end');
  } catch (err) {
    process.stderr.write(`\n${d.tails()}\n`);
    throw err;
  } finally {
    await copy?.stop();
    await d.close();
  }
});
