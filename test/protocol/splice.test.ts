/**
 * lib/protocol/splice.ts, the byte path of every hop: end-of-write passed on with the other direction still
 * flowing (half-close), the sides destroyed only once both directions ended AND were flushed, a side that
 * closes before its end cuts the other, and the upstream side's own way of ending its writes is used.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net, { type AddressInfo } from 'node:net';
import { Duplex } from 'node:stream';
import { test } from 'node:test';
import { splice } from '../../lib/protocol/splice.js';

/** One side of a splice: what is written into it is kept (each write completing after `delayMs`). */
class Side extends Duplex {
  readonly written: Buffer[] = [];
  constructor(readonly delayMs = 0) {
    super({ allowHalfOpen: true });
  }
  override _read(): void {}
  override _write(chunk: Buffer, _enc: BufferEncoding, cb: (err?: Error | null) => void): void {
    const keep = () => {
      this.written.push(chunk);
      cb();
    };
    if (this.delayMs > 0) setTimeout(keep, this.delayMs);
    else keep();
  }
  text(): string {
    return Buffer.concat(this.written).toString();
  }
}

const tick = () => new Promise((r) => setImmediate(r));

test('half-close: the client end-of-write reaches upstream, and the reply still flows back', async () => {
  const client = new Side();
  const target = new Side();
  const s = splice(client, target);
  client.push('request');
  client.push(null);
  await tick();
  assert.equal(target.text(), 'request');
  assert.equal(target.writableEnded, true, 'end-of-write passed on');
  assert.equal(client.destroyed, false, 'the reply direction is still open');
  target.push('reply');
  target.push(null);
  const { end } = await s.done;
  assert.equal(end, 'done');
  assert.equal(client.text(), 'reply');
  assert.deepEqual(s.bytes, { up: 7, down: 5 });
});

test('the sides are destroyed only once everything written into them has been flushed', async () => {
  const client = new Side(20); // a slow reader: each write completes 20 ms later
  const target = new Side();
  const s = splice(client, target);
  client.push(null);
  for (let i = 0; i < 5; i++) target.push(Buffer.alloc(4096, i));
  target.push(null);
  await tick();
  assert.equal(client.destroyed, false, 'not destroyed while reply bytes are still being written');
  await s.done;
  assert.equal(Buffer.concat(client.written).length, 5 * 4096, 'the whole reply was written before the close');
  assert.ok(client.destroyed && target.destroyed);
});

test('a side that closes before its end-of-write (a reset) cuts the other at once', async () => {
  const client = new Side();
  const target = new Side();
  const s = splice(client, target);
  target.destroy();
  const { end } = await s.done;
  assert.equal(end, 'closed');
  assert.ok(client.destroyed);
});

test("the upstream side's end-of-write is passed on its own way (an SSH channel EOF)", async () => {
  const client = new Side();
  const target = new Side();
  const seen: string[] = [];
  const s = splice(client, target, {
    endUpstream: (side, flushed) => {
      seen.push(side === target ? 'target' : 'other');
      flushed();
    },
  });
  client.push(null);
  await tick();
  assert.deepEqual(seen, ['target']);
  assert.equal(target.writableEnded, false, 'end() itself was not called');
  target.push(null);
  assert.equal((await s.done).end, 'done');
});

test('idle timeout and close(reason)', async () => {
  const awake = setTimeout(() => undefined, 5000); // the idle timer is unref'd
  const a = splice(new Side(), new Side(), { idleTimeoutMs: 30 });
  assert.deepEqual(await a.done, { end: 'idle', reason: 'idle timeout' });
  clearTimeout(awake);
  const b = splice(new Side(), new Side());
  b.close('revoked');
  assert.deepEqual(await b.done, { end: 'closed', reason: 'revoked' });
});

test('coalesce: the chunks of one I/O phase leave as one write, in order, before the end-of-write', async () => {
  const client = new Side();
  const target = new Side();
  const s = splice(client, target, { coalesce: ['up'] });
  for (let i = 0; i < 4; i++) client.push(Buffer.alloc(16 * 1024, i));
  await tick();
  await tick();
  assert.equal(target.written.length, 1, 'four 16 KiB chunks of one phase: one write');
  assert.deepEqual(target.written[0], Buffer.concat([0, 1, 2, 3].map((i) => Buffer.alloc(16 * 1024, i))));
  client.push('tail');
  client.push(null);
  await tick();
  assert.equal(Buffer.concat(target.written).subarray(-4).toString(), 'tail', 'gathered bytes precede the EOF');
  assert.equal(target.writableEnded, true);
  target.push(null);
  assert.equal((await s.done).end, 'done');
  assert.deepEqual(s.bytes, { up: 4 * 16 * 1024 + 4, down: 0 });
});

