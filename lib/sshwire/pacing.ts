/**
 * Fair sharing of one SSH connection by its channels (the proxy's side and the gateway's side of a tunnel).
 *
 * ssh2 hands a channel's bytes to the connection's socket as far as the peer's window allows (2 MiB per
 * channel) and reports each write done at once, whatever the socket already holds. So N busy channels queue up
 * to N × 2 MiB in the socket, first come first served, ahead of everything else on the connection: measured
 * with 100 uploads through one tunnel, 188 MiB sat in the proxy's socket, a few streams got everything, and the
 * gateway's keepalive, whose reply waited behind it all, declared the tunnel dead and cut every stream.
 *
 * Paced, a channel's write completes at once while the socket holds less than PACE_BYTES and no other channel
 * is waiting: a lone channel, or any write while nobody waits, goes straight through. Otherwise the channels
 * take turns by deficit round robin, counted in bytes but never cutting a write: each channel has a counter;
 * each time the connection's FIFO (served on the socket's 'drain' while it holds less than PACE_BYTES) reaches
 * it, a quantum is added; while the counter is above 0 the channel writes its next WHOLE chunk and the chunk's
 * size is subtracted. The counter may go below 0: the debt is carried, and the channel skips turns until the
 * quanta repay it. So a channel whose writes are 12 KiB and one whose writes are 4 KiB move the same bytes per
 * round, each chunk stays one SSH packet as it came, and a channel with nothing queued keeps no credit (its
 * counter drops to at most 0 when it goes idle, so it cannot save up a burst). The quantum is PACE_BYTES shared
 * by the channels waiting, between MIN_QUANTUM and MAX_QUANTUM: with 1,000 busy channels, 4 KiB, so a round
 * is about 4 MiB. A chunk reaches the socket before its completion waits, so the socket holds at most
 * PACE_BYTES plus one chunk (≤ 64 KiB) per busy channel ahead of a keepalive: 100 busy channels, about
 * 6.5 MiB, instead of 200 MiB unpaced. (Turns of one write each let a channel whose reads came in 12 KiB take
 * three times the bytes of one whose reads came in 4 KiB; turns that cut chunks to a byte budget doubled the
 * SSH packets: docs/performance.md.)
 */
import type { Duplex, Writable } from 'node:stream';

/** What a connection's socket may hold before channel writes wait their turn. */
export const PACE_BYTES = 256 * 1024;

/**
 * What a paced channel buffers before its writer is told to wait (write() returns false). ssh2 sets it to its
 * window size, 2 MiB: with pacing, that much per stream would sit in the process (1,000 streams: 2 GiB), and
 * the streams, paced alike, would refill it all at once. The SSH window itself is not changed.
 */
export const CHANNEL_WRITE_BUFFER = 64 * 1024;

/** The fewest bytes a turn adds to a waiting channel's counter (many busy channels). */
export const MIN_QUANTUM = 4 * 1024;

/** The most bytes a turn adds to a waiting channel's counter (few busy channels). */
export const MAX_QUANTUM = 16 * 1024;

type Done = (err?: Error | null) => void;

/** A channel's completion waiting in the connection's FIFO. */
interface Turn {
  /** The channel's deficit counter (shared with the channel: see paceChannel). */
  readonly counter: { bytes: number };
  /** Completes the channel's write: it may write its next chunk. */
  readonly resume: () => void;
}

interface Pacer {
  readonly waiting: Turn[];
}

/** The quantum a turn adds now: PACE_BYTES shared by the channels waiting and the one served. */
const quantum = (pacer: Pacer): number =>
  Math.min(MAX_QUANTUM, Math.max(MIN_QUANTUM, Math.floor(PACE_BYTES / (pacer.waiting.length + 1))));

const pacers = new WeakMap<Writable, Pacer>();

function pacerOf(socket: Writable): Pacer {
  const known = pacers.get(socket);
  if (known) return known;
  const pacer: Pacer = { waiting: [] };
  // The head of the FIFO gets a quantum; in credit (or alone) it goes on, its next chunk written at once and
  // its completion back in the FIFO unless the counter stays above 0; in debt it goes to the back, skipping.
  const serve = (): void => {
    while (pacer.waiting.length > 0 && socket.writableLength < PACE_BYTES) {
      const turn = pacer.waiting.shift()!;
      turn.counter.bytes += quantum(pacer);
      if (pacer.waiting.length === 0) turn.counter.bytes = Math.max(turn.counter.bytes, 0); // no one to owe
      if (turn.counter.bytes > 0) turn.resume();
      else pacer.waiting.push(turn);
    }
  };
  socket.on('drain', serve);
  // The connection is gone: nothing will drain; let the channels' writes complete (they close with it).
  socket.once('close', () => {
    for (const turn of pacer.waiting.splice(0)) turn.resume();
  });
  pacers.set(socket, pacer);
  return pacer;
}

/**
 * Paces `channel`'s writes on the connection `socket` (the TCP socket ssh2 writes to). Safe to call once per
 * channel; channels of the same socket share one queue.
 */
export function paceChannel(channel: Duplex, socket: Writable): void {
  const pacer = pacerOf(socket);
  const state = (channel as unknown as { _writableState?: { highWaterMark?: number } })._writableState;
  if (state && typeof state.highWaterMark === 'number') state.highWaterMark = CHANNEL_WRITE_BUFFER;
  const counter = { bytes: 0 };
  /** Completes a write; a channel left with nothing queued keeps no credit. */
  const complete = (done: Done, err?: Error | null): void => {
    done(err);
    if (channel.writableLength === 0) counter.bytes = Math.min(counter.bytes, 0);
  };
  /** A whole write of `bytes` has reached the socket (ssh2 called back): complete it now or in a later turn. */
  const paced =
    (done: Done, bytes: number): Done =>
    (err) => {
      if (err || socket.destroyed || (pacer.waiting.length === 0 && socket.writableLength < PACE_BYTES)) {
        return complete(done, err);
      }
      // Contended: the write costs its bytes; while others wait, go on as long as the counter stays above 0.
      // Alone behind a full socket: wait for its drain (where, with no one to owe, the debt is dropped).
      counter.bytes -= bytes;
      if (counter.bytes > 0 && pacer.waiting.length > 0) return complete(done);
      pacer.waiting.push({ counter, resume: () => complete(done) });
    };
  const self = channel as unknown as {
    _write(chunk: Buffer, encoding: BufferEncoding, done: Done): void;
    _writev?: (chunks: { chunk: Buffer; encoding: BufferEncoding }[], done: Done) => void;
  };
  const write = self._write.bind(channel);
  self._write = (chunk, encoding, done) => write(chunk, encoding, paced(done, chunk.length));
  // Writes queued meanwhile go out together when ssh2 packs them (the channelPackWrites option): one write
  const writev = self._writev?.bind(channel);
  if (writev) {
    self._writev = (chunks, done) => {
      const bytes = chunks.reduce((n, c) => n + c.chunk.length, 0);
      writev(chunks, paced(done, bytes));
    };
  }
}

/** The socket an ssh2 Client writes to (set once it connects); undefined before. */
export function clientSocket(client: object): Writable | undefined {
  const sock = (client as { _sock?: unknown })._sock;
  return sock && typeof (sock as Writable).write === 'function' ? (sock as Writable) : undefined;
}
