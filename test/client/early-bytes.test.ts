/**
 * The early bytes' cap (lib/client/inner-session.ts EARLY_BYTES_MAX) through LocalForwarder in tcp mode, as
 * `infisical-connect tcp` runs it, with a gateway whose status line is late (test/client/fixtures.ts startGateway
 * `lineAfter`: a slow target dial, the line written once the cap came): a local client that sends far more than
 * the cap, in pieces, before the line. Exactly the cap goes before the line (the local socket reads that far
 * ahead: forward.ts LOCAL_READ_AHEAD), every byte reaches the gateway once, in order (SHA-256), and comes back;
 * a stream refused after its early bytes went, and dialled again on a fresh grant, sends all of them again.
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import net from 'node:net';
import { after, test } from 'node:test';
import { GatewayConnector, type Progress } from '../../lib/client/connector.js';
import { type ForwardEvent, LocalForwarder } from '../../lib/client/forward.js';
import { EARLY_BYTES_MAX } from '../../lib/client/inner-session.js';
import type { AccessGrant } from '../../lib/pki/grant.js';
import type { RelayStatus } from '../../lib/protocol/relay.js';
import { World } from '../helpers/world.js';
import { type EarlyRead, FakeGrantSource, type Listening, startGateway, startRelay } from './fixtures.js';

const world = new World();
const ORG = 'org-a';
const GW = 'gw-1';
const KiB = 1024;
/** What the local client sends: twice the cap. */
const TOTAL = 2 * EARLY_BYTES_MAX;
/**
 * Its writes, PIECE_MS apart: a local socket that reads as they come gets them one by one (one read bringing the
 * cap at once would hide a read-ahead that stops short of it).
 */
const PIECE = 4 * KiB;
const PIECE_MS = 10;

const toClose: { close(): Promise<void> }[] = [];
after(async () => {
  for (const c of toClose.reverse()) await c.close();
});

async function deployment(respond: (grant: AccessGrant) => RelayStatus) {
  const early: EarlyRead[] = [];
  // The line waits for the cap, 8 s at most (within the client's 10 s step bound): a client that sends less
  // before it shows as such, not as a hang.
  const gateway = await startGateway({
    world,
    orgId: ORG,
    gatewayId: GW,
    respond,
    lineAfter: { bytes: EARLY_BYTES_MAX, ms: 8000 },
    early,
  });
  const relay = await startRelay({
    world,
    scope: 'instance',
    orgId: ORG,
    proxyId: 'p1',
    gatewayPort: () => gateway.port,
  });
  toClose.push(gateway as Listening, relay);
  const progress: Progress[] = [];
  const connector = new GatewayConnector({
    source: new FakeGrantSource({ world, proxies: () => [relay.endpoint] }),
    orgId: ORG,
    gatewayId: GW,
    now: world.now,
    nowMs: world.nowMs,
    warmRelayMs: 0,
    onProgress: (p) => progress.push(p),
  });
  const events: ForwardEvent[] = [];
  const forwarder = new LocalForwarder({
    connector,
    target: { host: '127.0.0.1', port: 5432 },
    mode: 'tcp',
    host: '127.0.0.1',
    port: 0,
    onEvent: (e) => events.push(e),
  });
  const { port } = await forwarder.listen();
  toClose.push(forwarder);
  return { port, early, events, progress };
}

const sha256 = (chunks: Buffer[]): string => createHash('sha256').update(Buffer.concat(chunks)).digest('hex');

/** Sends `data` in PIECE-sized writes, PIECE_MS apart, and reads back as many bytes (the gateway echoes). */
async function exchange(port: number, data: Buffer): Promise<Buffer> {
  const socket = net.connect(port, '127.0.0.1');
  const back: Buffer[] = [];
  let got = 0;
  const echoed = new Promise<void>((resolve, reject) => {
    socket.on('data', (d: Buffer) => {
      back.push(d);
      got += d.length;
      if (got >= data.length) resolve();
    });
    socket.on('error', reject);
    socket.on('close', () => (got >= data.length ? resolve() : reject(new Error(`closed after ${got} bytes back`))));
  });
  for (let at = 0; at < data.length; at += PIECE) {
    socket.write(data.subarray(at, at + PIECE));
    await new Promise((r) => setTimeout(r, PIECE_MS));
  }
  await echoed;
  socket.end();
  return Buffer.concat(back);
}

function opened(events: ForwardEvent[]): Extract<ForwardEvent, { type: 'opened' }>[] {
  return events.filter((e): e is Extract<ForwardEvent, { type: 'opened' }> => e.type === 'opened');
}

test('more than the cap before a late status line: exactly the cap goes before it, every byte once, in order', async () => {
  const { port, early, events } = await deployment(() => ({ ok: true }));
  const data = randomBytes(TOTAL);
  const back = await exchange(port, data);
  const [stream] = opened(events);
  assert.equal(stream?.sentFirst, EARLY_BYTES_MAX, `bytes sent before the line: ${stream?.sentFirst}`);
  assert.equal(early.length, 1);
  assert.equal(early[0]!.beforeLine, EARLY_BYTES_MAX, 'the gateway read exactly the cap before its line');
  assert.equal(Buffer.concat(early[0]!.received).length, TOTAL, 'every byte reached the gateway once');
  assert.equal(sha256(early[0]!.received), sha256([data]), 'in order, unaltered');
  assert.equal(back.length, TOTAL);
  assert.equal(sha256([back]), sha256([data]), 'and came back whole');
});

test('a stream refused after its early bytes went, dialled again on a fresh grant, sends all of them again, once', async () => {
  const { port, early, events, progress } = await deployment((grant) =>
    grant.grantId === 'grant-1' ? { ok: false, code: 'E_CERT_REVOKED', message: 'grant revoked' } : { ok: true },
  );
  const data = randomBytes(TOTAL);
  const back = await exchange(port, data);
  assert.deepEqual(
    early.map((r) => [r.grantId, r.beforeLine]),
    [
      ['grant-1', EARLY_BYTES_MAX],
      ['grant-2', EARLY_BYTES_MAX],
    ],
    'the cap went before the refusal, and again on the fresh grant',
  );
  assert.equal(
    progress.filter((p) => p.step === 'grant-dropped').length,
    1,
    'the refused grant was dropped, a fresh one dialled',
  );
  const streams = opened(events);
  assert.equal(streams.length, 1);
  assert.equal(streams[0]!.sentFirst, EARLY_BYTES_MAX);
  const second = early[1]!.received;
  assert.equal(Buffer.concat(second).length, TOTAL, 'every byte once on the stream that opened');
  assert.equal(sha256(second), sha256([data]), 'in order, from the first byte');
  assert.equal(sha256([back]), sha256([data]));
});
