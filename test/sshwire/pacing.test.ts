/**
 * Channel pacing (lib/sshwire/pacing.ts): channels that complete their writes at once, as ssh2's do, share one
 * connection socket in turn once it holds PACE_BYTES, the socket never holds much more than that, and a closed
 * connection releases every waiting write. A fake socket that flushes only when told stands for the TCP socket.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { CHANNEL_WRITE_BUFFER, PACE_BYTES, paceChannel } from '../../lib/sshwire/pacing.js';

/** A socket whose writes stay pending (counted in writableLength) until flush(). */
class HeldSocket extends Writable {
  readonly seen: string[] = [];
  readonly #pending: (() => void)[] = [];
  peak = 0;

  constructor() {
    super({ highWaterMark: 16 * 1024 });
  }

  override _write(_chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.#pending.push(done);
  }

  override write(chunk: Buffer): boolean {
    this.seen.push(chunk.toString('latin1', 0, 1));
    const ok = super.write(chunk);
    this.peak = Math.max(this.peak, this.writableLength);
    return ok;
  }

  /** Lets everything queued leave; resolves after the 'drain' it causes has been handled. */
  async flush(): Promise<void> {
    const drained = once(this, 'drain');
    while (this.#pending.length > 0) this.#pending.shift()!();
    await drained;
    await new Promise((r) => setImmediate(r));
  }
}

/** A channel as ssh2 makes it: each write goes straight into the connection's socket and completes at once. */
function channel(tag: string, socket: HeldSocket): Writable {
  const c = new Writable({
    highWaterMark: 2 * 1024 * 1024,
    write(chunk: Buffer, _encoding, done) {
      socket.write(Buffer.concat([Buffer.from(tag), chunk]));
      done();
    },
  });
  paceChannel(c as unknown as import('node:stream').Duplex, socket);
  return c;
}

const KiB = 1024;

describe('paceChannel', () => {
  it('completes writes at once while the socket holds little', async () => {
    const socket = new HeldSocket();
    const a = channel('a', socket);
    let done = 0;
    for (let i = 0; i < 10; i++) a.write(Buffer.alloc(KiB), () => done++);
    await new Promise((r) => setImmediate(r));
    assert.equal(done, 10);
    assert.deepEqual(socket.seen, Array(10).fill('a'));
  });

  it('once the socket holds PACE_BYTES, channels take turns, one write each, and the socket stays near it', async () => {
    const socket = new HeldSocket();
    socket.write(Buffer.alloc(PACE_BYTES)); // what is already queued: another channel's burst
    const chunk = 64 * KiB;
    const tags = ['a', 'b', 'c', 'd', 'e', 'f'];
    const channels = tags.map((t) => channel(t, socket));
    for (const c of channels) for (let i = 0; i < 4; i++) c.write(Buffer.alloc(chunk));
    await new Promise((r) => setImmediate(r));
    // Each channel got its first write in, then waits: nothing of anyone's second write yet.
    assert.deepEqual(socket.seen.slice(1), tags);
    const peakAfterFill = socket.peak;
    socket.peak = 0;
    while (socket.seen.length < 1 + tags.length * 4) await socket.flush();
    const order = socket.seen.slice(1 + tags.length).join('');
    assert.equal(order, tags.join('').repeat(3), 'round robin after the socket drained');
    assert.ok(peakAfterFill <= PACE_BYTES + tags.length * (chunk + 1));
    assert.ok(socket.peak <= PACE_BYTES + chunk + 1, `socket held ${socket.peak} bytes at most after a drain`);
  });

  it('a closed connection releases the writes that wait', async () => {
    const socket = new HeldSocket();
    socket.write(Buffer.alloc(PACE_BYTES));
    const a = channel('a', socket);
    const finished = new Promise<void>((resolve) => a.write(Buffer.alloc(KiB), () => resolve()));
    socket.destroy();
    await finished;
  });

  it('paces a channel that packs queued writes (_writev) as one that writes them one by one', async () => {
    const socket = new HeldSocket();
    const packed: number[] = [];
    const c = new Writable({
      highWaterMark: 2 * 1024 * 1024,
      write(chunk: Buffer, _encoding, done) {
        socket.write(Buffer.concat([Buffer.from('a'), chunk]));
        done();
      },
      writev(chunks, done) {
        packed.push(chunks.length);
        socket.write(Buffer.concat([Buffer.from('v'), ...chunks.map((x) => x.chunk as Buffer)]));
        done();
      },
    });
    paceChannel(c as unknown as import('node:stream').Duplex, socket);
    socket.write(Buffer.alloc(PACE_BYTES));
    let done = 0;
    for (let i = 0; i < 5; i++) c.write(Buffer.alloc(16 * KiB), () => done++);
    await new Promise((r) => setImmediate(r));
    // The first write went out and waits for its turn; the others queue behind it in the channel.
    assert.equal(done, 0);
    assert.deepEqual(socket.seen.slice(1), ['a']);
    while (done < 5) await socket.flush();
    // Once the socket drained, the four queued writes left as one, paced like any write.
    assert.deepEqual(socket.seen.slice(1), ['a', 'v']);
    assert.deepEqual(packed, [4]);
  });

  it("lowers the channel's write buffer to CHANNEL_WRITE_BUFFER", () => {
    const socket = new HeldSocket();
    socket.write(Buffer.alloc(PACE_BYTES));
    const a = channel('a', socket);
    assert.equal(a.writableHighWaterMark, CHANNEL_WRITE_BUFFER);
    assert.equal(a.write(Buffer.alloc(CHANNEL_WRITE_BUFFER)), false);
  });
});
