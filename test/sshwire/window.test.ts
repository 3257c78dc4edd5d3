/**
 * lib/sshwire/window.ts: a channel that is read at full speed lets its sender run GROWN_WINDOW ahead; one whose
 * reader is paused grants what ssh2 grants (2 MiB, + the 1 MiB ssh2 re-opens), so a stalled stream holds no
 * more than before. Real ssh2 connections on loopback, one forwarded channel (as a tunnel's).
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { PassThrough } from 'node:stream';
import { describe, it } from 'node:test';
import type { ServerChannel } from '../../lib/sshwire/ssh2.js';
import { GROWN_PER_CONNECTION, GROWN_WINDOW, growWindowWhileRead } from '../../lib/sshwire/window.js';
import { pair } from './pair.js';

const MiB = 2 ** 20;

const window = (ch: unknown) => (ch as { outgoing: { window: number } }).outgoing.window;

/** Writes `total` bytes into `up` with its backpressure; the largest window `up` was granted meanwhile. */
async function send(up: ServerChannel, total: number, until: () => boolean): Promise<number> {
  const chunk = Buffer.alloc(64 * 1024, 7);
  let sent = 0;
  let largest = window(up);
  while (sent < total && !until()) {
    largest = Math.max(largest, window(up));
    sent += chunk.length;
    if (!up.write(chunk)) {
      const drained = await Promise.race([
        once(up, 'drain').then(() => true),
        new Promise<boolean>((r) => setTimeout(() => r(false), 500)),
      ]);
      if (!drained) break; // stalled: the window is used up and not re-opened
    }
  }
  return Math.max(largest, window(up));
}

describe('SSH window grown while the channel is read', () => {
  for (const grown of [false, true]) {
    it(`a channel read at full speed ${grown ? 'grants up to GROWN_WINDOW' : 'grants 2 MiB (ssh2 alone)'}`, async () => {
      const { up, down, close } = await pair();
      try {
        if (grown) growWindowWhileRead(down);
        let got = 0;
        down.on('data', (d: Buffer) => {
          got += d.length;
        });
        const largest = await send(up, 32 * MiB, () => false);
        if (grown) assert.ok(largest > 2 * MiB, `the sender was granted at most ${largest} bytes`);
        else assert.ok(largest <= 2 * MiB, `ssh2 alone granted ${largest} bytes`);
        await new Promise<void>((resolve) => {
          const check = () => (got >= 32 * MiB ? resolve() : setTimeout(check, 10));
          check();
        });
      } finally {
        close();
      }
    });
  }

  it('a reader paused from the start receives what ssh2 grants, not GROWN_WINDOW', async () => {
    const { up, down, close } = await pair();
    try {
      growWindowWhileRead(down);
      down.pause();
      await send(up, GROWN_WINDOW * 2, () => false);
      await new Promise((r) => setTimeout(r, 200));
      assert.ok(down.readableLength <= 3 * MiB + 64 * 1024, `the paused channel holds ${down.readableLength} bytes`);
    } finally {
      close();
    }
  });

  it('at most GROWN_PER_CONNECTION channels of one connection hold a grown window', async () => {
    const { up, down, close } = await pair();
    try {
      // Stand-ins for other channels of the same connection, each being read: they take the grown slots.
      const client = (down as unknown as { _client: object })._client;
      const others = Array.from({ length: GROWN_PER_CONNECTION }, () => {
        const other = Object.assign(new PassThrough(), { _maxWindow: 2 * MiB, _client: client });
        growWindowWhileRead(other);
        other.resume();
        return other;
      });
      for (const o of others) assert.equal((o as unknown as { _maxWindow: number })._maxWindow, GROWN_WINDOW);
      growWindowWhileRead(down);
      down.resume();
      assert.equal((down as unknown as { _maxWindow: number })._maxWindow, 2 * MiB, 'no slot left: ssh2 window');
      others[0]!.destroy(); // a channel closes: its slot frees
      await once(others[0]!, 'close');
      assert.equal((down as unknown as { _maxWindow: number })._maxWindow, GROWN_WINDOW);
      void up;
    } finally {
      close();
    }
  });

  it('a channel that grew and stalled keeps its slot while it holds more than ssh2 would have granted', () => {
    const client = {};
    const channel = () => {
      const c = Object.assign(new PassThrough({ highWaterMark: 64 * MiB }), {
        _maxWindow: 2 * MiB,
        _client: client,
        incoming: { window: 2 * MiB },
      });
      growWindowWhileRead(c);
      c.resume();
      return c;
    };
    const max = (c: PassThrough) => (c as unknown as { _maxWindow: number })._maxWindow;
    const grown = Array.from({ length: GROWN_PER_CONNECTION }, channel);
    for (const c of grown) assert.equal(max(c), GROWN_WINDOW);
    // One stalls after growing: its reader paused, 6 MiB unread, 2 MiB more still granted to its sender.
    const stalled = grown[0]!;
    stalled.pause();
    stalled.write(Buffer.alloc(6 * MiB));
    assert.equal(max(stalled), 2 * MiB, 'no more growth while stalled');
    const next = channel();
    assert.equal(max(next), 2 * MiB, 'the stalled channel still holds its slot: no fifth grown window');
    // Read again: what it holds is back within 2 MiB, its slot frees.
    stalled.read();
    stalled.incoming.window = 0;
    assert.equal(max(stalled), 2 * MiB);
    assert.equal(max(next), GROWN_WINDOW);
  });

  it('leaves a stream that is not an ssh2 channel alone', () => {
    const s = new PassThrough();
    growWindowWhileRead(s);
    assert.equal((s as unknown as { _maxWindow?: number })._maxWindow, undefined);
  });
});
