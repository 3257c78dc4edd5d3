/**
 * Half-close through every hop, in a whole installation in this process (installation.ts: CA, two proxies, a
 * gateway; LocalForwarder as `infisical-connect tcp` runs it): a client sends a request and shuts down its
 * write side, the target reads until EOF and only then replies. The client's FIN must travel as end-of-write
 * (local socket → inner TLS close_notify → outer TLS → proxy → SSH channel EOF → gateway → target FIN) while
 * the other direction stays open, so the whole reply arrives, checksummed, and the stream then closes. The
 * gateway's audit record counts each direction.
 */
import assert from 'node:assert/strict';
import { after, before, test } from 'node:test';
import { CaGrantSource } from '../../lib/client/ca-source.js';
import { GatewayConnector } from '../../lib/client/connector.js';
import { type ForwardEvent, LocalForwarder } from '../../lib/client/forward.js';
import { CaClient } from '../../lib/protocol/ca-client.js';
import { halfCloseExchange, type ReplyTarget, startReplyTarget } from '../lifecycle/transfer.js';
import { GATEWAY, type Installation, ORG, startInstallation } from './installation.js';

const KiB = 1024;
const MiB = 1024 * KiB;

let inst: Installation;
let target: ReplyTarget;
let forwarder: LocalForwarder;
let port: number;
const events: ForwardEvent[] = [];

before(async () => {
  target = await startReplyTarget(8 * MiB);
  inst = await startInstallation({ proxies: 2, policyTargets: [target.address], allowPorts: [target.port] });
  const ca = new CaClient({ url: inst.caUrl, fingerprint: inst.fingerprint });
  const connector = new GatewayConnector({
    source: new CaGrantSource({ ca, clientId: inst.clientId, clientSecret: inst.clientSecret }),
    orgId: ORG,
    gatewayId: GATEWAY,
  });
  forwarder = new LocalForwarder({
    connector,
    target: { host: target.host, port: target.port },
    mode: 'tcp',
    host: '127.0.0.1',
    port: 0,
    onEvent: (e) => events.push(e),
  });
  port = (await forwarder.listen()).port;
});

after(async () => {
  await forwarder?.close();
  await inst?.close();
  await target?.close();
});

async function waitRecords(n: number): Promise<void> {
  const deadline = Date.now() + 15_000;
  while (inst.records.length < n && Date.now() < deadline) await new Promise((r) => setTimeout(r, 20));
}

test('a client that shuts down its write side gets the whole reply, then the stream closes', async () => {
  const before = inst.records.length;
  const r = await halfCloseExchange({ port, requestBytes: 256 * KiB });
  assert.equal(r.error, undefined, `exchange failed: ${r.error}`);
  assert.equal(r.replyBytes, target.reply.length, 'every reply byte came back');
  assert.equal(r.replySha256, target.replySha256, 'the reply came back unaltered (sha256)');
  assert.ok(r.endedCleanly, 'the stream ended with a FIN after the reply');
  const x = target.exchanges.at(-1)!;
  assert.equal(x.requestBytes, 256 * KiB);
  assert.equal(x.requestSha256, r.requestSha256, 'the target read the whole request before the EOF');

  await waitRecords(before + 1);
  const rec = inst.records.at(-1)!;
  assert.equal(rec.outcome, 'ok', JSON.stringify(rec));
  assert.equal(rec.bytesIn, 256 * KiB, 'audit: bytes platform → target');
  assert.equal(rec.bytesOut, target.reply.length, 'audit: bytes target → platform');
});

test('a slow reader, several at once: every reply whole although each hop still holds bytes at the close', async () => {
  const before = inst.records.length;
  const results = await Promise.all(
    [1, 2, 3].map(() => halfCloseExchange({ port, requestBytes: 64 * KiB, slowReader: true })),
  );
  for (const r of results) {
    assert.equal(r.error, undefined, `exchange failed: ${r.error}`);
    assert.equal(r.replyBytes, target.reply.length);
    assert.equal(r.replySha256, target.replySha256);
    assert.ok(r.endedCleanly);
  }
  await waitRecords(before + 3);
  for (const rec of inst.records.slice(before)) {
    assert.equal(rec.outcome, 'ok', JSON.stringify(rec));
    assert.equal(rec.bytesIn, 64 * KiB);
    assert.equal(rec.bytesOut, target.reply.length);
  }
  const closed = events.filter((e) => e.type === 'closed');
  assert.ok(closed.length >= 4, 'the forwarder reported every stream closed');
});
