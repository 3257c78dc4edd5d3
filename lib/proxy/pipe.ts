/**
 * Splices a platform connection and a tunnel channel: bytes are moved, never parsed. Backpressure both ways:
 * a side stops being read while the other side is above its high-water mark (TLS socket 16 KiB, ssh2 channel
 * 2 MiB = its window), and then the SSH channel window stops the gateway and the TCP window the platform, so a
 * stalled reader costs a bounded amount of memory per stream.
 * Half-close is passed on (EOF one way keeps the other way open); an idle stream is closed.
 */
import type { Duplex } from 'node:stream';

export type Direction = 'up' | 'down';

export interface SpliceOptions {
  /** Close when no byte moved either way for this long. */
  idleTimeoutMs: number;
  /** Called per chunk with its length (metrics). */
  onBytes?: (direction: Direction, bytes: number) => void;
  /** Sees every chunk moved (tests prove the proxy is blind with it). */
  tap?: (direction: Direction, chunk: Buffer) => void;
}

export type SpliceEnd = 'done' | 'idle' | 'error' | 'closed';

export interface Splice {
  /** Bytes moved platform → gateway ('up') and back ('down'). */
  readonly bytes: Record<Direction, number>;
  /** Bytes held by the proxy for this stream now (both sides' unread and unwritten buffers). */
  buffered(): number;
  /** Ends the stream now (revocation, expiry, drain). */
  close(reason: string): void;
  readonly done: Promise<{ end: SpliceEnd; reason: string }>;
}

export function splice(platform: Duplex, tunnel: Duplex, options: SpliceOptions): Splice {
  const bytes: Record<Direction, number> = { up: 0, down: 0 };
  let finished = false;
  let resolveDone!: (v: { end: SpliceEnd; reason: string }) => void;
  const done = new Promise<{ end: SpliceEnd; reason: string }>((r) => {
    resolveDone = r;
  });
  const idle = setTimeout(() => finish('idle', 'idle timeout'), options.idleTimeoutMs);
  idle.unref();

  const finish = (end: SpliceEnd, reason: string): void => {
    if (finished) return;
    finished = true;
    clearTimeout(idle);
    platform.destroy();
    tunnel.destroy();
    resolveDone({ end, reason });
  };

  const ended = { up: false, down: false };
  const forward = (from: Duplex, to: Duplex, direction: Direction): void => {
    from.on('data', (chunk: Buffer) => {
      if (finished) return;
      idle.refresh();
      bytes[direction] += chunk.length;
      options.onBytes?.(direction, chunk.length);
      options.tap?.(direction, chunk);
      if (!to.write(chunk)) {
        from.pause();
        to.once('drain', () => {
          if (!finished) from.resume();
        });
      }
    });
    from.on('end', () => {
      ended[direction] = true;
      if (!finished) to.end();
      if (ended.up && ended.down) finish('done', 'both sides closed');
    });
  };
  forward(platform, tunnel, 'up');
  forward(tunnel, platform, 'down');
  for (const side of [platform, tunnel]) {
    side.on('error', (err: Error) => finish('error', err.message));
    side.on('close', () => finish(ended.up && ended.down ? 'done' : 'closed', 'a side closed'));
  }

  return {
    bytes,
    buffered: () => platform.readableLength + platform.writableLength + tunnel.readableLength + tunnel.writableLength,
    close: (reason) => finish('closed', reason),
    done,
  };
}
