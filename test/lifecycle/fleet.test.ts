/**
 * Fleet changes reach every gateway (issue 11), real processes throughout. A proxy enrolled while the
 * gateways run is in every gateway's pool within 15 s (the CA's signed proxy list rides the feed) and carries
 * a transfer; a revoked proxy leaves every pool within 10 s and a restarted gateway does not bring it back; a
 * proxy that was down for 3 s (and another for 20 s) has every gateway's tunnel back within 5 s of its /readyz
 * 200 (a proxy that refuses connections is retried at least every second, however long it has been away).
 * Every transfer is checked by SHA-256 at both ends; the measured times are printed (t.diagnostic).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertByteExact, startDeployment, timeUntil, waitFor } from './deploy.js';
import { everyGatewayHas, proxyTunnels } from './helpers2.js';

const MiB = 1024 * 1024;

test('proxies added, revoked and restarted: every gateway follows', async (t) => {
  const d = await startDeployment({ proxies: 2, gateways: 2 });
  t.after(() => d.close());
  try {
    const [gw1] = d.gateways as [NonNullable<(typeof d.gateways)[0]>];
    const [p1, p2] = [d.proxies[0]!, d.proxies[1]!];

    // A third proxy, enrolled and started while the gateways run (addProxy returns at its /readyz 200).
    const p3 = await d.addProxy();
    const joined = await timeUntil(
      async () => (await everyGatewayHas(d.gateways, 3)) && (await proxyTunnels(p3)).gateways === 2,
      { what: 'every gateway to hold a tunnel to proxy-3', timeoutMs: 15_000, intervalMs: 20, detail: () => d.tails() },
    );
    t.diagnostic(`proxy-3 ready → every gateway tunnelled to it: ${joined.ms} ms`);
    for (const g of d.gateways) {
      const detail = (await g.readyz()).json?.['detail'] as { tunnelsTotal?: number } | undefined;
      assert.equal(detail?.tunnelsTotal, 3, `${g.name} has proxy-3 in its pool`);
    }

    // Through proxy-3 for certain: with proxy-1 and proxy-2 stopped it is the only way in.
    await Promise.all([p1.stop(), p2.stop()]);
    await waitFor(() => everyGatewayHas(d.gateways, 1), { what: 'only proxy-3 tunnels left', timeoutMs: 15_000 });
    const c3 = await d.connect({ gateway: gw1 });
    assertByteExact(await d.transfer(c3, 4 * MiB), '4 MiB through proxy-3');
    const opened = c3.events().filter((e) => e['event'] === 'opened');
    assert.deepEqual(
      opened.map((e) => e['proxyId']),
      ['proxy-3'],
      `the stream went through proxy-3: ${JSON.stringify(c3.events())}`,
    );
    await Promise.all([p1.start(), p2.start()]);
    await waitFor(() => everyGatewayHas(d.gateways, 3), { what: 'all three tunnels back', timeoutMs: 15_000 });

    // proxy-3 revoked: every gateway drops it.
    const { ms: droppedMs } = await d.revokeAndMeasure(
      'proxy',
      'proxy-3',
      async () => (await everyGatewayHas(d.gateways, 2)) && (await proxyTunnels(p3)).tunnels <= 0,
      { timeoutMs: 10_000, intervalMs: 20 },
    );
    t.diagnostic(`proxy-3 revoked → every gateway dropped it: ${droppedMs} ms`);

    // A restarted gateway does not bring it back (its stored revocations and the CA's list agree).
    await gw1.restart();
    await gw1.waitTunnels(2);
    const until = Date.now() + 3000;
    while (Date.now() < until) {
      const detail = (await gw1.readyz()).json?.['detail'] as {
        tunnelsUp?: number;
        tunnelsTotal?: number;
        proxies?: { proxyId: string }[];
      };
      assert.deepEqual(
        { up: detail.tunnelsUp, total: detail.tunnelsTotal, proxies: detail.proxies?.map((p) => p.proxyId) },
        { up: 2, total: 2, proxies: ['proxy-1', 'proxy-2'] },
        'restarted gw-1 keeps proxy-3 out of its pool',
      );
      assert.ok((await proxyTunnels(p3)).gateways <= 0, 'proxy-3 holds no tunnel');
      await new Promise((r) => setTimeout(r, 200));
    }
    assert.equal(await d.gateways[1]!.tunnelsUp(), 2);

    // proxy-1 down for 3 s, then back: every gateway reconnects within 5 s of its /readyz 200.
    await p1.stop();
    await waitFor(() => everyGatewayHas(d.gateways, 1), { what: 'proxy-1 tunnels down', timeoutMs: 15_000 });
    await new Promise((r) => setTimeout(r, 3000));
    await p1.start();
    const back = await timeUntil(
      async () => (await everyGatewayHas(d.gateways, 2)) && (await proxyTunnels(p1)).gateways === 2,
      { what: 'every gateway back at proxy-1', timeoutMs: 5000, intervalMs: 20, detail: () => d.tails() },
    );
    t.diagnostic(`proxy-1 ready again → every gateway tunnelled to it: ${back.ms} ms`);

    // The promise does not wear off with a longer outage (an exponential backoff would by now wait many
    // seconds): proxy-2 down for 20 s, then back, and again every gateway within 5 s.
    await p2.stop();
    await waitFor(() => everyGatewayHas(d.gateways, 1), { what: 'proxy-2 tunnels down', timeoutMs: 15_000 });
    await new Promise((r) => setTimeout(r, 20_000));
    await p2.start();
    const longBack = await timeUntil(
      async () => (await everyGatewayHas(d.gateways, 2)) && (await proxyTunnels(p2)).gateways === 2,
      { what: 'every gateway back at proxy-2', timeoutMs: 5000, intervalMs: 20, detail: () => d.tails() },
    );
    t.diagnostic(`proxy-2 ready again after 20 s down → every gateway tunnelled to it: ${longBack.ms} ms`);

    for (const g of d.gateways) {
      const c = await d.connect({ gateway: g });
      assertByteExact(await d.transfer(c, 4 * MiB), `4 MiB through ${g.name} after the fleet changes`);
    }
  } catch (err) {
    process.stderr.write(`\n${d.tails(30)}\n`);
    throw err;
  }
});
