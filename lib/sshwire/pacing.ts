/**
 * Fair sharing of one SSH connection by its channels (the proxy's side and the gateway's side of a tunnel).
 *
 * ssh2 hands a channel's bytes to the connection's socket as far as the peer's window allows (2 MiB per
 * channel) and reports each write done at once, whatever the socket already holds. So N busy channels queue up
 * to N × 2 MiB in the socket, first come first served, ahead of everything else on the connection: measured
 * with 100 uploads through one tunnel, 188 MiB sat in the proxy's socket, a few streams got everything, and the
 * gateway's keepalive, whose reply waited behind it all, declared the tunnel dead and cut every stream.
 *
 * Paced, the channels take turns once the connection is contended, a turn bounded in bytes (deficit round
 * robin): while no other channel waits and the socket holds less than PACE_BYTES, a write goes out whole and
 * completes at once. Otherwise a channel writes at most its turn's bytes (a longer chunk is cut, the rest
 * waits for its next turn), then waits in the connection's FIFO, which the socket's 'drain' serves, a fresh
 * turn each, while the socket holds less than PACE_BYTES. A turn is PACE_BYTES shared by the channels in the
 * queue, between MIN_TURN_BYTES and MAX_TURN_BYTES: with 1,000 busy channels, 4 KiB each, so one round is
 * 4 MiB and every stream moves within a few KiB of its share each second; with a few, up to one SSH packet.
 * A turn counted in writes instead let a channel whose reads came in 12 KiB pieces take three times the bytes
 * of one whose reads came in 4 KiB, and made a round of 1,000 channels longer than a second (docs/performance.md).
 * The socket holds at most PACE_BYTES plus one turn per busy channel ahead of a keepalive.
 */
import type { Duplex, Writable } from 'node:stream';

/** What a connection's socket may hold before channel writes wait their turn. */
export const PACE_BYTES = 256 * 1024;

/** The fewest bytes a turn grants (many busy channels). */
export const MIN_TURN_BYTES = 4 * 1024;

/** The most bytes a turn grants (few busy channels): ssh2's largest packet. */
export const MAX_TURN_BYTES = 32 * 1024;

/**
 * What a paced channel buffers before its writer is told to wait (write() returns false). ssh2 sets it to its
 * window size, 2 MiB: with pacing, that much per stream would sit in the process (1,000 streams: 2 GiB), and
 * the streams, paced alike, would refill it all at once. The SSH window itself is not changed.
 */
export const CHANNEL_WRITE_BUFFER = 64 * 1024;

type Done = (err?: Error | null) => void;

interface Pacer {
  readonly waiting: (() => void)[];
}

const pacers = new WeakMap<Writable, Pacer>();

/** The bytes of a turn granted now: PACE_BYTES shared by the channels waiting and the one served. */
const turnBytes = (pacer: Pacer): number =>
  Math.min(MAX_TURN_BYTES, Math.max(MIN_TURN_BYTES, Math.floor(PACE_BYTES / (pacer.waiting.length + 1))));

function pacerOf(socket: Writable): Pacer {
  const known = pacers.get(socket);
  if (known) return known;
  const pacer: Pacer = { waiting: [] };
  // A resumed channel writes up to its turn at once; then it joins the back of the queue (others wait).
  const serve = (): void => {
    while (pacer.waiting.length > 0 && socket.writableLength < PACE_BYTES) pacer.waiting.shift()!();
  };
  socket.on('drain', serve);
  // The connection is gone: nothing will drain; let the channels' writes complete (they close with it).
  socket.once('close', () => {
    for (const resume of pacer.waiting.splice(0)) resume();
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
  /** Bytes this channel may still write in its current turn (0: no turn granted yet). */
  let credit = 0;
  const free = (): boolean => pacer.waiting.length === 0 && socket.writableLength < PACE_BYTES;
  /** `sent` bytes have left (ssh2 called back): go on now, or after a turn. */
  const after = (sent: number, then: Done): void => {
    if (socket.destroyed || free()) {
      credit = turnBytes(pacer);
      then();
      return;
    }
    credit -= sent;
    // Others wait: go on within this turn while it lasts. Alone behind a full socket: wait for its drain.
    if (credit > 0 && pacer.waiting.length > 0) {
      then();
      return;
    }
    pacer.waiting.push(() => {
      credit = turnBytes(pacer);
      then();
    });
  };
  const self = channel as unknown as {
    _write(chunk: Buffer, encoding: BufferEncoding, done: Done): void;
    _writev?: (chunks: { chunk: Buffer; encoding: BufferEncoding }[], done: Done) => void;
  };
  const write = self._write.bind(channel);
  // While others wait, a chunk longer than what is left of the turn is cut: the rest goes in later turns.
  const send = (chunk: Buffer, encoding: BufferEncoding, done: Done): void => {
    if (credit <= 0) credit = MIN_TURN_BYTES; // its first write, before its first turn: the smallest
    const cut = pacer.waiting.length > 0 && chunk.length > credit ? credit : chunk.length;
    write(cut === chunk.length ? chunk : chunk.subarray(0, cut), encoding, (err) => {
      if (err) return done(err);
      after(cut, cut === chunk.length ? done : () => send(chunk.subarray(cut), encoding, done));
    });
  };
  // No one waits: the write goes out whole, completed at once or after the drain, as when turns did not exist.
  const alone =
    (done: Done): Done =>
    (err) => {
      if (err || socket.destroyed || free()) {
        credit = MAX_TURN_BYTES;
        return done(err);
      }
      after(Number.POSITIVE_INFINITY, done);
    };
  self._write = (chunk, encoding, done) => {
    if (pacer.waiting.length === 0) write(chunk, encoding, alone(done));
    else send(chunk, encoding, done);
  };
  // Writes queued meanwhile go out together when ssh2 packs them (the channelPackWrites option); while others
  // wait, they go as one chunk, cut to the turn like any other.
  const writev = self._writev?.bind(channel);
  if (writev) {
    self._writev = (chunks, done) => {
      if (pacer.waiting.length > 0) return send(Buffer.concat(chunks.map((c) => c.chunk)), chunks[0]!.encoding, done);
      const bytes = chunks.reduce((n, c) => n + c.chunk.length, 0);
      writev(chunks, (err) => (err ? done(err) : after(bytes, done)));
    };
  }
}

/** The socket an ssh2 Client writes to (set once it connects); undefined before. */
export function clientSocket(client: object): Writable | undefined {
  const sock = (client as { _sock?: unknown })._sock;
  return sock && typeof (sock as Writable).write === 'function' ? (sock as Writable) : undefined;
}
