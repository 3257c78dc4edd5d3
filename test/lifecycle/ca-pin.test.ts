/**
 * CA API trust over time (issue 12, first part), real processes: (1) `infisical-ca api-cert` and the CA's
 * SIGHUP change the API certificate; every component pinned the API root at enrollment and keeps reading the
 * feed with no change anywhere, and a revocation made afterwards still lands. (2) A component whose stored pin
 * no longer matches (its feed goes stale) is fixed by the operator naming the right fingerprint in its config
 * and sending SIGHUP: no re-enrollment, no restart.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { test } from 'node:test';
import Database from 'better-sqlite3';
import { startDeployment, waitFor } from './deploy.js';

const FEED = ['--feed-stale-after', '4s', '--revocation-poll', '1s'];
const LAST = 'infisical_gateway_feed_last_success_timestamp_seconds';

test('the API certificate changes under a running fleet; a pin set in the config takes effect on SIGHUP', async (t) => {
  const d = await startDeployment({ proxies: 1, gateways: 2, proxyArgs: FEED, gatewayArgs: FEED });
  t.after(() => d.close());
  try {
    const [gw1, gw2] = [d.gateways[0]!, d.gateways[1]!];
    // (1) A new API certificate from the same root, served after SIGHUP.
    const issued = await d.ca.cli(['api-cert', '--api-name', '127.0.0.1']);
    assert.equal(issued['apiFingerprint'], d.ca.fingerprint, 'the root the fleet pinned is unchanged');
    d.ca.hup();
    const before = (await gw1.metric(LAST)) ?? 0;
    await waitFor(async () => ((await gw1.metric(LAST)) ?? 0) > before + 1, {
      what: 'gw-1 reads the feed after the new API certificate',
      timeoutMs: 20_000,
    });
    for (const x of [gw1, gw2, d.proxies[0]!]) assert.equal((await x.readyz()).status, 200, x.name);
    const revoked = await d.revokeAndMeasure('gateway', gw2.gatewayId, async () => (await gw2.readyz()).status === 503);
    t.diagnostic(`revocation after api-cert landed in ${revoked.ms} ms`);

    // (2) gw-1's stored pin goes wrong (as after a CA move the operator was told about): its feed goes stale.
    await gw1.stop();
    const db = new Database(join(gw1.stateDir, 'gateway.db'));
    db.prepare('UPDATE enrollment SET ca_fingerprint = ?').run('0'.repeat(64));
    db.close();
    const conf = join(d.dir, 'gw-1.conf');
    writeFileSync(conf, '# no pin here yet\n');
    gw1.args = [...gw1.args, '--config', conf];
    await gw1.start();
    await waitFor(async () => (await gw1.readyz()).json?.['code'] === 'E_FEED_STALE', {
      what: 'gw-1 stale with a pin that does not match',
      timeoutMs: 20_000,
    });
    const pid = gw1.pid;
    // A reload that fails (here: an upstream CA file that is not there) takes nothing of the new config, not
    // even the pin: it is neither trusted nor stored.
    writeFileSync(
      conf,
      `ca_fingerprint = ${d.ca.fingerprint}\nhttp_upstream_tls = true\nhttp_upstream_ca = ${join(d.dir, 'missing.pem')}\n`,
    );
    gw1.hup();
    await waitFor(() => gw1.logLines().some((l) => l['msg'] === 'reload failed; keeping the previous configuration'), {
      what: 'gw-1 to report the failed reload',
      timeoutMs: 10_000,
    });
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal((await gw1.readyz()).json?.['code'], 'E_FEED_STALE', 'the pin of a failed reload is not trusted');
    const stored = new Database(join(gw1.stateDir, 'gateway.db'), { readonly: true });
    const pins = (stored.prepare('SELECT ca_fingerprint FROM enrollment').get() as { ca_fingerprint: string })
      .ca_fingerprint;
    stored.close();
    assert.equal(pins, '0'.repeat(64), 'nor stored');
    writeFileSync(conf, `ca_fingerprint = ${d.ca.fingerprint}\n`);
    gw1.hup();
    await waitFor(async () => (await gw1.readyz()).status === 200, {
      what: 'gw-1 ready again after SIGHUP with the fingerprint in its config',
      timeoutMs: 20_000,
    });
    assert.equal(gw1.pid, pid, 'no restart');
    assert.ok(gw1.log().includes('CA API fingerprint from the config trusted'));
  } catch (err) {
    process.stderr.write(`\n${d.tails()}\n`);
    throw err;
  }
});
