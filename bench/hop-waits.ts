/**
 * Where a daemon's streams wait, for `BENCH=datapath` (docs/performance.md, round 6): loaded into every daemon
 * with `BENCH_DATAPATH_NODE_OPTIONS=--import=<build>/bench/hop-waits.js` and `BENCH_DATAPATH_LOGS=DIR`, it
 * prints one JSON line every 2 s (`hop-waits {...}`, cumulative: the last one counts) to the daemon's output with, per kind of stream (plain TCP
 * socket, TLS over a socket, TLS over a JavaScript stream, ssh2 channel):
 *  - `paused`: how long reading it was paused (splice pauses a side while the other is above its high-water
 *    mark), in ms, and how often;
 *  - `full`: how long it stayed full after a write() returned false (until 'drain');
 *  - for ssh2 channels, `window`: how long writes waited for the peer's CHANNEL_WINDOW_ADJUST, and `chanDrain`:
 *    how long the channel held its incoming window back because its reader did not read;
 * and the event loop's delay (p50, p99, max in ms): how long the process was descheduled or busy between turns.
 * Counted from the daemon's start (warm-up included). Nothing of it is used by the daemons.
 */
import { createRequire } from 'node:module';
import { basename } from 'node:path';
import { monitorEventLoopDelay } from 'node:perf_hooks';
import { Duplex, Readable, Writable } from 'node:stream';

interface Wait {
  ms: number;
  n: number;
}
const waits: Record<string, Wait> = {};
const add = (key: string, ms: number): void => {
  const w = waits[key] ?? { ms: 0, n: 0 };
  waits[key] = w;
  w.ms += ms;
  w.n += 1;
};

function kind(s: object): string {
  const name = s.constructor.name;
  if (name === 'TLSSocket') {
    const parent = (s as { _parent?: object })._parent;
    return parent && parent.constructor.name === 'Socket' ? 'tls/socket' : 'tls/js';
  }
  return name === 'Socket' ? 'tcp' : name;
}

const pausedAt = new WeakMap<object, number>();
const pause = Readable.prototype.pause;
const resume = Readable.prototype.resume;
Readable.prototype.pause = function (this: Readable) {
  if (!pausedAt.has(this)) pausedAt.set(this, performance.now());
  return pause.call(this);
};
Readable.prototype.resume = function (this: Readable) {
  const t0 = pausedAt.get(this);
  if (t0 !== undefined) {
    pausedAt.delete(this);
    add(`${kind(this)} paused`, performance.now() - t0);
  }
  return resume.call(this);
};

const fullSince = new WeakMap<object, number>();
const write = Writable.prototype.write;
function countedWrite(this: Writable, ...args: unknown[]): boolean {
  const ok = (write as (...a: unknown[]) => boolean).apply(this, args);
  if (!ok && !fullSince.has(this)) {
    fullSince.set(this, performance.now());
    this.once('drain', () => {
      const t0 = fullSince.get(this);
      fullSince.delete(this);
      if (t0 !== undefined) add(`${kind(this)} full`, performance.now() - t0);
    });
  }
  return ok;
}
// Duplex holds its own copy of Writable's methods (sockets and channels are Duplexes).
Writable.prototype.write = countedWrite as Writable['write'];
Duplex.prototype.write = countedWrite as Duplex['write'];

// ssh2 sets _waitWindow / _waitChanDrain as own properties: an accessor on the prototype sees every change.
try {
  const { Channel } = createRequire(import.meta.url)('ssh2/lib/Channel.js') as { Channel: { prototype: object } };
  for (const [prop, label] of [
    ['_waitWindow', 'ssh window'],
    ['_waitChanDrain', 'ssh chanDrain'],
  ] as const) {
    const value = new WeakMap<object, boolean>();
    const since = new WeakMap<object, number>();
    Object.defineProperty(Channel.prototype, prop, {
      get(this: object) {
        return value.get(this) ?? false;
      },
      set(this: object, v: boolean) {
        const was = value.get(this) ?? false;
        value.set(this, v);
        if (v && !was) since.set(this, performance.now());
        if (!v && was) add(label, performance.now() - (since.get(this) ?? performance.now()));
      },
      configurable: true,
    });
  }
} catch {
  // not a process with ssh2
}

const delay = monitorEventLoopDelay({ resolution: 5 });
delay.enable();
// Every 2 s, cumulative (the bench keeps the daemons' output before it stops them): the last line counts.
const report = (): void => {
  if (Object.keys(waits).length === 0) return;
  const ms = (ns: number) => Math.round(ns / 1e4) / 100;
  const rounded = Object.fromEntries(
    Object.entries(waits).map(([k, w]) => [
      k,
      { ms: Math.round(w.ms), n: w.n, avg: Math.round((w.ms / w.n) * 100) / 100 },
    ]),
  );
  process.stderr.write(
    `hop-waits ${JSON.stringify({
      program: `${basename(process.argv[1] ?? 'node', '.js')} ${process.argv[2] ?? ''}`,
      loopDelay: { p50: ms(delay.percentile(50)), p99: ms(delay.percentile(99)), max: ms(delay.max) },
      waits: rounded,
    })}\n`,
  );
};
setInterval(report, 2000).unref();
