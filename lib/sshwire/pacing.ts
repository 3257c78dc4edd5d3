/**
 * Fair sharing of one SSH connection by its channels (the proxy's side and the gateway's side of a tunnel).
 *
 * ssh2 hands a channel's bytes to the connection's socket as far as the peer's window allows (2 MiB per
 * channel) and reports each write done at once, whatever the socket already holds. So N busy channels queue up
 * to N × 2 MiB in the socket, first come first served, ahead of everything else on the connection: measured
 * with 100 uploads through one tunnel, 188 MiB sat in the proxy's socket, a few streams got everything, and the
 * gateway's keepalive, whose reply waited behind it all, declared the tunnel dead and cut every stream.
 *
 * Paced, a channel's write completes only while the socket holds less than PACE_BYTES and no other channel is
 * waiting; otherwise the write waits in the connection's FIFO, which the socket's 'drain' serves one write per
 * channel per turn. Round robin between channels. A chunk reaches the socket before its completion waits, so
 * the socket holds at most PACE_BYTES plus one chunk (≤ 64 KiB) per busy channel ahead of a keepalive: 100
 * busy channels, about 6.5 MiB, instead of 200 MiB unpaced.
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

type Done = (err?: Error | null) => void;

interface Pacer {
  readonly waiting: (() => void)[];
}

const pacers = new WeakMap<Writable, Pacer>();

function pacerOf(socket: Writable): Pacer {
  const known = pacers.get(socket);
  if (known) return known;
  const pacer: Pacer = { waiting: [] };
  // A resumed channel writes its next chunk at once; its completion joins the back of the queue (others wait).
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
  const paced =
    (done: Done): Done =>
    (err) => {
      if (err || socket.destroyed || (pacer.waiting.length === 0 && socket.writableLength < PACE_BYTES)) {
        return done(err);
      }
      pacer.waiting.push(() => done());
    };
  const self = channel as unknown as {
    _write(chunk: Buffer, encoding: BufferEncoding, done: Done): void;
    _writev?: (chunks: { chunk: Buffer; encoding: BufferEncoding }[], done: Done) => void;
  };
  const write = self._write.bind(channel);
  self._write = (chunk, encoding, done) => write(chunk, encoding, paced(done));
  // Writes queued meanwhile go out together when ssh2 packs them (the channelPackWrites option)
  const writev = self._writev?.bind(channel);
  if (writev) self._writev = (chunks, done) => writev(chunks, paced(done));
}

/** The socket an ssh2 Client writes to (set once it connects); undefined before. */
export function clientSocket(client: object): Writable | undefined {
  const sock = (client as { _sock?: unknown })._sock;
  return sock && typeof (sock as Writable).write === 'function' ? (sock as Writable) : undefined;
}
