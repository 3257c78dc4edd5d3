/**
 * Components that know two URLs of one CA (issue 17), real processes through their CLIs: the gateway's config
 * names a relay in front of the CA first and the CA itself second (`ca_url = relay,direct`), and
 * `infisical-connect` takes `--ca` twice. With the relay up, everything goes through it (a checksummed
 * transfer); once it is gone (SIGKILL-like: listener closed, every connection reset), the gateway still reads
 * the feed through the second URL (a revocation reaches it; the warning names the URL it left), a new
 * `infisical-connect` logs in and transfers, and `infisical-gateway renew` (beside the running serve, from
 * the URLs stored at start) renews.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import { createServer, type Socket, connect as tcpConnect } from 'node:net';
import { join } from 'node:path';
import { test } from 'node:test';
import { assertByteExact, startDeployment, waitFor } from './deploy.js';
import { runProgram } from './probes.js';

/** A TCP relay to the CA: the "first replica" of the test; kill() makes it vanish at once. */
async function relayTo(port: number) {
  const sockets = new Set<Socket>();
  const server = createServer((inbound) => {
    const outbound = tcpConnect({ host: '127.0.0.1', port });
    for (const s of [inbound, outbound]) {
      sockets.add(s);
      s.on('error', () => {});
      s.once('close', () => sockets.delete(s));
    }
    inbound.pipe(outbound).pipe(inbound);
  });
  await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
  let connections = 0;
  server.on('connection', () => connections++);
  return {
    url: `https://127.0.0.1:${(server.address() as { port: number }).port}`,
    get connections() {
      return connections;
    },
    kill: () =>
      new Promise<void>((resolve) => {
        server.close(() => resolve());
        for (const s of sockets) s.resetAndDestroy();
      }),
  };
}

async function gatewayStatus(stateDir: string): Promise<Record<string, unknown>> {
  const r = await runProgram('gateway', ['status', '--state-dir', stateDir, '--json']);
  assert.equal(r.code, 0, r.stderr);
  return JSON.parse(r.stdout) as Record<string, unknown>;
}

test('gateway and connect fail over to the second CA URL when the first one is gone', async (t) => {
  const d = await startDeployment({ proxies: 1, gateways: 1 });
  t.after(() => d.close());
  try {
    const gw = d.gateways[0]!;
    const relay = await relayTo(Number(new URL(d.ca.url).port));
    t.after(() => relay.kill());
    const both = `${relay.url},${d.ca.url}`;

    // The gateway's config names the relay first: the stored URL is replaced at start.
    await gw.stop();
    const conf = join(d.dir, 'gw-1.conf');
    writeFileSync(conf, `ca_url = ${both}\n`);
    gw.args = [...gw.args, '--config', conf];
    await gw.start();
    await gw.waitTunnels();
    assert.ok(gw.log().includes('CA API URLs taken from the config (ca_url)'), 'the new URL list is announced');

    // infisical-connect with --ca given twice, the relay first.
    const c = await d.connect();
    const caAt = c.args.indexOf('--ca');
    c.args.splice(caAt, 2, '--ca', relay.url, '--ca', d.ca.url);
    await c.restart();
    assertByteExact(await d.transfer(c, 1 << 20), 'transfer with the first CA URL up');
    assert.ok(relay.connections > 0, 'the first URL was used while it was up');

    // The first URL vanishes.
    await relay.kill();
    const before = Number((await gatewayStatus(gw.stateDir))['feedSeq']);
    const other = await d.identity('other');
    await d.revoke('identity', other.identityId);
    await waitFor(async () => Number((await gatewayStatus(gw.stateDir))['feedSeq']) > before, {
      what: 'the gateway to read the revocation through the second URL',
      timeoutMs: 30_000,
    });
    const warned = gw.logLines().find((l) => l['msg'] === 'CA API URL unreachable, trying the next one');
    assert.ok(warned, 'the failover is logged');
    assert.equal(warned['from'], relay.url);
    assert.equal(warned['to'], d.ca.url);
    assert.equal((await gw.readyz()).status, 200);

    // A new connect (login, grant) through the second URL, and bytes through the tunnel.
    const c2 = await d.connect();
    c2.args.splice(c2.args.indexOf('--ca'), 2, '--ca', `${relay.url},${d.ca.url}`);
    await c2.restart();
    assertByteExact(await d.transfer(c2, 1 << 20), 'transfer after the first CA URL is gone');

    // `renew` beside the running serve uses the stored list (the relay first) and fails over too.
    const renewed = await runProgram('gateway', ['renew', '--state-dir', gw.stateDir, '--json']);
    assert.equal(renewed.code, 0, `renew: ${renewed.stderr}`);
  } catch (err) {
    process.stderr.write(`\n${d.tails()}\n`);
    throw err;
  }
});
