/**
 * Issue 14, abuse limits of the proxy listeners, against real daemon processes (one CA, one instance proxy, one
 * gateway, `infisical-connect`):
 *
 *  (a) raw TCP connections from 127.0.0.2 that never handshake, to both listeners, meet
 *      max_unauthenticated_per_source (refused at accept) and handshake_timeout (cut at the deadline; so is a
 *      TLS client that drips its ClientHello a byte at a time: a deadline, not an idle timer), while a
 *      gateway logging in and an `infisical-connect` transfer from 127.0.0.1 go through byte-exact;
 *  (b) a login with the gateway's own certificate (read from its state) that never asks for a forward is closed
 *      after forward_timeout, while the real gateway's tunnel carries a transfer.
 *
 * Refusals are read from the proxy's /metrics (infisical_proxy_limit_refusals_total{listener,limit}).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { clientHello, drip, flood, limitRefusals, loginAs, transferOk } from './abuse.js';
import { startDeployment, waitFor } from './deploy.js';

const FLOOD_SOURCE = '127.0.0.2';
const DRIP_SOURCE = '127.0.0.3';

test('(a)+(b) proxy: per-source handshake limits and deadline on both listeners; a login that never forwards is closed', async (t) => {
  const d = await startDeployment({
    proxies: 1,
    gateways: 1,
    proxyArgs: ['--max-unauthenticated-per-source', '6', '--handshake-timeout', '6s', '--forward-timeout', '2s'],
  });
  t.after(() => d.close());
  try {
    const proxy = d.proxies[0]!;
    const gw = d.gateways[0]!;
    const hello = await clientHello();

    // (a) Twenty silent connections from one source per listener, kept topped up; a dripping TLS client beside.
    const floods = [flood(proxy.sshPort, FLOOD_SOURCE, 20), flood(proxy.tlsPort, FLOOD_SOURCE, 20)];
    const dripping = drip(proxy.tlsPort, DRIP_SOURCE, hello);
    t.after(() => {
      for (const f of floods) f.stop();
      dripping.stop();
    });
    const perSource = { limit: 'max_unauthenticated_per_source' };
    for (const listener of ['ssh', 'tls']) {
      await waitFor(async () => (await limitRefusals(proxy, { listener, ...perSource })) >= 14, {
        what: `the ${listener} listener to refuse the flood beyond 6 per source`,
        timeoutMs: 30_000,
        detail: () => d.tails(),
      });
    }
    const refusedBefore =
      (await limitRefusals(proxy, { listener: 'ssh', ...perSource })) +
      (await limitRefusals(proxy, { listener: 'tls', ...perSource }));

    // Under the flood, from 127.0.0.1: a gateway logs in again and holds its tunnel, and a transfer goes through.
    await gw.restart();
    await gw.waitTunnels(1, 60_000);
    await transferOk(d);
    const refusedAfter =
      (await limitRefusals(proxy, { listener: 'ssh', ...perSource })) +
      (await limitRefusals(proxy, { listener: 'tls', ...perSource }));
    assert.ok(refusedAfter > refusedBefore, 'the flood went on being refused while the legitimate clients got through');

    // The connections the flood holds are cut at the handshake deadline (the listener closes them, not us).
    for (const listener of ['ssh', 'tls']) {
      await waitFor(async () => (await limitRefusals(proxy, { listener, limit: 'handshake_timeout' })) >= 6, {
        what: `the ${listener} listener to cut held connections at handshake_timeout`,
        timeoutMs: 60_000,
        detail: () => d.tails(),
      });
    }
    assert.ok(
      floods.every((f) => f.serverClosed >= 20),
      'the proxy closed every flood connection itself',
    );
    // A deadline, not an idle timer: the dripping ClientHello is cut although a byte arrives every 300 ms.
    await waitFor(() => dripping.closed.then(() => true), {
      what: 'the dripping TLS client to be cut',
      timeoutMs: 60_000,
    });
    assert.ok(dripping.sent < hello.length, `the ClientHello (${hello.length} bytes) was cut after ${dripping.sent}`);
    for (const f of floods) f.stop();
    dripping.stop();

    // (b) The gateway's own certificate logs in and asks for no forward: closed after forward_timeout.
    const idle = await loginAs(gw, proxy);
    await waitFor(
      () => Promise.race([idle.closed.then(() => true), new Promise((r) => setTimeout(() => r(false), 500))]),
      {
        what: 'a login that never forwards to be closed',
        timeoutMs: 30_000,
        detail: () => d.tails(),
      },
    );
    assert.ok((await limitRefusals(proxy, { listener: 'ssh', limit: 'forward_timeout' })) >= 1);
    // The real gateway's tunnel (it forwarded at once) is untouched and carries a transfer.
    assert.equal(await gw.tunnelsUp(), 1);
    await transferOk(d);
  } catch (err) {
    process.stderr.write(`\n${d.tails()}\n`);
    throw err;
  }
});
