/**
 * Channel pacing (lib/sshwire/pacing.ts): channels that complete their writes at once, as ssh2's do, share one
 * connection socket in turns bounded in bytes once it holds PACE_BYTES (many channels with small shares each
 * move the same bytes per round, whatever the size of their writes), the socket never holds much more than
 * that, and a closed connection releases every waiting write. A fake socket that flushes only when told stands for the TCP socket.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { Writable } from 'node:stream';
import { describe, it } from 'node:test';
import {
  CHANNEL_WRITE_BUFFER,
  MAX_TURN_BYTES,
  MIN_TURN_BYTES,
  PACE_BYTES,
  paceChannel,
} from '../../lib/sshwire/pacing.js';

/** A socket whose writes stay pending (counted in writableLength) until flush(). */
class HeldSocket extends Writable {
  readonly seen: string[] = [];
  /** Bytes of each write, beside `seen`. */
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
   * Lets everything queued now leave (not what the 'drain' it causes brings in: the next flush lets that go);
   * resolves after that 'drain' has been handled.
   */
  async flush(): Promise<void> {
    const drained = once(this, 'drain');
    let bytes = this.writableLength;
    while (bytes > 0 && this.#pending.length > 0) {
      const [n, done] = this.#pending.shift()!;
      bytes -= n;
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
      socket.write(Buffer.concat([Buffer.from(tag, 'latin1'), chunk]));
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

  it('once the socket holds PACE_BYTES, channels take turns of at most MAX_TURN_BYTES, round robin, and the socket stays near it', async () => {
    const socket = new HeldSocket();
    socket.write(Buffer.alloc(PACE_BYTES)); // what is already queued: another channel's burst
    const chunk = 64 * KiB;
    const tags = ['a', 'b', 'c', 'd', 'e', 'f'];
    const channels = tags.map((t) => channel(t, socket));
    for (const c of channels) for (let i = 0; i < 4; i++) c.write(Buffer.alloc(chunk));
    await new Promise((r) => setImmediate(r));
    // Each channel got one write in, then waits: the first whole (no one waited yet), the others cut to a turn.
    assert.deepEqual(socket.seen.slice(1), tags);
    assert.ok(socket.sizes.slice(2).every((n) => n <= MAX_TURN_BYTES + 1));
    const peakAfterFill = socket.peak;
    socket.peak = 0;
    const total = () => socket.sizes.slice(1).reduce((a, b) => a + b, 0) - (socket.sizes.length - 1);
    while (total() < tags.length * 4 * chunk) await socket.flush();
    // A turn is the channel's consecutive writes (a chunk cut at the end of one turn ends the next one).
    const turns: { tag: string; bytes: number }[] = [];
    socket.seen.slice(1 + tags.length).forEach((tag, i) => {
      const bytes = socket.sizes[1 + tags.length + i]! - 1;
      if (turns.at(-1)?.tag === tag) turns.at(-1)!.bytes += bytes;
      else turns.push({ tag, bytes });
    });
    // 'a' went first with a whole chunk (256 KiB = 64 + 6 turns of 32), the others with MIN_TURN_BYTES (4 + 8
    // turns of 32, the last one short).
    const order = turns.map((t) => t.tag).join('');
    assert.equal(order, tags.join('').repeat(6) + tags.slice(1).join('').repeat(2), 'round robin after the drain');
    assert.ok(
      turns.every((t) => t.bytes <= MAX_TURN_BYTES),
      'no turn above MAX_TURN_BYTES',
    );
    assert.ok(peakAfterFill <= PACE_BYTES + chunk + tags.length * (MAX_TURN_BYTES + 1));
    assert.ok(socket.peak <= PACE_BYTES + MAX_TURN_BYTES + 1, `socket held ${socket.peak} bytes at most after a drain`);
  });

  it('many channels with small shares move the same bytes per round, whatever the size of their writes', async () => {
    // 200 channels, as the proxy's reads of 200 TLS sockets: half come in 12 KiB pieces, half in 4 KiB.
    const socket = new HeldSocket();
    socket.write(Buffer.alloc(PACE_BYTES));
    const count = 200;
    const tags = Array.from({ length: count }, (_, i) => String.fromCharCode(0x30 + i));
    const sent = new Map(tags.map((t) => [t, 0]));
    const channels = tags.map((t) => channel(t, socket));
    channels.forEach((c, i) => {
      const piece = i % 2 === 0 ? 12 * KiB : 4 * KiB;
      for (let n = 0; n < CHANNEL_WRITE_BUFFER; n += piece) c.write(Buffer.alloc(piece));
    });
    await new Promise((r) => setImmediate(r));
    let seen = 1;
    // After each drain of the socket, while every channel still has bytes to send: no channel more than its
    // first write and one turn ahead of any other (with turns of one write each, the 12 KiB writers got 3×).
    for (let round = 0; round < 20; round++) {
      await socket.flush();
      for (; seen < socket.seen.length; seen++) {
        const tag = socket.seen[seen]!;
        sent.set(tag, sent.get(tag)! + socket.sizes[seen]! - 1);
      }
      const bytes = [...sent.values()];
      const spread = Math.max(...bytes) - Math.min(...bytes);
      assert.ok(
        spread <= 12 * KiB + MIN_TURN_BYTES,
        `round ${round}: shares ${Math.min(...bytes)}..${Math.max(...bytes)} bytes`,
      );
    }
    assert.ok(Math.min(...sent.values()) >= 4 * MIN_TURN_BYTES, 'every channel moved');
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
