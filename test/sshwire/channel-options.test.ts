/**
 * The options patches/ssh2+1.17.0.patch adds to ssh2's channels (lib/sshwire/ssh2.ts): without them a channel
 * grants ssh2's own window and packet size (2 MiB, 32 KiB); with channelWindow and channelPacketSize it grants
 * those, accepts packets up to that size, and with channelPackWrites sends queued writes as full packets. Bytes
 * arrive whole either way, through real ssh2 connections on loopback (one forwarded channel, as a tunnel's).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import { describe, it } from 'node:test';
import { pair } from './pair.js';

type Sides = { incoming: { window: number; packetSize: number }; outgoing: { window: number; packetSize: number } };
const sides = (ch: unknown) => ch as Sides;

/** Writes `data` in 16 KiB pieces, four at a time corked (as a TLS socket hands its records over). */
async function transfer(from: Duplex, to: Duplex, data: Buffer): Promise<Buffer> {
  const hash = createHash('sha256');
  let got = 0;
  const done = new Promise<void>((resolve) =>
    to.on('data', (d: Buffer) => {
      hash.update(d);
      got += d.length;
      if (got >= data.length) resolve();
    }),
  );
  for (let off = 0; off < data.length; ) {
    from.cork();
    let ok = true;
    for (let i = 0; i < 4 && off < data.length; i++, off += 16 * 1024)
      ok = from.write(data.subarray(off, off + 16 * 1024));
    from.uncork();
    if (!ok) await once(from, 'drain');
  }
  await done;
  return hash.digest();
}

describe('ssh2 channel options (patched)', () => {
  const data = randomBytes(6 * 1024 * 1024);
  const sha = createHash('sha256').update(data).digest();

  it("without options: ssh2's own window and packet size, bytes whole both ways", async () => {
    const p = await pair({});
    try {
      assert.equal(sides(p.up).outgoing.packetSize, 32 * 1024);
      assert.equal(sides(p.down).outgoing.packetSize, 32 * 1024);
      assert.equal(sides(p.up).incoming.window, 2 * 1024 * 1024);
      assert.deepEqual(await transfer(p.up, p.down, data), sha);
      assert.deepEqual(await transfer(p.down, p.up, data), sha);
    } finally {
      p.close();
    }
  });

  it('channelWindow, channelPacketSize and channelPackWrites: granted, and bytes whole both ways', async () => {
    const p = await pair({ channelWindow: 8 * 1024 * 1024, channelPacketSize: 128 * 1024, channelPackWrites: true });
    try {
      assert.equal(sides(p.up).outgoing.packetSize, 128 * 1024);
      assert.equal(sides(p.down).outgoing.packetSize, 128 * 1024);
      assert.equal(sides(p.down).outgoing.window <= 8 * 1024 * 1024, true);
      assert.equal(sides(p.up).incoming.window, 8 * 1024 * 1024);
      assert.equal(typeof (p.up as unknown as { _writev?: unknown })._writev, 'function');
      assert.deepEqual(await transfer(p.up, p.down, data), sha);
      assert.deepEqual(await transfer(p.down, p.up, data), sha);
    } finally {
      p.close();
    }
  });

  it('packets larger than 32 KiB reach a peer that declared a larger packet size', async () => {
    const p = await pair({ channelPacketSize: 200 * 1024 });
    try {
      const big = randomBytes(1024 * 1024);
      const got = new Promise<number[]>((resolve) => {
        const sizes: number[] = [];
        p.down.on('data', (d: Buffer) => {
          sizes.push(d.length);
          if (sizes.reduce((a, b) => a + b, 0) >= big.length) resolve(sizes);
        });
      });
      p.up.write(big);
      const sizes = await got;
      assert.ok(Math.max(...sizes) > 32 * 1024, `largest piece ${Math.max(...sizes)} bytes`);
    } finally {
      p.close();
    }
  });

  it('destroy() skips end() on a channel whose writable side finished (no Error built), and still closes', async () => {
    const p = await pair({});
    try {
      let ends = 0;
      const spy = (ch: Duplex) => {
        const end = ch.end.bind(ch);
        ch.end = ((...args: Parameters<Duplex['end']>) => {
          ends++;
          return end(...args);
        }) as Duplex['end'];
      };
      spy(p.up);
      spy(p.down);
      // an open channel: destroy() still ends it (the peer sees EOF) and closes it
      const downEnded = once(p.down, 'end');
      const upClosed = once(p.up, 'close');
      const downClosed = once(p.down, 'close');
      p.up.resume();
      p.down.resume();
      p.up.destroy();
      assert.equal(ends, 1);
      await downEnded;
      await upClosed;
      // a channel already ended and finished: destroy() calls no end() (that would build and discard
      // ERR_STREAM_ALREADY_FINISHED) and the channel still closes
      await downClosed;
      const p2 = await pair({});
      try {
        ends = 0;
        spy(p2.down);
        p2.up.resume();
        p2.down.resume();
        p2.down.end();
        await once(p2.down, 'finish');
        ends = 0;
        const closed = once(p2.up, 'close');
        p2.down.destroy();
        assert.equal(ends, 0);
        await closed;
      } finally {
        p2.close();
      }
    } finally {
      p.close();
    }
  });
});
