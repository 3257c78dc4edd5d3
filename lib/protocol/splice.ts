/**
 * How every hop of the relay moves a stream's bytes: `infisical-connect` (local connection ↔ inner TLS), the
 * proxy (platform TLS ↔ SSH channel) and the gateway in tcp mode (inner TLS ↔ target). Bytes are moved, never
 * parsed. Backpressure both ways: a side stops being read while the other is above its high-water mark.
 *
 * Half-close is TCP's: end-of-write on one side (a FIN, a TLS close_notify, an SSH channel EOF) is passed on
 * as end-of-write on the other, and the other direction keeps flowing, so a client that sends a request and
 * shuts down its write side still gets the whole reply. The splice is done when both directions have ended
 * AND what was written into each side has been flushed; only then are the sides destroyed (destroying earlier
 * drops the bytes still buffered: the tail of a reply to a slow reader). A side that closes or fails without
 * its end-of-write (a reset, an error, a dead tunnel) cuts the other at once.
 *
 * A side that is still sending when the splice is done (the far side closed the stream after its answer: an
 * HTTP server refusing a request whose body is still coming) is not destroyed with bytes unread: its kernel
 * would answer them with a reset, and a reset makes the peer's kernel drop what it has not read yet, our last
 * answer included. Such a side (SpliceOptions.linger) is read and dropped (after our end-of-write, already sent)
 * until it ends too, LINGER_MS and LINGER_MAX_BYTES at most, as HTTP servers do ("lingering close"). It stays
 * the caller's meanwhile: close() cuts it at once (revocation, shutdown), and `settled` says when it is gone.
 *
 * Each side must be created with allowHalfOpen (net and TLS sockets default to ending their write side when
 * the read side ends).
 */
import type { Duplex } from 'node:stream';

/** 'up' = downstream → upstream (towards the target), 'down' = back. */
export type Direction = 'up' | 'down';

/**
 * Passes end-of-write to a side and calls `flushed` once everything written before it has left (default
 * `side.end()` and its 'finish'). An ssh2 server channel closes the whole channel on end(): the proxy sends an
 * EOF alone instead (lib/proxy/ssh-listener.ts).
 */
export type EndWrites = (side: Duplex, flushed: () => void) => void;

export interface SpliceOptions {
  /** Close when no byte moved either way for this long (default: never). */
  idleTimeoutMs?: number;
  /** Called per chunk with its length (metrics, audit counts). */
  onBytes?: (direction: Direction, bytes: number) => void;
  /** Sees every chunk moved (tests prove the proxy is blind with it). */
  tap?: (direction: Direction, chunk: Buffer) => void;
  /** How end-of-write is passed to the upstream side (default: end()). */
  endUpstream?: EndWrites;
  /**
   * Directions whose chunks are gathered into one write per I/O phase (up to 256 KiB): for a destination
   * where each write costs a round trip, as a TLS session over another TLS socket (Node's JSStreamSocket
   * carries one write at a time and completes it on the next setImmediate).
   */
  coalesce?: Direction[];
  /**
   * Sides that are a connection to a peer who may still be sending when the splice is done (the local client,
   * the platform): read and dropped for a moment instead of destroyed (LINGER_MS). Not for a side that is a
   * channel of a shared tunnel: lingering there would keep its sender streaming into nothing.
   */
  linger?: ('downstream' | 'upstream')[];
}

export type SpliceEnd = 'done' | 'idle' | 'error' | 'closed';

export interface Splice {
  /** Bytes moved downstream → upstream ('up') and back ('down'). */
  readonly bytes: Record<Direction, number>;
  /** Bytes held for this stream now (both sides' unread and unwritten buffers). */
  buffered(): number;
  /**
   * Ends the stream now (revocation, expiry, drain); once it is done, destroys a side that still lingers
   * (SpliceOptions.linger) instead: a revoked peer's socket must not stay open reading into nothing.
   */
  close(reason: string): void;
  readonly done: Promise<{ end: SpliceEnd; reason: string }>;
  /** Resolves once both sides are gone: at `done`, or when the last lingering side closed (LINGER_MS at most). */
  readonly settled: Promise<void>;
}

const GATHER_MAX = 256 * 1024;

/**
 * Gathers the chunks that arrive in one I/O phase and writes them as one: setImmediate runs right after the
 * phase, so a lone small chunk waits for no timer; a full gather is written at once.
 */
class Gather {
  #parts: Buffer[] = [];
  #bytes = 0;
  #scheduled = false;
  readonly #write: (chunk: Buffer) => void;

  constructor(write: (chunk: Buffer) => void) {
    this.#write = write;
  }

  add(chunk: Buffer): void {
    this.#parts.push(chunk);
    this.#bytes += chunk.length;
    if (this.#bytes >= GATHER_MAX) this.flush();
    else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => {
        this.#scheduled = false;
        this.flush();
      });
    }
  }

  flush(): void {
    if (this.#bytes === 0) return;
    const chunk = this.#parts.length === 1 ? this.#parts[0]! : Buffer.concat(this.#parts, this.#bytes);
    this.#parts = [];
    this.#bytes = 0;
    this.#write(chunk);
  }
}

