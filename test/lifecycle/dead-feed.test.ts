/**
 * Issue 11 item 10: a dead revocation feed shows. With the CA stopped, a gateway and a proxy (feed stale after
 * 5 s) turn /readyz 503 E_FEED_STALE while traffic still flows byte-exact (a stale feed means revocations stopped
 * arriving, not that traffic must stop); the gateway logs the failure once, not once per poll; its
 * feed_last_success_timestamp_seconds stays put. With the CA back, readiness returns and one recovery line is
 * logged.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertByteExact, type Daemon, startDeployment, waitFor } from './deploy.js';
import { countMessages } from './probes.js';

const FEED = ['--feed-stale-after', '5s', '--revocation-poll', '1s'];
const FAILING = 'revocation feed cannot be read';
const RECOVERED = 'revocation feed read again';
const GATEWAY_LAST = 'infisical_gateway_feed_last_success_timestamp_seconds';
const PROXY_LAST = 'infisical_proxy_feed_last_success_timestamp_seconds';

async function readiness(d: Daemon): Promise<{ status: number; code: unknown; text: string }> {
  const r = await d.readyz();
  return { status: r.status, code: r.json?.['code'], text: r.text };
}

test('a dead feed makes readiness say E_FEED_STALE, traffic goes on, and it recovers with the CA', async (t) => {
  const d = await startDeployment({ proxies: 2, gateways: 2, proxyArgs: FEED, gatewayArgs: FEED });
  t.after(() => d.close());
  try {
    const gw = d.gateways[0]!;
    const proxy = d.proxies[0]!;
    // A grant while the CA answers; the feed has been read (the CA answers at once, then 1 s between reads).
    const c = await d.connect({ gateway: gw });
    assertByteExact(await d.transfer(c, 512 * 1024), 'before the CA stops');
    await waitFor(async () => ((await gw.metric(GATEWAY_LAST)) ?? 0) > 0, { what: 'a first feed read by gw-1' });
    await waitFor(async () => ((await proxy.metric(PROXY_LAST)) ?? 0) > 0, { what: 'a first feed read by proxy-1' });
    // Healthy for longer than the stale bound: regular reads keep it fresh.
    await new Promise((r) => setTimeout(r, 6000));
    assert.equal((await gw.readyz()).status, 200, 'fresh while the CA answers (gw-1)');
    assert.equal((await proxy.readyz()).status, 200, 'fresh while the CA answers (proxy-1)');
    const failingBefore = countMessages(gw.logLines(), FAILING);

    await d.ca.stop();
    const stoppedAt = Date.now();
    const stale = async (x: Daemon) => {
      const r = await readiness(x);
      return r.status === 503 && r.code === 'E_FEED_STALE';
    };
    await waitFor(async () => (await stale(gw)) && (await stale(proxy)), {
      timeoutMs: 15_000,
      what: 'gw-1 and proxy-1 /readyz 503 E_FEED_STALE',
      detail: async () => `${(await readiness(gw)).text}\n${(await readiness(proxy)).text}`,
    });
    t.diagnostic(`both stale ${Date.now() - stoppedAt} ms after the CA stopped`);
    const gwReady = await readiness(gw);
    assert.match(gwReady.text, /revocation feed not read/, gwReady.text);

    // Traffic does not depend on the feed.
    assertByteExact(await d.transfer(c, 1024 * 1024), 'while the feed is stale');

    const last1 = (await gw.metric(GATEWAY_LAST)) ?? 0;
    assert.ok(last1 > 0, `${GATEWAY_LAST} ${last1} > 0`);
    assert.ok(last1 * 1000 <= stoppedAt + 1000, `the last success (${last1}) is from before the CA stopped`);
    await new Promise((r) => setTimeout(r, 3000));
    assert.equal((await gw.metric(GATEWAY_LAST)) ?? 0, last1, `${GATEWAY_LAST} does not advance`);
    assert.equal(await stale(gw), true, 'still stale');

    // Over >= 8 s of failing reads at 1 s: one warning.
    const failed = countMessages(gw.logLines(), FAILING) - failingBefore;
    t.diagnostic(`${Math.round((Date.now() - stoppedAt) / 1000)} s of failing reads, ${failed} warning(s)`);
    assert.equal(failed, 1, `exactly one '${FAILING}' line:\n${gw.tail(40)}`);
    assert.equal(countMessages(gw.logLines(), RECOVERED), 0, 'no recovery line yet');

    await d.ca.start();
    const back = Date.now();
    const ready = async (x: Daemon) => (await x.readyz()).status === 200;
    await waitFor(async () => (await ready(gw)) && (await ready(proxy)), {
      timeoutMs: 15_000,
      what: 'gw-1 and proxy-1 /readyz 200 again',
    });
    t.diagnostic(`ready again ${Date.now() - back} ms after the CA started`);
    assert.ok(((await gw.metric(GATEWAY_LAST)) ?? 0) > last1, `${GATEWAY_LAST} advances again`);
    await waitFor(() => countMessages(gw.logLines(), RECOVERED) >= 1, { timeoutMs: 5000, what: 'a recovery line' });
    await new Promise((r) => setTimeout(r, 2000));
    assert.equal(countMessages(gw.logLines(), RECOVERED), 1, `one '${RECOVERED}' line`);
    assert.equal(countMessages(gw.logLines(), FAILING) - failingBefore, 1, 'and still one failure line');
    assertByteExact(await d.transfer(c, 512 * 1024), 'after the CA is back');
  } catch (err) {
    process.stderr.write(`\n${d.tails()}\n`);
    throw err;
  } finally {
    await d.close();
  }
});
