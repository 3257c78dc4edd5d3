/**
 * A connection's first bytes go with the inner handshake (lib/client/dial.ts `firstBytes`, lib/client/forward.ts),
 * before the gateway's status line, through real processes (CA, proxy, gateway, `infisical-connect tcp`):
 *   - they reach the target once, in order, before the rest, byte-exact (SHA-256 both ways), also when the
 *     client sent its FIN with them (request then end of write: the end follows them);
 *   - every refusal still reaches the client whole: a target that refuses the connection is E_TARGET_UNREACHABLE
 *     at hop gateway, and the local connection closes with nothing echoed and nothing delivered;
 *   - a stream refused on a stale grant after its first bytes went is dialled again on a fresh grant and sends
 *     them again: the target sees them exactly once, on the stream it accepted.
 * Each client writes its bytes at once after its connect, long before the first stream's grant and handshakes
 * are done, so the first stream of each connect carries them (its `opened` event says how many).
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { test } from 'node:test';
import { assertByteExact, type ConnectHandle, startDeployment, waitFor } from './deploy.js';
import { halfCloseExchange, startReplyTarget } from './transfer.js';

const KiB = 1024;
const FEED = ['--revocation-poll', '1s'];

const opened = (c: ConnectHandle) => c.events().filter((e) => e['event'] === 'opened');

/** A port with nothing listening on it (bound, then closed). */
async function closedPort(): Promise<number> {
  const s = net.createServer();
  await new Promise<void>((r) => s.listen(0, '127.0.0.1', r));
  const { port } = s.address() as net.AddressInfo;
  await new Promise<void>((r) => s.close(() => r()));
  return port;
}

test("a connection's first bytes go with the inner handshake: byte-exact, refusals whole, sent again on a fresh grant", async (t) => {
  const reply = await startReplyTarget(256 * KiB);
  t.after(() => reply.close());
  const dead = await closedPort();
  const d = await startDeployment({
    proxies: 1,
    gateways: 1,
    allowPorts: [reply.port, dead],
    policyTargets: [reply.address, `127.0.0.1:${dead}`],
    proxyArgs: FEED,
    gatewayArgs: FEED,
  });
  try {
    // Echo target: the first stream (dialled in full) and one on the relay opened ahead.
    const c = await d.connect({ args: ['--warm-relay', '8'] });
    assertByteExact(await d.transfer(c, 256 * KiB), 'the first stream');
    assertByteExact(await d.transfer(c, 256 * KiB), 'the second stream, on the relay opened ahead');
    const [first] = opened(c);
    assert.ok(
      Number(first?.['sentFirst']) > 0,
      `the first stream sent bytes with its handshake: ${JSON.stringify(first)}`,
    );

    // Request and FIN at once: the end of write follows the bytes that went with the handshake.
    const rc = await d.connect({ target: reply.address });
    const x = await halfCloseExchange({ port: rc.port, requestBytes: 2 * KiB });
    assert.equal(x.error, undefined, x.error);
    assert.equal(x.replySha256, reply.replySha256, 'the whole reply came back');
    assert.ok(x.endedCleanly, 'ended with a FIN after the reply');
    assert.ok(
      reply.exchanges.some((e) => e.requestSha256 === x.requestSha256 && e.replied),
      'the target read the whole request, once, then its end',
    );
    assert.equal(Number(opened(rc)[0]?.['sentFirst']), 2 * KiB, 'request sent with the handshake');

    // A target that refuses the connection: the gateway's refusal reaches the client, nothing is echoed.
    const dc = await d.connect({ target: `127.0.0.1:${dead}` });
    const refused = await d.transfer(dc, 4 * KiB, { timeoutMs: 15_000 });
    assert.equal(refused.ok, false);
    assert.equal(refused.echoedBytes, 0, 'nothing came back');
    const failed = await waitFor(() => dc.events().find((e) => e['event'] === 'error'), {
      what: 'the refusal in the connect output',
    });
    assert.equal(failed['code'], 'E_TARGET_UNREACHABLE', JSON.stringify(failed));
    assert.equal(failed['hop'], 'gateway');

    // The grant revoked while a relay waits: the gateway refuses the stream after its first bytes went (the
    // resumed session is judged at admission), and the stream goes through on a fresh grant, sending them again.
    // Its inner session held (tcp+go learnt on the first stream): a held session, not a pending channel.
    await waitFor(async () => (await d.gateways[0]!.metric('infisical_gateway_sessions_held')) === 1, {
      what: 'the relay opened ahead to wait at the gateway',
    });
    const grantId = String(c.events().find((e) => e['event'] === 'grant')?.['grantId']);
    const revokedAt = Date.now();
    await d.revoke('grant', grantId);
    await waitFor(
      async () =>
        ((await d.gateways[0]!.metric('infisical_gateway_feed_last_success_timestamp_seconds')) ?? 0) * 1000 >
        revokedAt,
      { timeoutMs: 8000, what: 'the gateway to read the feed after the revocation' },
    );
    await new Promise((r) => setTimeout(r, 300));
    const connectionsBefore = d.target.connections.length;
    const again = await d.transfer(c, 256 * KiB);
    assertByteExact(again, 'the stream refused on the revoked grant, then dialled on a fresh one');
    const dropped = c.events().filter((e) => e['event'] === 'grant-dropped');
    assert.equal(dropped.length, 1, JSON.stringify(dropped));
    assert.equal(dropped[0]!['code'], 'E_CERT_REVOKED');
    assert.equal(dropped[0]!['hop'], 'gateway');
    const last = opened(c).at(-1);
    assert.ok(Number(last?.['sentFirst']) > 0, `sent again with the new handshake: ${JSON.stringify(last)}`);
    // Exactly once at the target: the refused stream never reached it (admission comes before the target dial).
    assert.equal(d.target.connections.length, connectionsBefore + 1, 'one target connection for the two dials');
    assert.equal(again.targetBytes, 256 * KiB);
  } catch (err) {
    process.stderr.write(`\n${d.tails()}\n`);
    throw err;
  } finally {
    await d.close();
  }
});
