/**
 * Revocation lands fast (issue 11), real processes throughout. With the default feed settings (the CA holds
 * each feed read until there is news), a live stream through infisical-connect is cut within 10 s of
 * `infisical-ca revoke` of its grant, its identity or its gateway, and the revoked subject is refused
 * afterwards; a revoked proxy loses every gateway's tunnel within 10 s. Without the long-poll
 * (`--feed-wait 0 --revocation-poll 1s`), polling still applies a revocation within 10 s. The measured times
 * are printed (t.diagnostic); the bounds are generous on purpose.
 */
import assert from 'node:assert/strict';
import { type TestContext, test } from 'node:test';
import { assertByteExact, type ConnectHandle, type Deployment, startDeployment, timeUntil, waitFor } from './deploy.js';
import { closedWithin, everyGatewayHas, liveStream, proxyTunnels } from './helpers2.js';

const MiB = 1024 * 1024;
const CUT_WITHIN_MS = 10_000;

function lastGrant(c: ConnectHandle): string | undefined {
  return c.events().findLast((e) => e['event'] === 'grant')?.['grantId'] as string | undefined;
}

/** Holds a live stream through `c`, runs `revoke`, and returns the ms from its return until the stream closed. */
async function cutAfter(t: TestContext, what: string, c: ConnectHandle, revoke: () => Promise<unknown>) {
  const s = await liveStream(c.port);
  await revoke();
  const ms = await closedWithin(s, CUT_WITHIN_MS, what);
  t.diagnostic(`${what}: live stream cut ${Math.round(ms)} ms after the revoke CLI returned`);
  return ms;
}

async function withFailureTails(d: Deployment, fn: () => Promise<void>) {
  try {
    await fn();
  } catch (err) {
    process.stderr.write(`\n${d.tails(30)}\n`);
    throw err;
  }
}

test('long-poll feed: grant, identity, proxy and gateway revocations land within 10 s', async (t) => {
  const d = await startDeployment({ proxies: 2, gateways: 2 });
  t.after(() => d.close());
  await withFailureTails(d, async () => {
    const [gw1, gw2] = [d.gateways[0]!, d.gateways[1]!];

    // A grant: the stream it carries is cut; the connect's next stream finds it refused and gets a new one.
    const cg = await d.connect({ gateway: gw1 });
    assertByteExact(await d.transfer(cg, MiB), 'a transfer before the grant is revoked');
    const grant = lastGrant(cg);
    assert.ok(grant, 'connect reported its grant');
    await cutAfter(t, `grant ${grant}`, cg, () => d.revoke('grant', grant));
    assertByteExact(await d.transfer(cg, MiB), 'a transfer after the grant is revoked (on a new grant)');
    const dropped = cg.events().find((e) => e['event'] === 'grant-dropped' && e['grantId'] === grant);
    assert.ok(dropped, `the revoked grant was refused: ${JSON.stringify(cg.events())}`);
    t.diagnostic(`revoked grant refused with ${dropped['code']} at ${dropped['hop']}`);
    assert.notEqual(lastGrant(cg), grant, 'the next stream ran on a new grant');

    // An identity: cut, and every later stream of it refused.
    const id = await d.identity('doomed', { targets: [d.target.address] });
    const ci = await d.connect({ gateway: gw1, identity: id });
    await cutAfter(t, 'identity doomed', ci, () => d.revoke('identity', 'doomed'));
    const refused = await d.transfer(ci, 64 * 1024, { timeoutMs: 20_000 });
    assert.equal(refused.ok, false, 'a revoked identity carries nothing');
    assert.equal(refused.targetBytes, 0, 'not a byte of the revoked identity reached the target');
    const error = await waitFor(() => ci.events().find((e) => e['event'] === 'error'), {
      what: 'the connect of the revoked identity to report the refusal',
      timeoutMs: 10_000,
    });
    t.diagnostic(`revoked identity refused: ${error['code']} ${error['message']}`);
    assert.match(String(error['code']), /REVOKED|E_AUTH|E_UNAUTHORIZED|E_FORBIDDEN/);

    // A proxy: every gateway drops its tunnel to it.
    const { ms: proxyMs } = await d.revokeAndMeasure('proxy', 'proxy-2', () => everyGatewayHas(d.gateways, 1), {
      timeoutMs: CUT_WITHIN_MS,
      intervalMs: 20,
    });
    t.diagnostic(`proxy proxy-2: every gateway dropped its tunnel ${proxyMs} ms after the revoke CLI returned`);
    await waitFor(async () => (await proxyTunnels(d.proxies[1]!)).tunnels <= 0, {
      what: 'proxy-2 to hold no tunnel',
      timeoutMs: CUT_WITHIN_MS,
    });
    assertByteExact(await d.transfer(cg, 2 * MiB), 'a transfer through proxy-1 after proxy-2 is revoked');

    // A gateway: its stream is cut, it closes its tunnels, and nothing reaches the target through it.
    const cw = await d.connect({ gateway: gw2 });
    await cutAfter(t, 'gateway gw-2', cw, () => d.revoke('gateway', 'gw-2'));
    const { ms: downMs } = await timeUntil(async () => (await gw2.readyz()).status === 503, {
      what: 'gw-2 to be unready',
      timeoutMs: CUT_WITHIN_MS,
    });
    t.diagnostic(`gateway gw-2: /readyz 503 ${downMs} ms after its stream was cut`);
    const viaRevoked = await d.transfer(cw, 64 * 1024, { timeoutMs: 20_000 });
    assert.equal(viaRevoked.ok, false, 'a revoked gateway carries nothing');
    assert.equal(viaRevoked.targetBytes, 0);
    assertByteExact(await d.transfer(cg, 2 * MiB), 'gw-1 still carries byte-exact');
  });
});

test('polling fallback (--feed-wait 0 --revocation-poll 1s): a revocation still lands within 10 s', async (t) => {
  const polled = ['--feed-wait', '0', '--revocation-poll', '1s'];
  const d = await startDeployment({ proxies: 1, gateways: 1, proxyArgs: polled, gatewayArgs: polled });
  t.after(() => d.close());
  await withFailureTails(d, async () => {
    const id = await d.identity('polled', { targets: [d.target.address] });
    const c = await d.connect({ identity: id });
    assertByteExact(await d.transfer(c, MiB), 'a transfer before the revocation');
    await cutAfter(t, 'identity polled (polling)', c, () => d.revoke('identity', 'polled'));
    const refused = await d.transfer(c, 64 * 1024, { timeoutMs: 20_000 });
    assert.equal(refused.ok, false);
    assert.equal(refused.targetBytes, 0);
    // The gateway read the feed by polling: no held read was asked of the CA.
    assert.ok(
      d.gateways[0]!.log().includes('--feed-wait 0'),
      'the gateway was started with the long-poll off (polling fallback)',
    );
    const c2 = await d.connect();
    assertByteExact(await d.transfer(c2, MiB), 'identity app still carries byte-exact');
  });
});
