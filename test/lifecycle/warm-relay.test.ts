/**
 * The relay `infisical-connect` opens ahead of need (lib/client/warm.ts, `--warm-relay`), through real processes:
 *   - after a stream opened, the next relay waits at the gateway (a pending channel, or, its inner session held,
 *     a held session), and the next stream runs on it, byte-exact;
 *   - the second stream of a grant resumes the grant's inner TLS session (lib/client/grant-tls.ts);
 *   - neither decides anything ahead: with the grant revoked while a relay waits, the gateway refuses the
 *     resumed inner session (E_CERT_REVOKED, hop gateway), and the stream goes through, byte-exact, on a new
 *     grant, in a full handshake;
 *   - from the second relay of a grant on, its inner session is held ahead too (`tcp+go`, the gateway having
 *     negotiated it on the grant's first stream): the stream sends only GO and its first bytes, and the gateway
 *     judges the grant again at GO (the revocation above is refused then, before any target dial);
 *   - unused, it is ended after its hold, quietly: the channel goes, the gateway records no refusal, and the
 *     target never saw a connection for it.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertByteExact, type ConnectHandle, type GatewayHandle, startDeployment, waitFor } from './deploy.js';

const FEED = ['--revocation-poll', '1s'];
const PENDING = 'infisical_gateway_channels_pending';
const HELD = 'infisical_gateway_sessions_held';
/** Relays waiting at the gateway: channels in their handshake, and sessions held for their GO. */
const waiting = async (gw: GatewayHandle) => ((await gw.metric(PENDING)) ?? 0) + ((await gw.metric(HELD)) ?? 0);

const grantIds = (c: ConnectHandle) =>
  c
    .events()
    .filter((e) => e['event'] === 'grant')
    .map((e) => String(e['grantId']));

const warmFlags = (c: ConnectHandle) =>
  c
    .events()
    .filter((e) => e['event'] === 'opened')
    .map((e) => e['warm']);

const heldFlags = (c: ConnectHandle) =>
  c
    .events()
    .filter((e) => e['event'] === 'opened')
    .map((e) => e['held']);

const resumedFlags = (c: ConnectHandle) =>
  c
    .events()
    .filter((e) => e['event'] === 'opened')
    .map((e) => e['resumed']);

async function refusals(gw: GatewayHandle): Promise<number> {
  const text = await gw.metrics();
  let n = 0;
  for (const line of text.split('\n')) {
    if (line.startsWith('infisical_gateway_refusals_total{')) n += Number(line.split(' ').at(-1));
  }
  return n;
}

const pendingIs = (gw: GatewayHandle, n: number, what: string) =>
  waitFor(async () => (await waiting(gw)) === n, { timeoutMs: 10_000, what });

test('a relay opened ahead and a resumed inner session carry the next stream, are refused once the grant is revoked; an unused relay ends quietly', async (t) => {
  const d = await startDeployment({ proxies: 1, gateways: 1, proxyArgs: FEED, gatewayArgs: FEED });
  t.after(() => d.close());
  const gw = d.gateways[0]!;
  try {
    // Held up to 8 s (the most --warm-relay takes): long enough for the revocation to reach the gateway while it waits.
    const c = await d.connect({ args: ['--warm-relay', '8'] });
    assertByteExact(await d.transfer(c, 256 * 1024), 'the first stream, dialled in full');
    await pendingIs(gw, 1, 'the relay opened ahead to wait at the gateway');
    assertByteExact(await d.transfer(c, 256 * 1024), 'the second stream');
    assert.deepEqual(warmFlags(c), [false, true], 'the second stream ran on the relay opened ahead');
    assert.deepEqual(resumedFlags(c), [false, true], "the second stream resumed the grant's inner session");
    assert.deepEqual(heldFlags(c), [false, true], 'its inner session was held ahead with the relay (tcp+go)');
    await pendingIs(gw, 1, 'the next relay to wait at the gateway');

    // Its grant revoked while it waits: the gateway judges the grant when the relay is used, not before.
    const [first] = grantIds(c);
    assert.ok(first);
    const refusedBefore = await refusals(gw);
    await d.revoke('grant', first);
    const revokedAt = Date.now();
    await waitFor(
      async () => ((await gw.metric('infisical_gateway_feed_last_success_timestamp_seconds')) ?? 0) * 1000 > revokedAt,
      {
        timeoutMs: 8000,
        what: 'the gateway to read the feed after the revocation',
      },
    );
    await new Promise((r) => setTimeout(r, 300));
    assert.equal(await gw.metric(HELD), 1, 'the relay for the revoked grant is still waiting, held');
    assertByteExact(await d.transfer(c, 256 * 1024), 'the stream after the revocation, on a new grant');
    const dropped = c.events().filter((e) => e['event'] === 'grant-dropped');
    assert.equal(dropped.length, 1, JSON.stringify(dropped));
    assert.equal(dropped[0]!['grantId'], first);
    assert.equal(dropped[0]!['code'], 'E_CERT_REVOKED');
    assert.equal(dropped[0]!['hop'], 'gateway', 'refused by the gateway at the inner handshake');
    assert.equal(grantIds(c).length, 2, 'one new grant');
    assert.equal(await refusals(gw), refusedBefore + 1, 'one refusal: the relay opened ahead on the revoked grant');
    assert.deepEqual(warmFlags(c), [false, true, false], 'the stream on the new grant was dialled in full');
    assert.deepEqual(resumedFlags(c), [false, true, false], 'a new grant starts without a session');
    assert.deepEqual(heldFlags(c), [false, true, false]);
    await pendingIs(gw, 1, 'the next relay, for the new grant, to wait at the gateway');
    assertByteExact(await d.transfer(c, 256 * 1024), 'the next stream on the new grant');
    assert.deepEqual(heldFlags(c), [false, true, false, true], "the new grant's second stream ran on a held session");
    await pendingIs(gw, 1, 'the next held session to wait at the gateway');

    // Unused: ended after its hold (1 s here), without a refusal at the gateway, and not replaced.
    const quick = await d.connect({ args: ['--warm-relay', '1'] });
    assertByteExact(await d.transfer(quick, 64 * 1024), 'a stream through a second connect');
    const refusedNow = await refusals(gw);
    const targetConnections = d.target.connections.length;
    await c.stop();
    await pendingIs(gw, 0, 'the unused relays to be ended');
    await new Promise((r) => setTimeout(r, 1500));
    assert.equal(await waiting(gw), 0, 'an idle connect holds nothing open');
    assert.equal(await refusals(gw), refusedNow, 'an ended relay is no refusal');
    assert.equal(d.target.connections.length, targetConnections, 'a held session never used made no target connection');
    assertByteExact(await d.transfer(quick, 64 * 1024), 'the next stream, dialled in full');
    assert.deepEqual(warmFlags(quick), [false, false]);
  } catch (err) {
    process.stderr.write(`\n${d.tails()}\n`);
    throw err;
  }
});
