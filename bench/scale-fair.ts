/**
 * Fairness (issue 13): N concurrent streams (default 1,000) through one gateway (platform → real proxy → SSH
 * tunnel → gateway → inner TLS → a sink target), every stream writing as fast as backpressure lets it. The sink
 * counts each stream's bytes per 1 s window over BENCH_SCALE_SECONDS (default 30); per window, each stream's
 * share is its bytes over the window's fair share (total / streams). The row reports the smallest share seen
 * (goal: none below 0.5) and how many stream-windows fell below half.
 *
 * Reference, same run: the same number of plain TCP connections from the same process straight into the sink
 * (what the kernel and one event loop give when nothing sits in between). Everything in one process, as
 * bench/gateway.ts: proxy and gateway are the lib/ parts the daemons run.
 */
import { once } from 'node:events';
import { createRequire } from 'node:module';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import { dialViaProxy } from '../lib/client/dial.js';
import { gatewayState, platformGrant, settings, startGateway, startRealProxy } from '../test/gateway/deploy.js';
import type { World } from '../test/helpers/world.js';
import { type BenchRow, fmt } from './table.js';

const STREAMS = Math.max(2, Number(process.env['BENCH_SCALE_STREAMS'] ?? 1000));
const SECONDS = Math.max(3, Number(process.env['BENCH_SCALE_SECONDS'] ?? 30));
const DIAL_CONCURRENCY = 50;
/** Small writes: the sink sees a stream's bytes in units of what was written (one TLS record each), and a 1 s
 * window's fair share of 1,000 streams on a busy 2-core machine is only tens of KiB. */
const CHUNK = Buffer.alloc(4 * 1024, 0x5a);

/**
 * BENCH_SCALE_TRACE=1: per-window shares at each hop, to find where a stream loses its turn: the platform's
 * writes (pump), the proxy's writes into its SSH channels (what it read from the outer sockets), the proxy's
 * channel bytes handed to the SSH socket (pacing turns), the gateway's channels (what its SSH client received
 * for each), and the sink (the gateway's writes to the target).
 */
const TRACE = process.env['BENCH_SCALE_TRACE'] === '1';
const hops = {
  platform: new Map<object, number>(),
  proxyIn: new Map<object, number>(),
  proxyTurns: new Map<object, number>(),
  gatewayIn: new Map<object, number>(),
};
const turnSizes: number[] = [];
const add = (m: Map<object, number>, k: object, n: number): void => {
  m.set(k, (m.get(k) ?? 0) + n);
};
if (TRACE) {
  type Ch = {
    server?: boolean;
    write: (...a: unknown[]) => boolean;
    _write: (...a: unknown[]) => void;
    push: (...a: unknown[]) => boolean;
  };
  const { Channel } = createRequire(import.meta.url)('ssh2/lib/Channel.js') as { Channel: { prototype: Ch } };
  const write = Channel.prototype.write;
  const _write = Channel.prototype._write;
  const push = Channel.prototype.push;
  Channel.prototype.push = function (this: Ch, ...a: unknown[]) {
    if (!this.server && Buffer.isBuffer(a[0])) add(hops.gatewayIn, this, a[0].length);
    return push.apply(this, a);
  };
  Channel.prototype.write = function (this: Ch, ...a: unknown[]) {
    if (this.server && Buffer.isBuffer(a[0])) add(hops.proxyIn, this, a[0].length);
    return write.apply(this, a);
  };
  Channel.prototype._write = function (this: Ch, ...a: unknown[]) {
    if (this.server && Buffer.isBuffer(a[0])) {
      add(hops.proxyTurns, this, a[0].length);
      turnSizes.push(a[0].length);
    }
    return _write.apply(this, a);
  };
}