const endWithFinish: EndWrites = (side, flushed) => {
  side.end(() => flushed());
};

/** How long a side still sending after the splice is done is read and dropped before it is destroyed. */
export const LINGER_MS = 2000;
/** How much such a side may send meanwhile before it is destroyed all the same. */
export const LINGER_MAX_BYTES = 16 * 1024 * 1024;

/**
 * Destroys `side` once it has ended (read and dropped meanwhile), LINGER_MS and LINGER_MAX_BYTES at most; at once
 * when it ended already or when it may not linger. Returns its close while it lingers (a lingering side emits
 * 'close' when destroyed, as net and TLS sockets do).
 */
function linger(side: Duplex, may: boolean): Promise<void> | undefined {
  if (side.destroyed) return undefined;
  if (!may || side.readableEnded) {
    side.destroy();
    return undefined;
  }
  const gone = new Promise<void>((resolve) => side.once('close', () => resolve()));
  const timer = setTimeout(() => side.destroy(), LINGER_MS);
  timer.unref();
  let dropped = 0;
  side.on('data', (chunk: Buffer) => {
    dropped += chunk.length; // the splice's own 'data' listener ignores it now
    if (dropped > LINGER_MAX_BYTES) side.destroy();
  });
  side.once('end', () => side.destroy());
  side.once('close', () => clearTimeout(timer));
  side.resume();
  return gone;
}

export function splice(downstream: Duplex, upstream: Duplex, options: SpliceOptions = {}): Splice {
  const bytes: Record<Direction, number> = { up: 0, down: 0 };
  let finished = false;
  let resolveDone!: (v: { end: SpliceEnd; reason: string }) => void;
  const done = new Promise<{ end: SpliceEnd; reason: string }>((r) => {
    resolveDone = r;
  });
  let resolveSettled!: () => void;
  const settled = new Promise<void>((r) => {
    resolveSettled = r;
  });
  const idle =
    options.idleTimeoutMs === undefined
      ? undefined
      : setTimeout(() => finish('idle', 'idle timeout'), options.idleTimeoutMs);
  idle?.unref();

  const finish = (end: SpliceEnd, reason: string): void => {
    if (finished) return;
    finished = true;
    clearTimeout(idle);
    if (end === 'done') {
      // Both directions flushed; a side whose own end has not come yet is still sending: see LINGER_MS.
      const lingering = [
        linger(downstream, options.linger?.includes('downstream') ?? false),
        linger(upstream, options.linger?.includes('upstream') ?? false),
      ];
      void Promise.all(lingering).then(resolveSettled);
    } else {
      downstream.destroy();
      upstream.destroy();
      resolveSettled();
    }
    resolveDone({ end, reason });
  };

  // ended: the source of that direction sent its end-of-write; flushed: the destination has everything.
  const ended: Record<Direction, boolean> = { up: false, down: false };
  const flushed: Record<Direction, boolean> = { up: false, down: false };
  const settle = (): void => {
    if (flushed.up && flushed.down) finish('done', 'both directions ended');
  };
  const forward = (from: Duplex, to: Duplex, direction: Direction, endWrites: EndWrites): void => {
    const write = (chunk: Buffer): void => {
      if (finished || flushed[direction]) return; // the destination closed cleanly: nowhere to go
      if (!to.write(chunk)) {
        from.pause();
        to.once('drain', () => {
          if (!finished) from.resume();
        });
      }
    };
    const gather = options.coalesce?.includes(direction) ? new Gather(write) : undefined;
    from.on('data', (chunk: Buffer) => {
      if (finished) return;
      idle?.refresh();
      bytes[direction] += chunk.length;
      options.onBytes?.(direction, chunk.length);
      options.tap?.(direction, chunk);
      if (gather) gather.add(chunk);
      else write(chunk);
    });
    from.once('end', () => {
      ended[direction] = true;
      gather?.flush(); // what was gathered goes before the end-of-write
      if (finished || flushed[direction]) return settle();
      endWrites(to, () => {
        flushed[direction] = true;
        settle();
      });
    });
  };
  forward(downstream, upstream, 'up', options.endUpstream ?? endWithFinish);
  forward(upstream, downstream, 'down', endWithFinish);
  // A side's close after its own end-of-write is orderly: nothing more can be written into it, and the other
  // direction finishes on its own. A close before it is a reset or an abort: the other side is cut.
  const onClose = (source: Direction, into: Direction) => () => {
    if (!ended[source]) return finish('closed', 'a side closed before its end of stream');
    flushed[into] = true;
    settle();
  };
  downstream.once('close', onClose('up', 'down'));
  upstream.once('close', onClose('down', 'up'));
  for (const side of [downstream, upstream]) side.on('error', (err: Error) => finish('error', err.message));

  return {
    bytes,
    buffered: () =>
      downstream.readableLength + downstream.writableLength + upstream.readableLength + upstream.writableLength,
    close: (reason) => {
      if (!finished) return finish('closed', reason);
      downstream.destroy(); // a side destroyed already (done, not lingering) is left as it is
      upstream.destroy();
    },
    done,
    settled,
  };
}
