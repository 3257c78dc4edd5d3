/**
 * Continuous traffic across events longer than a grant lives: overlapping paced streams through one connect
 * listener, a new one every `everyMs`, each sending for `streamMs` (shorter than the grant lifetime, so no
 * stream meets its grant's end) and checked byte for byte (SHA-256 at the target and on the way back). At any
 * moment one or more streams are mid-transfer; `spanning(t)` names those that were at time t, so a test can
 * show that each event happened while bytes flowed.
 */
import type { PacedResult } from './helpers2.js';
import { pacedTransfer } from './helpers2.js';
import type { Target } from './transfer.js';

export interface RollingStream {
  n: number;
  startedAt: number;
  endedAt?: number;
  result?: PacedResult;
}

export interface RollingTraffic {
  streams: RollingStream[];
  /** Streams that were sending at time `t` (Date.now() ms): started before, finished after. */
  spanning(t: number): RollingStream[];
  /** Stops opening streams and waits for the open ones to finish. */
  stop(): Promise<RollingStream[]>;
}

export function rollingTraffic(o: {
  port: () => number;
  target: Target;
  /** Bytes per second per stream. */
  rate: number;
  streamMs: number;
  everyMs: number;
}): RollingTraffic {
  const streams: RollingStream[] = [];
  const running: Promise<void>[] = [];
  let stopped = false;
  const open = () => {
    const s: RollingStream = { n: streams.length + 1, startedAt: Date.now() };
    streams.push(s);
    const until = new Promise((r) => setTimeout(r, o.streamMs));
    running.push(
      pacedTransfer({
        port: o.port(),
        target: o.target,
        rate: o.rate,
        until,
        maxBytes: Math.ceil((o.rate * o.streamMs) / 1000) * 4 + (1 << 20),
        timeoutMs: o.streamMs + 30_000,
      }).then((result) => {
        s.endedAt = Date.now();
        s.result = result;
      }),
    );
  };
  open();
  const timer = setInterval(() => {
    if (!stopped) open();
  }, o.everyMs);
  return {
    streams,
    spanning: (t) => streams.filter((s) => s.startedAt < t && (s.endedAt === undefined || s.endedAt > t)),
    stop: async () => {
      stopped = true;
      clearInterval(timer);
      await Promise.all(running);
      return streams;
    },
  };
}