/** min, 1st percentile and count below 0.5 of each key's share of a window's fair share. */
function spread(now: Map<object, number>, prev: Map<object, number>, streams: number): string {
  const deltas = [...now].map(([k, n]) => n - (prev.get(k) ?? 0));
  while (deltas.length < streams) deltas.push(0);
  const sum = deltas.reduce((a, b) => a + b, 0);
  if (sum === 0) return 'nothing';
  const fair = sum / deltas.length;
  const shares = deltas.map((d) => d / fair).sort((a, b) => a - b);
  const p = (q: number) => shares[Math.floor(q * (shares.length - 1))]!.toFixed(2);
  const below = shares.filter((x) => x < 0.5).length;
  return `${(sum / 2 ** 20).toFixed(1)} MiB min ${p(0)} p1 ${p(0.01)} p50 ${p(0.5)} max ${p(1)} below ${below}`;
}

/** A TCP sink that counts bytes per connection. */
async function sink() {
  const counts = new Map<net.Socket, number>();
  const srv = net.createServer((s) => {
    counts.set(s, 0);
    s.on('error', () => {});
    s.on('data', (d: Buffer) => counts.set(s, (counts.get(s) ?? 0) + d.length));
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return {
    port: (srv.address() as net.AddressInfo).port,
    counts,
    close: async () => {
      for (const s of counts.keys()) s.destroy();
      await new Promise((r) => srv.close(r));
    },
  };
}

/**
 * Writes CHUNK into `s` whenever it drains, until `stopped()`. After a drain the writes resume on the next turn of
 * the event loop, not inside the drain: on loopback a write often completes at once, and its completion (a
 * nextTick) emits the next drain, so 1,000 writers resuming inside their drains chained write after write for
 * seconds without letting the loop reach its timers or the proxy's and gateway's sockets (profiled: 1.4 s of the
 * process in this cascade while its 5 ms timer ran 1.66 s late, and the window after it moved a fifth of the
 * bytes). A platform is its own process (infisical-connect): its writes never hold the proxy's or gateway's loop.
 */
function pump(s: Duplex, stopped: () => boolean): void {
  s.on('error', () => {});
  const go = (): void => {
    while (!stopped()) {
      if (TRACE) add(hops.platform, s, CHUNK.length);
      if (!s.write(CHUNK)) {
        s.once('drain', () => setImmediate(go));
        return;
      }
    }
  };
  go();
}

interface Shares {
  min: number;
  /** The smallest share over the whole run (a stream's total over the mean total). */
  minOverall: number;
  below: number;
  /** Windows in which no stream moved a byte. */
  stalls: number;
  windows: number;
  mibs: number;
}

/** Per-1 s-window shares of the sink's connections over SECONDS (the first window skipped: ramp-up). */
async function measureShares(counts: Map<net.Socket, number>): Promise<Shares> {
  let prev = new Map(counts);
  let first = prev;
  let min = Number.POSITIVE_INFINITY;
  let below = 0;
  let stalls = 0;
  let total = 0;
  let prevHops = Object.fromEntries(Object.entries(hops).map(([k, m]) => [k, new Map(m)]));
  for (let w = 0; w <= SECONDS; w++) {
    await new Promise((r) => setTimeout(r, 1000));
    const now = new Map(counts);
    if (TRACE) {
      const streams = counts.size;
      for (const [name, m] of Object.entries(hops)) {
        if (m.size === 0) continue;
        process.stderr.write(`trace: window ${w} ${name}: ${spread(m, prevHops[name]!, streams)}\n`);
      }
      process.stderr.write(`trace: window ${w} sink: ${spread(now, prev, streams)}\n`);
      if (turnSizes.length > 0) {
        const sorted = turnSizes.splice(0).sort((a, b) => a - b);
        const at = (q: number) => sorted[Math.floor(q * (sorted.length - 1))];
        process.stderr.write(
          `trace: window ${w} turn bytes: n ${sorted.length} p50 ${at(0.5)} p90 ${at(0.9)} max ${at(1)}\n`,
        );
      }
      prevHops = Object.fromEntries(Object.entries(hops).map(([k, m]) => [k, new Map(m)]));
    }
    if (w === 0) {
      prev = now;
      first = now;
      continue;
    }
    const deltas = [...now].map(([s, n]) => n - (prev.get(s) ?? 0));
    const sum = deltas.reduce((a, b) => a + b, 0);
    total += sum;
    const fair = sum / deltas.length;
    prev = now;
    if (fair === 0) {
      stalls++; // nothing moved at all: a stall, counted apart (no stream was treated worse than another)
      continue;
    }
    const lowest = Math.min(...deltas) / fair;
    min = Math.min(min, lowest);
    for (const d of deltas) if (d / fair < 0.5) below++;
    process.stderr.write(`scale: window ${w}: ${(sum / 2 ** 20).toFixed(1)} MiB, lowest share ${lowest.toFixed(2)}\n`);
  }
  const totals = [...counts].map(([s, n]) => n - (first.get(s) ?? 0));
  const mean = totals.reduce((a, b) => a + b, 0) / totals.length;
  const minOverall = mean > 0 ? Math.min(...totals) / mean : 0;
  return { min, minOverall, below, stalls, windows: SECONDS, mibs: total / SECONDS / 2 ** 20 };
}

async function throughGateway(world: World): Promise<Shares> {
  const target = await sink();
  const proxy = await startRealProxy(world, 'p1');
  const { gateway } = startGateway(world, gatewayState(world, [proxy]), settings([target.port]));
  let stopped = false;
  try {
    await gateway.pool.whenUp(10_000);
    const grant = await platformGrant(world, [proxy], { host: '127.0.0.1', port: target.port }, 'tcp');
    const via = grant.proxies[0]!;
    const sockets: Duplex[] = [];
    let next = 0;
    await Promise.all(
      Array.from({ length: DIAL_CONCURRENCY }, async () => {
        while (next < STREAMS) {
          next++;
          sockets.push((await dialViaProxy(grant, via, 'tcp', { stepTimeoutMs: 60_000 })).socket);
          if (sockets.length % 100 === 0) process.stderr.write(`scale: ${sockets.length} streams open\n`);
        }
      }),
    );
    while (target.counts.size < STREAMS) await new Promise((r) => setTimeout(r, 20));
    process.stderr.write(`scale: ${STREAMS} streams at the sink, measuring\n`);
    for (const s of sockets) pump(s, () => stopped);
    const shares = await measureShares(target.counts);
    stopped = true;
    for (const s of sockets) s.destroy();
    return shares;
  } finally {
    stopped = true;
    await gateway.close();
    await proxy.server.stop();
    await target.close();
  }
}

async function direct(): Promise<Shares> {
  const target = await sink();
  let stopped = false;
  const sockets: net.Socket[] = [];
  try {
    for (let i = 0; i < STREAMS; i++) sockets.push(net.connect(target.port, '127.0.0.1'));
    await Promise.all(sockets.map((s) => once(s, 'connect')));
    while (target.counts.size < STREAMS) await new Promise((r) => setTimeout(r, 20));
    for (const s of sockets) pump(s, () => stopped);
    return await measureShares(target.counts);
  } finally {
    stopped = true;
    for (const s of sockets) s.destroy();
    await target.close();
  }
}

const show = (s: Shares) =>
  `min share ${s.min.toFixed(2)} per window (${s.minOverall.toFixed(2)} over the run), ${s.below} of ${s.windows * STREAMS} stream-windows below 0.5, ${s.stalls} windows with no byte at all, ${fmt.mibs(s.mibs)} total`;

export async function fairness(world: World): Promise<BenchRow[]> {
  const ours = await throughGateway(world);
  const reference = await direct();
  return [
    {
      area: 'scale',
      metric: `${STREAMS} concurrent streams through one gateway: per-stream share of fair, 1 s windows × ${SECONDS}`,
      ours: show(ours),
      reference: `plain TCP, same process: ${show(reference)}`,
      note: 'goal: no stream below 0.5 of its fair share; platform, proxy, gateway and sink in one process',
    },
  ];
}
