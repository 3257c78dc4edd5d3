/**
 * Issue 14, the gateway's cap on channels waiting for admission (max_pending_channels), against real daemon
 * processes: one CA, two instance proxies, one gateway run with max_pending_channels 4.
 *
 * Twelve outer connections with a real grant go to proxy-1 at once and then never start the inner handshake:
 * each makes proxy-1 open a channel to the gateway, which waits for a ClientHello that never comes. The gateway
 * accepts at most 4 of them (the proxy answers those {"ok":true}); the other opens are rejected at once (the
 * proxy answers E_GATEWAY_OFFLINE) and counted in infisical_gateway_limit_refusals_total. While the flood holds
 * its 4, `infisical-connect` moves bytes byte-exact (through proxy-2: the cap is per proxy). Once the held
 * channels are gone, proxy-1 carries streams again.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { holdOuter, limitRefusals } from './abuse.js';
import { assertByteExact, startDeployment, waitFor } from './deploy.js';
import { grantFromCa } from './helpers5.js';

const CAP = 4;
const FLOOD = 12;

test('gateway: a flood of channel opens from one proxy is capped at max_pending_channels while a transfer succeeds', async (t) => {
  const d = await startDeployment({
    proxies: 2,
    gateways: 1,
    // The gateway's inner-handshake time is long, so the flood holds its channels through the whole test.
    gatewayArgs: ['--max-pending-channels', String(CAP), '--handshake-timeout', '120s'],
  });
  t.after(() => d.close());
  try {
    const [p1] = d.proxies;
    const gw = d.gateways[0]!;
    const grant = await grantFromCa(d, { gatewayId: gw.gatewayId, ttlSeconds: 300 });
    // Started before the flood, so its CA round trips are not part of what is measured.
    // No relay opened ahead (--warm-relay 0): it would be one more pending channel, and the counts below are exact.
    const connect = await d.connect({ gateway: gw, args: ['--warm-relay', '0'] });

    const flood = await Promise.all(Array.from({ length: FLOOD }, () => holdOuter(p1!.tlsPort, grant)));
    t.after(() => {
      for (const f of flood) f.socket.destroy();
    });
    const admitted = flood.filter((f) => f.status.ok).length;
    const rejected = flood.filter((f) => !f.status.ok);
    assert.equal(admitted, CAP, `the gateway took ${admitted} channels that never handshake (cap ${CAP})`);
    assert.ok(
      rejected.every((f) => !f.status.ok && f.status.code === 'E_GATEWAY_OFFLINE'),
      JSON.stringify(rejected.map((f) => f.status)),
    );
    assert.equal(await limitRefusals(gw, { limit: 'max_pending_channels' }), FLOOD - CAP);
    assert.equal(await gw.metric('infisical_gateway_channels_pending'), CAP);

    // A real transfer while the flood holds its channels.
    assertByteExact(await d.transfer(connect, 2 * 1024 * 1024, { timeoutMs: 60_000 }));
    const via = connect
      .events()
      .filter((e) => e['event'] === 'opened')
      .map((e) => e['proxyId']);
    t.diagnostic(`the transfer went via ${via.join(', ')}`);
    assert.equal(await gw.metric('infisical_gateway_channels_pending'), CAP, 'the flood still holds its channels');
    await connect.stop();

    // The held channels go (the flood gives up): proxy-1 carries streams again.
    for (const f of flood) f.socket.destroy();
    await waitFor(async () => (await gw.metric('infisical_gateway_channels_pending')) === 0, {
      what: 'the held channels to be released',
      timeoutMs: 30_000,
    });
    const after = await holdOuter(p1!.tlsPort, grant);
    after.socket.destroy();
    assert.deepEqual(after.status, { ok: true }, 'proxy-1 opens a channel to the gateway again');
  } catch (err) {
    process.stderr.write(`\n${d.tails()}\n`);
    throw err;
  }
});
