/**
 * The CA API root rotated while the fleet runs (issue 12): a running gateway and proxy learn the new root's pin
 * through the signed feed before the API serves a certificate from it, and afterwards feed, renewal and
 * revocation work without anyone touching them. Real processes, started through their CLIs.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertByteExact, waitFor, withDeployment } from './deploy.js';

const API = ['--instance', '--authority', 'api-root'];

test('the API root rotates through every phase; gateways and proxies follow it untouched', async () => {
  await withDeployment({ proxies: 1, gateways: 1, caArgs: ['--grant-ttl', '10s'] }, async (d) => {
    const [gw] = d.gateways;
    const [px] = d.proxies;
    const pids = [d.ca.pid, gw!.pid, px!.pid];
    const before = await d.connect({});
    assertByteExact(await d.transfer(before, 256 * 1024), 'before the rotation');

    await d.ca.cli(['rotate', 'start', ...API]);
    for (const phase of ['update_clients', 'update_servers', 'standby']) {
      await waitFor(async () => (await d.ca.cliResult(['rotate', 'next', ...API])).code === 0, {
        timeoutMs: 60_000,
        what: `rotate next into ${phase}`,
      });
    }
    const [status] = (await d.ca.cli(['rotate', 'status', ...API])) as unknown as {
      phase: string;
      trusted: string[];
    }[];
    assert.equal(status?.phase, 'standby');
    assert.deepEqual(status?.trusted, ['instance:api-root@2']);

    // The CA now serves a certificate from the new root: the feed and renewal of both daemons still work.
    const renewedBefore = gw!.logLines().filter((l) => l['msg'] === 'CA rotation applied').length;
    assert.ok(renewedBefore >= 3, `the gateway applied each phase (${renewedBefore})`);
    const { ms } = await d.revokeAndMeasure('proxy', px!.proxyId, async () => (await gw!.tunnelsUp()) === 0, {
      timeoutMs: 30_000,
    });
    assert.ok(ms >= 0, 'a revocation after the rotation reached the gateway through the feed');
    assert.deepEqual([d.ca.pid, gw!.pid, px!.pid], pids, 'nothing restarted');
  });
});
