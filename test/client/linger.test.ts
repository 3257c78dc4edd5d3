/**
 * infisical-connect's local connection whose stream is done while the local client still sends lingers
 * (lib/protocol/splice.ts LINGER_MS: read and dropped, so that no reset drops the answer). It stays the
 * forwarder's: LocalForwarder.close() (the shutdown) destroys it at once, not LINGER_MS later. The stream comes
 * from a stand-in connector whose far side answers, ends and closes: no relay or gateway is needed for this.
 */
import assert from 'node:assert/strict';
import net from 'node:net';
import { Duplex } from 'node:stream';
import { test } from 'node:test';
import type { GatewayConnector } from '../../lib/client/connector.js';
import type { RelayedStream } from '../../lib/client/dial.js';
import { type ForwardEvent, LocalForwarder } from '../../lib/client/forward.js';
import { LINGER_MS } from '../../lib/protocol/splice.js';

/** The inner session's stand-in: answers the first bytes, ends its side, then closes (the target's refusal). */
class AnsweringSide extends Duplex {
  constructor() {
    super({ allowHalfOpen: true });
  }
  override _read(): void {}
  override _write(_chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    if (!this.readableEnded && this.readableLength === 0 && !this.answered) {
      this.answered = true;
      this.push('answer');
      this.push(null);
      setImmediate(() => this.destroy());
    }
    cb();
  }
  answered = false;
}

test("a lingering local connection is the forwarder's: close() destroys it at once", async (t) => {
  const connector = {
    open: async () =>
      ({ socket: new AnsweringSide(), sentFirst: 0, proxy: { proxyId: 'p1' } }) as unknown as RelayedStream,
    answered: () => undefined,
    refusedOn: () => undefined,
  } as unknown as GatewayConnector;
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
  const client = net.connect({ port, host: '127.0.0.1', allowHalfOpen: true });
  t.after(() => client.destroy());
  client.on('error', () => {});
  const got: Buffer[] = [];
  client.on('data', (d: Buffer) => got.push(d));
  const ended = new Promise<void>((r) => client.once('end', () => r()));
  const closed = new Promise<void>((r) => client.once('close', () => r()));
  client.write('request');
  await ended;
  assert.equal(Buffer.concat(got).toString(), 'answer');
  // Still sending, as a client whose request body is still coming: read and dropped.
  const beat = setInterval(() => client.write('late'), 20);
  t.after(() => clearInterval(beat));
  while (!events.some((e) => e.type === 'closed')) await new Promise((r) => setTimeout(r, 10));
  await new Promise((r) => setTimeout(r, 100));
  assert.equal(client.destroyed, false, 'the local connection lingers after its stream was done');
  const t0 = Date.now();
  await forwarder.close();
  await Promise.race([closed, new Promise((r) => setTimeout(r, LINGER_MS * 2).unref())]);
  const ms = Date.now() - t0;
  assert.ok(ms < 500, `the local client saw its connection close ${ms} ms after close() (LINGER_MS ${LINGER_MS})`);
});
