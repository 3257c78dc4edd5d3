/**
 * Channel pacing (lib/sshwire/pacing.ts): channels that complete their writes at once, as ssh2's do, share one
 * connection socket in turn once it holds PACE_BYTES (deficit round robin: channels writing 4 KiB and 12 KiB
 * chunks move the same bytes per round, and no chunk is ever split), the socket never holds much more than
 * that, and a closed connection releases every waiting write. A fake socket that flushes only when told stands
 * for the TCP socket.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import { CHANNEL_WRITE_BUFFER, MAX_QUANTUM, PACE_BYTES, paceChannel } from '../../lib/sshwire/pacing.js';

/** A socket whose writes stay pending (counted in writableLength) until flush(). */
class HeldSocket extends Writable {
  readonly seen: string[] = [];
  /** The length of each write, as it reached the socket. */
  readonly sizes: number[] = [];
  readonly #pending: [bytes: number, done: () => void][] = [];
  peak = 0;

  constructor() {
    super({ highWaterMark: 16 * 1024 });
  }

  override _write(chunk: Buffer, _encoding: BufferEncoding, done: () => void): void {
    this.#pending.push([chunk.length, done]);
  }

  override write(chunk: Buffer): boolean {
    this.seen.push(chunk.toString('latin1', 0, 1));
    this.sizes.push(chunk.length);
    const ok = super.write(chunk);
    this.peak = Math.max(this.peak, this.writableLength);
    return ok;
  }

  /**
   * Lets what is queued at the call leave (not what the 'drain' handlers write meanwhile: one drain, one round
   * of turns); resolves after the 'drain' it causes has been handled.
   */
  async flush(): Promise<void> {
    const drained = once(this, 'drain');
    let bytes = this.writableLength;
    while (bytes > 0 && this.#pending.length > 0) {
      const [length, done] = this.#pending.shift()!;
      bytes -= length;
      done();
    }
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

  it('channels writing 4 KiB and 12 KiB chunks move the same bytes per round, no chunk ever split', async () => {
    const socket = new HeldSocket();
    socket.write(Buffer.alloc(PACE_BYTES)); // another channel's burst (tag byte 0)
    const n = 200;
    const total = 192 * KiB;
    const chunkOf = (i: number): number => (i % 2 === 0 ? 4 * KiB : 12 * KiB);
    // Channel i tags its writes with the byte i + 1 and queues all its chunks at once (a backlogged stream).
    for (let i = 0; i < n; i++) {
      const tag = Buffer.from([i + 1]);
      const c = new Writable({
        highWaterMark: 2 * 1024 * 1024,
        write(chunk: Buffer, _encoding, done) {
          socket.write(Buffer.concat([tag, chunk]));
          done();
        },
      });
      paceChannel(c as unknown as import('node:stream').Duplex, socket);
      for (let sent = 0; sent < total; sent += chunkOf(i)) c.write(Buffer.alloc(chunkOf(i)));
    }
    await new Promise((r) => setImmediate(r));
    const bytes = new Array<number>(n).fill(0);
    let counted = 1;
    let checks = 0;
    for (;;) {
      for (; counted < socket.sizes.length; counted++) {
        const i = socket.seen[counted]!.charCodeAt(0) - 1;
        assert.equal(socket.sizes[counted], 1 + chunkOf(i), `channel ${i}'s write reached the socket whole`);
        bytes[i]! += chunkOf(i);
      }
      // While every channel still has bytes queued, none is more than a quantum and two chunks ahead of another.
      if (bytes.some((b) => b >= total)) break;
      const spread = Math.max(...bytes) - Math.min(...bytes);
      assert.ok(
        spread <= MAX_QUANTUM + 2 * 12 * KiB,
        `after ${checks} drains: ${Math.min(...bytes)} to ${Math.max(...bytes)} bytes`,
      );
      checks++;
      await socket.flush();
    }
    assert.ok(checks > 20, `${checks} drains checked`);
    // The rest goes out too, every chunk whole.
    const writes = 1 + (n / 2) * (total / (4 * KiB)) + (n / 2) * (total / (12 * KiB));
    while (socket.sizes.length < writes) await socket.flush();
    for (let k = counted; k < socket.sizes.length; k++) {
      const i = socket.seen[k]!.charCodeAt(0) - 1;
      assert.equal(socket.sizes[k], 1 + chunkOf(i));
    }
    assert.equal(socket.sizes.length, writes);
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
