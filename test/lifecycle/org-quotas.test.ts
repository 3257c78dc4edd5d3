/**
 * Issue 14, per-org quotas of an instance (shared) proxy, against real daemon processes: one CA with two orgs,
 * "lab" and "acme", one instance proxy run with max_tunnels_per_org 1 and max_streams_per_org 2, a gateway of
 * each org and `infisical-connect` for each org's identity.
 *
 * lab holds its one tunnel: a second one (its own certificate, a second login) is refused at the forward, while
 * acme's gateway gets its tunnel. lab holds two live streams: a third is refused E_QUOTA_EXCEEDED (the code
 * reaches `infisical-connect`), while acme's transfer goes through byte-exact; once lab closes a stream, its
 * next one goes through again. Refusals are read from infisical_proxy_limit_refusals_total{limit}.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { forward, limitRefusals, loginAs, transferOk } from './abuse.js';
import { startDeployment, waitFor } from './deploy.js';
import { liveStream } from './probes.js';

test('instance proxy: an org at its tunnel and stream quotas is refused while another org gets through', async (t) => {
  const d = await startDeployment({
    proxies: 1,
    gateways: 1,
    proxyArgs: ['--max-tunnels-per-org', '1', '--max-streams-per-org', '2'],
  });
  t.after(() => d.close());
  try {
    const proxy = d.proxies[0]!;
    const lab = d.gateways[0]!;

    // Tunnels: lab holds its quota of one; acme's gateway still gets its tunnel.
    await d.ca.cli(['org', 'create', 'acme']);
    const acmeApp = await d.identity('acme-app', { targets: [d.target.address] }, 'acme');
    const acme = await d.addGateway(undefined, { org: 'acme', id: 'gw-acme' });
    await acme.waitTunnels(1);
    const second = await loginAs(lab, proxy);
    const refused = await forward(second.client, lab.gatewayId);
    second.client.end();
    assert.ok(refused, "lab's second tunnel was granted beyond max_tunnels_per_org");
    assert.equal(await limitRefusals(proxy, { listener: 'ssh', limit: 'max_tunnels_per_org' }), 1);
    assert.equal(await lab.tunnelsUp(), 1, "lab's own tunnel stays up");

    // Streams: lab holds two; the third is refused with the quota's code.
    const labConnect = await d.connect({ gateway: lab });
    const held = [await liveStream(labConnect.port, d.target), await liveStream(labConnect.port, d.target)];
    t.after(() => {
      for (const s of held) s.close();
    });
    for (const s of held) assert.deepEqual(await s.exchange(64 * 1024), { ok: true });
    const third = await liveStream(labConnect.port, d.target);
    const r3 = await third.exchange(4096, 30_000);
    third.close();
    assert.equal(r3.ok, false, "lab's third stream went through beyond max_streams_per_org");
    await waitFor(() => labConnect.events().some((e) => e['code'] === 'E_QUOTA_EXCEEDED'), {
      what: 'infisical-connect (lab) to report E_QUOTA_EXCEEDED',
      timeoutMs: 15_000,
      detail: () => JSON.stringify(labConnect.events()),
    });
    assert.ok((await limitRefusals(proxy, { listener: 'tls', limit: 'max_streams_per_org' })) >= 1);

    // acme is not starved: its transfer goes through while lab sits at its quota; lab's streams still carry.
    await transferOk(d, { gateway: acme, identity: acmeApp });
    for (const s of held) assert.deepEqual(await s.exchange(64 * 1024), { ok: true });

    // The quota is held, not spent: lab closes one stream and its next one goes through.
    held[0]!.close();
    await waitFor(async () => ((await proxy.metric('infisical_proxy_streams')) ?? 99) <= 1, {
      what: 'the proxy to see the closed stream',
      timeoutMs: 15_000,
    });
    const again = await liveStream(labConnect.port, d.target);
    assert.deepEqual(await again.exchange(64 * 1024), { ok: true });
    again.close();
  } catch (err) {
    process.stderr.write(`\n${d.tails()}\n`);
    throw err;
  }
});
