/**
 * Issue 11 item 8: a revoked component stops serving and says why. A revoked proxy closes its SSH and TLS
 * listeners (TCP connections are refused) but keeps running, answering /readyz 503 E_SUBJECT_REVOKED, with an
 * error line in its log; a revoked gateway closes every tunnel, likewise. Started again, each exits at once
 * with status 77 (EXIT_REVOKED), which the systemd units list in RestartPreventExitStatus= so systemd does not
 * restart it in a loop.
 */
import assert from 'node:assert/strict';
import { readFileSync } from 'node:fs';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { assertByteExact, type Daemon, type Deployment, startDeployment, waitFor } from './deploy.js';
import { tcpRefused } from './probes.js';

const FEED = ['--revocation-poll', '1s'];
const EXIT_REVOKED = 77;

/** Starts a stopped daemon again and waits for its exit: status, output of that run, ms. */
async function startExpectingExit(d: Daemon): Promise<{ code: number | null; ms: number; output: string }> {
  const before = d.log().length;
  const started = Date.now();
  d.spawn();
  const exit = await Promise.race([
    d.exited,
    new Promise<undefined>((r) => setTimeout(() => r(undefined), 20_000).unref()),
  ]);
  if (!exit) {
    await d.kill();
    assert.fail(`${d.name} started again was still running after 20 s\n${d.tail()}`);
  }
  return { code: exit.code, ms: Date.now() - started, output: d.log().slice(before) };
}

async function assertRevokedReadiness(d: Daemon): Promise<void> {
  const r = await d.readyz();
  assert.equal(r.status, 503, `${d.name} /readyz: ${r.text}`);
  assert.equal(r.json?.['code'], 'E_SUBJECT_REVOKED', `${d.name} /readyz: ${r.text}`);
}

async function withLogs(d: Deployment, fn: () => Promise<void>): Promise<void> {
  try {
    await fn();
  } catch (err) {
    process.stderr.write(`\n${d.tails()}\n`);
    throw err;
  } finally {
    await d.close();
  }
}

test('a revoked proxy and a revoked gateway stop serving, say why, and exit 77 when started again', async (t) => {
  const d = await startDeployment({ proxies: 2, gateways: 2, proxyArgs: FEED, gatewayArgs: FEED });
  t.after(() => d.close());
  await withLogs(d, async () => {
    const [proxy1, proxy2] = d.proxies as [(typeof d.proxies)[0], (typeof d.proxies)[0]];
    const [gw1, gw2] = d.gateways as [(typeof d.gateways)[0], (typeof d.gateways)[0]];
    assert.equal(await tcpRefused(proxy2.sshPort), false, 'proxy-2 SSH listens before');
    assert.equal(await tcpRefused(proxy2.tlsPort), false, 'proxy-2 TLS listens before');

    // --- the proxy
    const { ms: proxyMs } = await d.revokeAndMeasure(
      'proxy',
      'proxy-2',
      async () => (await tcpRefused(proxy2.sshPort)) && (await tcpRefused(proxy2.tlsPort)),
      { timeoutMs: 15_000, what: "proxy-2's SSH and TLS ports to refuse connections" },
    );
    t.diagnostic(`proxy-2 listeners closed ${proxyMs} ms after the revocation`);
    assert.ok(proxy2.running, 'the revoked proxy process is still running');
    await assertRevokedReadiness(proxy2);
    const proxyError = proxy2.logLines().find((l) => l['level'] === 'error' && /revoked/.test(String(l['msg'])));
    assert.ok(proxyError, `an error line names the revocation:\n${proxy2.tail()}`);
    assert.equal((await proxy2.metric('infisical_proxy_revoked')) ?? -1, 1, 'infisical_proxy_revoked 1');
    // Traffic carries on through proxy-1.
    await Promise.all([gw1.waitTunnels(1, 15_000), gw2.waitTunnels(1, 15_000)]);
    const c = await d.connect({ gateway: gw1 });
    assertByteExact(await d.transfer(c, 512 * 1024), 'through proxy-1 after proxy-2 was revoked');

    await proxy2.stop();
    const proxyRun = await startExpectingExit(proxy2);
    t.diagnostic(`proxy-2 started again exited ${proxyRun.code} after ${proxyRun.ms} ms`);
    assert.equal(proxyRun.code, EXIT_REVOKED, `proxy-2 exits 77:\n${proxyRun.output}`);
    assert.match(proxyRun.output, /E_SUBJECT_REVOKED/, 'and says why');
    assert.ok(proxyRun.ms < 15_000, `quickly, no loop (${proxyRun.ms} ms)`);

    // --- the gateway
    const { ms: gwMs } = await d.revokeAndMeasure(
      'gateway',
      'gw-2',
      async () => {
        const r = await gw2.readyz();
        return r.status === 503 && r.json?.['code'] === 'E_SUBJECT_REVOKED';
      },
      { timeoutMs: 15_000, what: 'gw-2 /readyz to say E_SUBJECT_REVOKED' },
    );
    t.diagnostic(`gw-2 revoked readiness ${gwMs} ms after the revocation`);
    await waitFor(async () => (await gw2.metric('infisical_gateway_tunnels_up')) === 0, {
      timeoutMs: 10_000,
      what: 'gw-2 to report 0 tunnels up',
    });
    assert.equal(await gw2.tunnelsUp(), 0, 'no tunnel in /readyz either');
    await waitFor(
      async () => ((await proxy1.readyz()).json?.['detail'] as { gateways?: number } | undefined)?.gateways === 1,
      { timeoutMs: 10_000, what: 'proxy-1 to hold only gw-1' },
    );
    assert.ok(gw2.running, 'the revoked gateway process is still running');
    await assertRevokedReadiness(gw2);
    const gwError = gw2.logLines().find((l) => l['level'] === 'error' && /revoked/.test(String(l['msg'])));
    assert.ok(gwError, `an error line names the revocation:\n${gw2.tail()}`);
    assert.equal((await gw2.metric('infisical_gateway_revoked')) ?? -1, 1, 'infisical_gateway_revoked 1');

    await gw2.stop();
    const gwRun = await startExpectingExit(gw2);
    t.diagnostic(`gw-2 started again exited ${gwRun.code} after ${gwRun.ms} ms`);
    assert.equal(gwRun.code, EXIT_REVOKED, `gw-2 exits 77:\n${gwRun.output}`);
    assert.match(gwRun.output, /E_SUBJECT_REVOKED/, 'and says why');
    assert.ok(gwRun.ms < 15_000, `quickly, no loop (${gwRun.ms} ms)`);

    // gw-1 still serves.
    assertByteExact(await d.transfer(c, 512 * 1024), 'through gw-1 at the end');
  });
});

test('the proxy and gateway units do not restart a daemon that exited 77', () => {
  for (const unit of ['infisical-proxy.service', 'infisical-gateway.service']) {
    const text = readFileSync(fileURLToPath(new URL(`../../../systemd/${unit}`, import.meta.url)), 'utf8');
    const line = /^RestartPreventExitStatus=(.*)$/m.exec(text);
    assert.ok(line, `${unit} has RestartPreventExitStatus=`);
    assert.ok(line[1]!.split(/\s+/).includes(String(EXIT_REVOKED)), `${unit}: ${line[0]}`);
  }
});