test('coalesce: a gather never grows past 256 KiB, and backpressure still pauses the source', async () => {
  const client = new Side();
  const target = new Side(5); // a slow writer
  const s = splice(client, target, { coalesce: ['up'] });
  for (let i = 0; i < 40; i++) client.push(Buffer.alloc(16 * 1024, i)); // 640 KiB in one phase
  await tick();
  assert.ok(
    target.written.every((w) => w.length <= 256 * 1024),
    'no single write over 256 KiB',
  );
  assert.ok(client.isPaused(), 'the source is paused while the destination is above its high-water mark');
  await new Promise((r) => setTimeout(r, 200));
  assert.equal(Buffer.concat(target.written).length, 640 * 1024, 'everything arrives once it drains');
  s.close('test over');
});

/** A TCP connection on loopback: the client's socket and the accepted one (`local`), closed after the test. */
async function loopback(
  t: { after: (fn: () => void) => void },
  clientOptions: { allowHalfOpen?: boolean } = {},
): Promise<{ client: net.Socket; local: net.Socket; server: net.Server }> {
  const server = net.createServer({ allowHalfOpen: true });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  const accepted = once(server, 'connection') as Promise<[net.Socket]>;
  const client = net.connect({ port, host: '127.0.0.1', ...clientOptions });
  t.after(() => {
    client.destroy();
    server.close();
  });
  const [local] = await accepted;
  return { client, local, server };
}

test('a side still sending when the splice is done is read and dropped until it ends: its peer gets the answer and an end, not a reset', {
  timeout: 20_000,
}, async (t) => {
  // The far side answers and closes while the client is still sending (an HTTP refusal while the request body
  // is still coming). Destroyed with bytes unread, the local socket would make its kernel answer with a reset,
  // and the client's kernel then drops what it had not read yet: the answer.
  const { client, local, server } = await loopback(t);
  const far = new Side();
  const s = splice(local, far, { linger: ['downstream'] });
  // The client sends 8 MiB (under LINGER_MAX_BYTES, far more than the sockets buffer) and reads its answer as it
  // comes: the local socket still has bytes coming when the splice is done.
  let sent = 0;
  const body = Buffer.alloc(64 * 1024, 0x61);
  const pump = () => {
    while (sent < 8 * 2 ** 20) {
      sent += body.length;
      if (!client.write(body)) return void client.once('drain', pump);
    }
  };
  pump();
  let error: Error | undefined;
  client.on('error', (err) => {
    error = err;
  });
  const got: Buffer[] = [];
  client.on('data', (d: Buffer) => got.push(d));
  // The far side answers, ends, and is gone.
  far.push('HTTP/1.1 403 Forbidden\r\ncontent-length: 0\r\nconnection: close\r\n\r\n');
  far.push(null);
  await tick();
  far.destroy();
  const { end } = await s.done;
  assert.equal(end, 'done');
  await once(client, 'close');
  server.close();
  assert.equal(error, undefined, `the client saw ${error?.message}`);
  assert.match(Buffer.concat(got).toString(), /^HTTP\/1\.1 403 Forbidden\r\n/);
});

test("a lingering side stays the caller's: close() after done destroys it at once, and `settled` follows its close", {
  timeout: 20_000,
}, async (t) => {
  const { client, local } = await loopback(t, { allowHalfOpen: true });
  client.on('error', () => {});
  const far = new Side();
  const s = splice(local, far, { linger: ['downstream'] });
  let settled = false;
  void s.settled.then(() => {
    settled = true;
  });
  client.write('request, its body still coming');
  client.resume();
  far.push('refused');
  far.push(null);
  await tick();
  far.destroy();
  assert.equal((await s.done).end, 'done');
  await new Promise((r) => setTimeout(r, 50));
  assert.equal(local.destroyed, false, 'the local side lingers: the client has not ended');
  assert.equal(settled, false, 'not settled while a side lingers');
  s.close('revoked');
  assert.equal(local.destroyed, true, 'close() after done destroys the lingering side at once');
  await s.settled;
});

test('settled resolves with done when no side lingers', async () => {
  const client = new Side();
  const target = new Side();
  const s = splice(client, target, { linger: ['downstream'] });
  client.push(null);
  target.push(null);
  assert.equal((await s.done).end, 'done');
  await s.settled;
  assert.ok(client.destroyed && target.destroyed);
});
