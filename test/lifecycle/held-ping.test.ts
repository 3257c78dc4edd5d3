/**
 * The held inner session in ping mode (`ping+go`, lib/protocol/relay.ts step 5) and the gateway's switch for held
 * sessions (`hold_inner_sessions`), through real processes: CA, proxy and gateway started through their CLIs,
 * the gateway from a config file; ping streams from the client library (GatewayConnector, as bench/setup.ts and
 * `infisical-connect` use it), tcp streams through `infisical-connect tcp`; every stream checksummed (SHA-256).
 *   - the config file says `hold_inner_sessions = false`: the gateway offers no `+go` ALPN, so nothing is held, in
 *     tcp or ping mode, and streams still work (the relay opened ahead carries them, the inner handshake on the
 *     stream's path); its effective config says false;
 *   - the file changed to true and SIGHUP: the next stream of each grant negotiates the held variant, the one
 *     after runs on an inner session held ahead (ping: the probe goes with GO), byte-exact.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { test } from 'node:test';
import { CaGrantSource } from '../../lib/client/ca-source.js';
import { GatewayConnector } from '../../lib/client/connector.js';
import type { RelayedStream } from '../../lib/client/dial.js';
import { CaClient } from '../../lib/protocol/ca-client.js';
import { assertByteExact, type ConnectHandle, type Deployment, startDeployment, waitFor } from './deploy.js';

const PING_BYTES = 48 * 1024; // below the gateway's ping echo bound (64 KiB)
const PROBE_WITH_GO = 1024;

const opened = (c: ConnectHandle, key: string) =>
  c
    .events()
    .filter((e) => e['event'] === 'opened')
    .map((e) => e[key]);

function pingConnector(d: Deployment): GatewayConnector {
  const source = new CaGrantSource({
    ca: new CaClient({ url: d.ca.url, fingerprint: d.ca.fingerprint }),
    clientId: d.app.clientId,
    clientSecret: readFileSync(d.app.secretFile, 'utf8').trim(),
  });
  // Held up to 8 s, as `--warm-relay 8`: the next relay waits for the next stream in this test.
  return new GatewayConnector({ source, orgId: d.org, gatewayId: d.gateways[0]!.gatewayId, warmRelayMs: 8000 });
}

/** One ping stream: PROBE_WITH_GO bytes as its first bytes (with GO when held), the rest after; all echoed. */
async function pingStream(connector: GatewayConnector, d: Deployment): Promise<RelayedStream> {
  const data = randomBytes(PING_BYTES);
  const stream = await connector.open({ host: d.target.host, port: d.target.port }, 'ping', {
    firstBytes: () => data.subarray(0, PROBE_WITH_GO),
  });
  const { socket } = stream;
  const echoed = await new Promise<Buffer>((resolve, reject) => {
    const chunks: Buffer[] = [];
    let n = 0;
    socket.on('data', (c: Buffer) => {
      chunks.push(c);
      n += c.length;
      if (n >= PING_BYTES) resolve(Buffer.concat(chunks));
    });
    socket.once('error', reject);
    socket.once('close', () => reject(new Error(`ping stream closed after ${n} of ${PING_BYTES} bytes`)));
    socket.write(data.subarray(stream.sentFirst));
  });
  connector.answered();
  socket.destroy();
  const sha = (b: Buffer) => createHash('sha256').update(b).digest('hex');
  assert.equal(echoed.length, PING_BYTES);
  assert.equal(sha(echoed), sha(data), 'ping echo byte-exact (SHA-256)');
  return stream;
}

const HOLD = 'infisical_gateway_live_setting';

test('hold_inner_sessions off: nothing held, tcp and ping streams work; turned on by SIGHUP: ping (and tcp) streams run on held inner sessions', async (t) => {
  const dir = mkdtempSync(join(tmpdir(), 'held-ping-'));
  const conf = join(dir, 'gateway.conf');
  writeFileSync(conf, 'hold_inner_sessions = false\n');
  const d = await startDeployment({ proxies: 1, gateways: 1, gatewayArgs: ['--config', conf] });
  const connector = pingConnector(d);
  t.after(async () => {
    connector.close();
    await d.close();
    rmSync(dir, { recursive: true, force: true });
  });
  const gw = d.gateways[0]!;
  try {
    assert.equal(await gw.metric(HOLD, { key: 'hold_inner_sessions', value: 'false' }), 1, 'effective config: off');

    // Off: streams work, on the relay opened ahead, but no inner session is held.
    const c = await d.connect({ args: ['--warm-relay', '8'] });
    assertByteExact(await d.transfer(c, 256 * 1024), 'tcp, first stream');
    assertByteExact(await d.transfer(c, 256 * 1024), 'tcp, second stream');
    assert.deepEqual(opened(c, 'warm'), [false, true], 'the second tcp stream ran on the relay opened ahead');
    assert.deepEqual(opened(c, 'held'), [false, false], 'no tcp inner session held');
    const offPing = [await pingStream(connector, d), await pingStream(connector, d), await pingStream(connector, d)];
    assert.deepEqual(
      offPing.map((s) => s.warm ?? false),
      [false, true, true],
      'ping streams ran on relays opened ahead',
    );
    assert.deepEqual(
      offPing.map((s) => s.held ?? false),
      [false, false, false],
      'no ping inner session held',
    );
    assert.ok(
      offPing.every((s) => s.sentFirst === PROBE_WITH_GO),
      'the probe went with the handshake',
    );

    // On, by SIGHUP with the file changed: the gateway offers the held variants to new sessions.
    writeFileSync(conf, 'hold_inner_sessions = true\n');
    gw.hup();
    await waitFor(async () => (await gw.metric(HOLD, { key: 'hold_inner_sessions', value: 'true' })) === 1, {
      timeoutMs: 30_000,
      what: 'the gateway to reload hold_inner_sessions = true',
    });
    // A relay opened ahead before the reload carries the old offer (the gateway set up its inner session when the
    // channel opened), and it is not held. The first stream whose inner handshake meets the new offer negotiates
    // the held variant, so the relays opened after it hold their inner sessions: by the third stream at the latest.
    const heldFromThird = (flags: unknown[], what: string) => {
      assert.equal(flags[0], false, `${what}: the first stream after the switch was not held`);
      assert.equal(flags[2], true, `${what}: the third stream ran on a held inner session`);
    };
    const onPing = [await pingStream(connector, d), await pingStream(connector, d), await pingStream(connector, d)];
    heldFromThird(
      onPing.map((s) => s.held ?? false),
      'ping+go',
    );
    assert.ok(
      onPing.every((s) => s.sentFirst === PROBE_WITH_GO),
      'the probe went with GO on a held session, with the handshake otherwise',
    );
    for (let i = 0; i < 3; i++) assertByteExact(await d.transfer(c, 256 * 1024), `tcp after the switch, stream ${i}`);
    heldFromThird(opened(c, 'held').slice(2), 'tcp+go');
  } catch (err) {
    process.stderr.write(`\n${d.tails()}\n`);
    throw err;
  }
});
