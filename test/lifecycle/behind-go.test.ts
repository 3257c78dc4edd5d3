/**
 * On a held inner session (`tcp+go`, lib/client/dial.ts holdInner) the stream starts at the accept, before the
 * local client has written anything; the bytes it writes while the gateway's status line is awaited follow GO
 * into the inner session as they come (dial.ts `moreBytes`, forward.ts), instead of a round trip later. Through
 * real processes (CA, proxy, gateway, `infisical-connect tcp`), checksummed:
 *   - a client-first protocol through held sessions: byte-exact both ways, and the `opened` events of the held
 *     streams count the bytes sent before the line (`sentFirst`);
 *   - the grant revoked while a session is held: the gateway refuses it at GO (the bytes behind GO dropped with
 *     the refusal), and the stream goes through on a new grant, sending them all again: byte-exact, one target
 *     connection;
 *   - a client that sends its request and its FIN at once, on a held session: the whole reply comes back, the
 *     target read the whole request, then its end.
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import { assertByteExact, type ConnectHandle, type GatewayHandle, startDeployment, waitFor } from './deploy.js';
import { halfCloseExchange, startReplyTarget } from './transfer.js';

const KiB = 1024;
const FEED = ['--revocation-poll', '1s'];
const HELD = 'infisical_gateway_sessions_held';

const opened = (c: ConnectHandle) => c.events().filter((e) => e['event'] === 'opened');
const heldIs = (gw: GatewayHandle, n: number, what: string) =>
  waitFor(async () => (await gw.metric(HELD)) === n, { timeoutMs: 10_000, what });

test('bytes written while a held session awaits the status line follow GO: byte-exact, sent again on a new grant, half-close whole', async (t) => {
  const reply = await startReplyTarget(256 * KiB);
  t.after(() => reply.close());
  const d = await startDeployment({
    proxies: 1,
    gateways: 1,
    allowPorts: [reply.port],
    policyTargets: [reply.address],
    proxyArgs: FEED,
    gatewayArgs: FEED,
  });
  t.after(() => d.close());
  const gw = d.gateways[0]!;
  try {
    // The echo target: the first stream dialled in full (tcp+go learnt), then streams on held sessions.
    const c = await d.connect({ args: ['--warm-relay', '8'] });
    assertByteExact(await d.transfer(c, 256 * KiB), 'the first stream, dialled in full');
    for (let i = 0; i < 4; i++) {
      await heldIs(gw, 1, 'a held session to wait at the gateway');
      assertByteExact(await d.transfer(c, 256 * KiB), `held stream ${i + 1}`);
    }
    const held = opened(c).filter((e) => e['held'] === true);
    assert.equal(held.length, 4, `every stream after the first ran on a held session: ${JSON.stringify(opened(c))}`);
    const sent = held.map((e) => Number(e['sentFirst']));
    // The client writes at its connect; the line needs the gateway's target dial: its bytes are there before it.
    assert.ok(
      sent.some((n) => n > 0),
      `the held streams sent their bytes behind GO, before the status line: sentFirst ${JSON.stringify(sent)}`,
    );
    assert.ok(
      sent.every((n) => n <= 64 * KiB),
      `at most 64 KiB before the line: ${JSON.stringify(sent)}`,
    );

    // The grant revoked while a session is held: refused at GO after bytes went behind it, sent again on a new grant.
    await heldIs(gw, 1, 'a held session to wait at the gateway');
    const grantId = String(c.events().find((e) => e['event'] === 'grant')?.['grantId']);
    const revokedAt = Date.now();
    await d.revoke('grant', grantId);
    await waitFor(
      async () => ((await gw.metric('infisical_gateway_feed_last_success_timestamp_seconds')) ?? 0) * 1000 > revokedAt,
      { timeoutMs: 8000, what: 'the gateway to read the feed after the revocation' },
    );
    await new Promise((r) => setTimeout(r, 300));
    const connectionsBefore = d.target.connections.length;
    const again = await d.transfer(c, 256 * KiB);
    assertByteExact(again, 'the stream refused at GO on the revoked grant, then dialled on a new one');
    const dropped = c.events().filter((e) => e['event'] === 'grant-dropped');
    assert.equal(dropped.length, 1, JSON.stringify(dropped));
    assert.equal(dropped[0]!['code'], 'E_CERT_REVOKED');
    assert.equal(dropped[0]!['hop'], 'gateway', 'refused by the gateway at GO');
    const last = opened(c).at(-1);
    assert.equal(last?.['held'], false, 'the new grant was dialled in full');
    assert.ok(Number(last?.['sentFirst']) > 0, `its bytes sent again before the line: ${JSON.stringify(last)}`);
    assert.equal(d.target.connections.length, connectionsBefore + 1, 'one target connection for the two dials');
    assert.equal(again.targetBytes, 256 * KiB, 'every byte once at the target');

    // Request and FIN at once on a held session: the end stays behind the bytes; the whole reply comes back.
    await c.stop();
    await heldIs(gw, 0, 'the first connect to end its held session');
    const rc = await d.connect({ target: reply.address, args: ['--warm-relay', '8'] });
    for (let i = 0; i < 3; i++) {
      if (i > 0) await heldIs(gw, 1, 'a held session for the request-reply connect');
      const x = await halfCloseExchange({ port: rc.port, requestBytes: 2 * KiB });
      assert.equal(x.error, undefined, x.error);
      assert.equal(x.replySha256, reply.replySha256, `exchange ${i}: the whole reply came back`);
      assert.ok(x.endedCleanly, `exchange ${i}: ended with a FIN after the reply`);
      assert.ok(
        reply.exchanges.some((e) => e.requestSha256 === x.requestSha256 && e.replied),
        `exchange ${i}: the target read the whole request, once, then its end`,
      );
    }
    const rcOpened = opened(rc);
    assert.deepEqual(
      rcOpened.map((e) => e['held']),
      [false, true, true],
      'the second and third exchanges on held sessions',
    );
    assert.ok(
      rcOpened.every((e) => Number(e['sentFirst']) <= 2 * KiB),
      `never more than the request before the line: ${JSON.stringify(rcOpened)}`,
    );
  } catch (err) {
    process.stderr.write(`\n${d.tails()}\n`);
    throw err;
  }
});
