/**
 * Issue 11 item 2: a revocation by certificate serial reaches the gateway. The serial of a grant's inner
 * (end-to-end mTLS) client certificate, from the CA's record of what it signed, is revoked with
 * `infisical-ca revoke certificate SERIAL`: a live stream using it is cut at the gateway, a new stream with it is
 * refused there (E_CERT_REVOKED, by serial: the grant itself is not revoked), and connect, told so, fetches a new
 * grant, on which traffic is byte-exact again.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertByteExact, startDeployment } from './deploy.js';
import { grantSerials, liveStream } from './probes.js';

const FEED = ['--revocation-poll', '1s'];

test('a revoked certificate serial cuts the live stream at the gateway and refuses new ones', async (t) => {
  const d = await startDeployment({ proxies: 2, gateways: 1, proxyArgs: FEED, gatewayArgs: FEED });
  t.after(() => d.close());
  try {
    const gw = d.gateways[0]!;
    const c = await d.connect({ gateway: gw });
    assertByteExact(await d.transfer(c, 256 * 1024), 'before the revocation');
    const grant = c.events().find((e) => e['event'] === 'grant')?.['grantId'] as string;
    assert.ok(grant, 'a grant event');
    const serials = grantSerials(d.ca.stateDir, grant);
    const serial = serials['grant-inner'];
    assert.ok(serial, `the CA recorded the grant's inner certificate: ${JSON.stringify(serials)}`);
    t.diagnostic(`grant ${grant}: inner certificate serial ${serial}`);

    const live = await liveStream(c.port, d.target);
    const before = await live.exchange(128 * 1024);
    assert.ok(before.ok, `the live stream carries bytes exactly: ${before.error}`);

    const revoked = await d.revoke('certificate', serial);
    const revokedAt = Date.now();
    t.diagnostic(`revoked: ${JSON.stringify(revoked)}`);
    const cut = await Promise.race([
      live.whenClosed.then(() => true),
      new Promise<boolean>((r) => setTimeout(() => r(false), 15_000)),
    ]);
    assert.ok(cut, `the live stream is cut within 15 s\n${gw.tail()}`);
    t.diagnostic(`live stream cut ${Date.now() - revokedAt} ms after the revocation`);
    const ended = gw
      .logLines()
      .find((l) => l['event'] === 'gateway.stream' && l['grantId'] === grant && l['outcome'] === 'E_CERT_REVOKED');
    const revocation = gw
      .logLines()
      .find((l) => l['event'] === 'gateway.revocation' && l['kind'] === 'certificate' && l['subject'] === serial);
    assert.ok(revocation, `the gateway applied the certificate revocation:\n${gw.tail()}`);
    assert.equal(revocation['streamsEnded'], 1, 'and ended the one stream using it');
    assert.ok(ended, `the stream record says E_CERT_REVOKED:\n${gw.tail()}`);

    // A new stream: the gateway refuses the revoked certificate; connect drops the grant and gets a new one.
    assertByteExact(await d.transfer(c, 1024 * 1024), 'the next stream, on a new grant');
    const refused = gw
      .logLines()
      .find((l) => l['event'] === 'gateway.stream.refused' && l['code'] === 'E_CERT_REVOKED' && l['grantId'] === grant);
    const refusals = (await gw.metric('infisical_gateway_refusals_total', { code: 'E_CERT_REVOKED' })) ?? 0;
    assert.ok(refused || refusals >= 1, `the gateway refused a stream with E_CERT_REVOKED:\n${gw.tail()}`);
    const dropped = c.events().filter((e) => e['event'] === 'grant-dropped');
    assert.equal(dropped.length, 1, `one grant-dropped event: ${JSON.stringify(dropped)}`);
    assert.equal(dropped[0]!['grantId'], grant);
    assert.equal(dropped[0]!['code'], 'E_CERT_REVOKED');
    assert.equal(dropped[0]!['hop'], 'gateway');
    const grants = c.events().filter((e) => e['event'] === 'grant');
    assert.equal(grants.length, 2, 'one new grant');
    assert.notEqual(grants[1]!['grantId'], grant);
  } catch (err) {
    process.stderr.write(`\n${d.tails()}\n`);
    throw err;
  } finally {
    await d.close();
  }
});
