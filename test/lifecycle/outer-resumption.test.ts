/**
 * Outer TLS 1.3 session resumption to the proxy (lib/proxy/relay-listener.ts tickets, lib/client/grant-tls.ts
 * outerSessions), through real processes (CA, proxy, gateway, `infisical-connect tcp --warm-relay 0`, so every
 * stream runs its own outer handshake):
 *   - the second stream of a grant resumes the first one's outer session, byte-exact;
 *   - the proxy decides nothing by the resumption: with the identity revoked, a resumed outer session is
 *     refused (its log says the refused session was resumed), and nothing reaches the target.
 * A resumed session past its certificate's notAfter is refused too: test/proxy/expiry.test.ts (injected clock).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertByteExact, type ConnectHandle, startDeployment, waitFor } from './deploy.js';

const FEED = ['--revocation-poll', '1s'];
const KiB = 1024;

const outerResumed = (c: ConnectHandle) =>
  c
    .events()
    .filter((e) => e['event'] === 'opened')
    .map((e) => e['outerResumed']);

test('the outer session is resumed for the next stream, and a resumed session is refused once revoked', async (t) => {
  const d = await startDeployment({ proxies: 1, gateways: 1, proxyArgs: FEED, gatewayArgs: FEED });
  t.after(() => d.close());
  const proxy = d.proxies[0]!;
  try {
    const id = await d.identity('resumer', { targets: [d.target.address] });
    const c = await d.connect({ identity: id, args: ['--warm-relay', '0'] });
    assertByteExact(await d.transfer(c, 64 * KiB), 'the first stream, a full outer handshake');
    assertByteExact(await d.transfer(c, 64 * KiB), 'the second stream');
    assertByteExact(await d.transfer(c, 64 * KiB), 'the third stream');
    assert.deepEqual(outerResumed(c), [false, true, true], 'the next streams resumed the outer session');

    await d.revoke('identity', 'resumer');
    await waitFor(
      async () => ((await proxy.metric('infisical_proxy_revocations_total', { kind: 'identity' })) ?? 0) > 0,
      {
        timeoutMs: 8000,
        what: 'the proxy to learn of the revocation',
      },
    );
    const refused = await d.transfer(c, 64 * KiB, { timeoutMs: 20_000 });
    assert.equal(refused.ok, false, 'a revoked identity carries nothing');
    assert.equal(refused.targetBytes, 0, 'not a byte reached the target');
    const line = await waitFor(
      () => proxy.logLines().find((l) => l['listener'] === 'tls' && /REVOKED/.test(String(l['code']))),
      { what: "the proxy's refusal in its log", timeoutMs: 10_000 },
    );
    assert.equal(line['resumed'], true, `the refused outer session was a resumed one: ${JSON.stringify(line)}`);
  } catch (err) {
    process.stderr.write(`\n${d.tails()}\n`);
    throw err;
  }
});
