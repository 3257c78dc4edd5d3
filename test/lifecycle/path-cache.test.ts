/**
 * THE verifier's path cache (lib/pki/path-cache.ts) through real processes (CA, proxy, gateway,
 * `infisical-connect tcp`): the proxy (the client's outer certificate) and the gateway (the grant's inner
 * certificate) find the certificate they judged on the first stream in their cache on the next ones, and a
 * certificate they hold there is still refused once its serial is revoked: at the gateway (the inner one) and
 * at the proxy (the outer one). Each time connect drops the grant, fetches a new one and the bytes go through
 * exactly. Expiry and a change of anchors on a cache hit: test/pki/path-cache.test.ts (injected clock).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertByteExact, startDeployment, waitFor } from './deploy.js';
import { grantSerials } from './probes.js';

const FEED = ['--revocation-poll', '1s'];
const KiB = 1024;

type Scraped = { metric(name: string, labels?: Record<string, string>): Promise<number | undefined> };

const lookups = async (d: Scraped, daemon: 'proxy' | 'gateway', result: 'hit' | 'miss') =>
  (await d.metric(`infisical_${daemon}_verifier_path_cache_lookups`, { result })) ?? 0;

test('proxy and gateway judge a cached certificate again: revoked serials are refused on a cache hit', async (t) => {
  const d = await startDeployment({ proxies: 1, gateways: 1, proxyArgs: FEED, gatewayArgs: FEED });
  t.after(() => d.close());
  const proxy = d.proxies[0]!;
  const gw = d.gateways[0]!;
  try {
    const c = await d.connect({ gateway: gw });
    for (let i = 0; i < 4; i++) assertByteExact(await d.transfer(c, 64 * KiB), `stream ${i + 1}`);
    const grantId = (n: number) => c.events().filter((e) => e['event'] === 'grant')[n]?.['grantId'] as string;
    const first = grantId(0);
    assert.ok(first, 'a grant event');
    assert.ok((await lookups(gw, 'gateway', 'hit')) >= 3, 'the gateway found the grant certificate in its cache');
    assert.ok((await lookups(proxy, 'proxy', 'hit')) >= 3, 'the proxy found the outer certificate in its cache');

    // The grant's inner certificate, cached at the gateway, revoked by serial.
    const inner = grantSerials(d.ca.stateDir, first)['grant-inner'];
    assert.ok(inner, "the CA recorded the grant's inner certificate");
    const gwHits = await lookups(gw, 'gateway', 'hit');
    await d.revoke('certificate', inner);
    await waitFor(
      () =>
        gw
          .logLines()
          .find((l) => l['event'] === 'gateway.revocation' && l['kind'] === 'certificate' && l['subject'] === inner),
      { timeoutMs: 10_000, what: 'the gateway to learn of the revocation' },
    );
    assertByteExact(await d.transfer(c, 64 * KiB, { timeoutMs: 20_000 }), 'the next stream, on a new grant');
    const refusedAtGateway = (await gw.metric('infisical_gateway_refusals_total', { code: 'E_CERT_REVOKED' })) ?? 0;
    assert.ok(refusedAtGateway >= 1, `the gateway refused the revoked certificate:\n${gw.tail()}`);
    assert.ok((await lookups(gw, 'gateway', 'hit')) > gwHits, 'on a cache hit');
    const second = grantId(1);
    assert.ok(second && second !== first, 'connect fetched a new grant');

    // The new grant's outer certificate, cached at the proxy, revoked by serial.
    assertByteExact(await d.transfer(c, 64 * KiB), 'another stream on the new grant');
    const serials = grantSerials(d.ca.stateDir, second);
    const outer = Object.entries(serials).filter(([kind]) => kind.startsWith('grant-outer'));
    assert.ok(outer.length > 0, `the CA recorded the grant's outer certificate: ${JSON.stringify(serials)}`);
    const proxyHits = await lookups(proxy, 'proxy', 'hit');
    const applied = async () => (await proxy.metric('infisical_proxy_revocations_total', { kind: 'certificate' })) ?? 0;
    const appliedBefore = await applied(); // the inner certificate's revocation counts here too
    for (const [, serial] of outer) await d.revoke('certificate', serial);
    await waitFor(async () => (await applied()) >= appliedBefore + outer.length, {
      timeoutMs: 10_000,
      what: 'the proxy to learn of the revocation',
    });
    assertByteExact(await d.transfer(c, 64 * KiB, { timeoutMs: 20_000 }), 'the next stream, on a third grant');
    const line = await waitFor(
      // The verifier's refusal (its reason names the serial), not the relay's later stream-revocation check,
      // which would refuse the same certificate with the same code had the verifier skipped revocation on a hit.
      () =>
        proxy
          .logLines()
          .find(
            (l) =>
              l['listener'] === 'tls' &&
              l['code'] === 'E_CERT_REVOKED' &&
              /^serial [0-9a-f]+ of .* is revoked$/.test(String(l['reason'])),
          ),
      { what: "the proxy's refusal in its log", timeoutMs: 10_000 },
    );
    assert.ok(line, 'the proxy refused the revoked outer certificate');
    assert.ok((await lookups(proxy, 'proxy', 'hit')) > proxyHits, 'on a cache hit');
    assert.ok(grantId(2) && grantId(2) !== second, 'connect fetched a third grant');
  } catch (err) {
    process.stderr.write(`\n${d.tails()}\n`);
    throw err;
  }
});
