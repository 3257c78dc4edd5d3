/**
 * How far a channel's sender may run ahead of us: the SSH window we grant, grown while the channel is read.
 *
 * ssh2 (and OpenSSH) grant every channel 2 MiB and top it up once half is used. On a busy machine that is a
 * few milliseconds of a bulk stream: when the scheduler leaves the receiving daemon off the CPU that long, the
 * sender has used the window up and waits for the adjust (measured, docs/performance.md round 6: the proxy
 * waited on the gateway's window for 10 % of an upload, 9 ms each time, with one busy-loop process beside it).
 *
 * Here the window a channel is topped up to is GROWN_WINDOW while the channel is being read (flowing, with
 * less than READ_BEHIND unread), ssh2's 2 MiB otherwise. So:
 *  - an idle channel, or one opened and never read, grants what ssh2 grants: nothing more per idle tunnel, and
 *    a reader that is paused from the start receives 2 MiB (+ the 1 MiB ssh2 re-opens), as before;
 *  - a channel stops being topped up as soon as its reader falls behind (splice pauses it, or its buffer
 *    grows), so the window shrinks back to 2 MiB as the bytes already granted arrive; it keeps its grown slot
 *    until what it was granted and holds unread is back within 2 MiB;
 *  - what a receiver can hold for one stream is at most GROWN_WINDOW (a stream that was read at full speed
 *    and then stops), where it was 3 MiB; at most GROWN_PER_CONNECTION channels of a connection hold a grown
 *    window at once, so a tunnel with many streams holds at most 24 MiB more than before, not 6 MiB a stream.
 * The sending side is unchanged: lib/sshwire/pacing.ts still bounds what each channel queues in the socket.
 *
 * Used by the gateway (the receiver of the upload direction), where the wait was measured and the gain shown.
 * Not by the proxy: there the window grown at its channels showed no gain for the download in alternated runs
 * (docs/performance.md), also after its platform TLS socket was let hold 1 MiB (relay-listener.ts).
 */
import type { Duplex } from 'node:stream';

/** The window a channel that is being read is topped up to (ssh2: 2 MiB). */
export const GROWN_WINDOW = 8 * 2 ** 20;

/** Unread bytes above which a channel's reader counts as behind (no more growth). */
export const READ_BEHIND = 256 * 1024;

/** ssh2's own window (lib/Channel.js MAX_WINDOW), what a channel falls back to. */
const SSH2_WINDOW = 2 * 2 ** 20;

/** Channels of one connection that may hold a grown window at once: bounds the extra per tunnel. */
export const GROWN_PER_CONNECTION = 4;

/** Per connection (ssh2's client or server-side connection object): its channels holding a grown window. */
const grownOn = new WeakMap<object, Set<Duplex>>();

/**
 * Lets `channel` (an ssh2 channel) grant GROWN_WINDOW while it is read, if fewer than GROWN_PER_CONNECTION
 * other channels of its connection hold one (so a tunnel's extra is at most 4 × 6 MiB, however many streams
 * it carries). ssh2 reads the channel's `_maxWindow` each time it decides on a window adjust (on each data
 * packet, and when a paused reader resumes); it becomes a getter that answers for the reader at that moment.
 */
export function growWindowWhileRead(channel: Duplex): void {
  const state = channel as unknown as { _maxWindow?: number; _client?: object };
  if (typeof state._maxWindow !== 'number' || !state._client) return; // not an ssh2 channel: leave it alone
  const base = Math.min(state._maxWindow, SSH2_WINDOW);
  const grown = grownOn.get(state._client) ?? new Set<Duplex>();
  grownOn.set(state._client, grown);
  const held = (): number =>
    ((channel as unknown as { incoming?: { window?: number } }).incoming?.window ?? 0) + channel.readableLength;
  Object.defineProperty(channel, '_maxWindow', {
    get: () => {
      const reading = channel.readableFlowing === true && channel.readableLength < READ_BEHIND;
      if (reading && (grown.has(channel) || grown.size < GROWN_PER_CONNECTION)) {
        grown.add(channel);
        return GROWN_WINDOW;
      }
      // Its slot frees only once what it may still receive or holds unread is back within the base: a reader
      // that stalled after growing holds up to GROWN_WINDOW, and another channel growing meanwhile would add
      // as much again, however many stall in turn.
      if (held() <= base) grown.delete(channel);
      return base;
    },
    set: () => undefined,
    configurable: true,
  });
  channel.once('close', () => grown.delete(channel));
}
