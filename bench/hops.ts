/**
 * A held tcp stream's timeline across every process (diagnostic, not part of `make bench`'s table):
 *
 *   node build/bench/hops.js [streams=60] [gap ms=50]
 *
 * starts a deployment (test/lifecycle harness: CA, proxy, gateway, `infisical-connect tcp`, each a process started
 * through its CLI, and the echo target in this process) with bench/hop-trace.ts in the three daemons', runs the streams
 * one after the other as bench/setup.ts does (connect, one byte, its echo), and prints the stream at the median and
 * at the first quartile: every stamped event of those processes from `infisical-connect`'s accept to the echo it writes back, in µs, merged on one
 * clock. docs/performance.md "Eighth round" shows what it found.
 */
import { mkdtempSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import net from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { startDeployment } from '../test/lifecycle/deploy.js';
import type { HopEvent } from './hop-trace.js';

const STREAMS = Number(process.argv[2] ?? 60);
const GAP_MS = Number(process.argv[3] ?? 50);
const WARMUP = 10;

const dir = mkdtempSync(join(tmpdir(), 'bench-hops-'));
process.env['BENCH_HOP_TRACE_DIR'] = dir;
const saved = process.env['NODE_OPTIONS'];
process.env['NODE_OPTIONS'] = `${saved ?? ''} --import=${new URL('./hop-trace.js', import.meta.url).href}`.trim();
const d = await startDeployment({ proxies: 1, gateways: 1, logLevel: 'warn' });
let port = 0;

const one = () =>
  new Promise<void>((resolve, reject) => {
    const s = net.connect(port, '127.0.0.1');
    const timer = setTimeout(() => s.destroy(new Error('no echo within 10 s')), 10_000);
    s.setNoDelay(true);
    s.once('connect', () => s.write(Buffer.from([0x2a])));
    s.once('data', () => {
      clearTimeout(timer);
      s.destroy();
      resolve();
    });
    s.once('error', reject);
    s.once('close', () => reject(new Error('closed before its echo')));
  });
try {
  port = (await d.connect()).port;
  if (saved === undefined) delete process.env['NODE_OPTIONS'];
  else process.env['NODE_OPTIONS'] = saved;
  for (let i = 0; i < WARMUP + STREAMS; i++) {
    await one();
    await new Promise((r) => setTimeout(r, GAP_MS));
  }
} finally {
  // The daemons write their stamps at exit (SIGTERM: a clean exit).
  await d.close();
}

type Stamped = HopEvent & { p: string };
const events: Stamped[] = [];
const files = readdirSync(dir);
for (const p of ['connect-tcp', 'proxy-serve', 'gateway-serve']) {
  if (!files.some((f) => f.startsWith(`${p}-`))) console.error(`no trace from ${p}: its events are missing below`);
}
for (const f of files) {
  if (!/^(connect-tcp|proxy-serve|gateway-serve)-/.test(f)) continue;
  const p = f.split('-')[0]!;
  for (const line of readFileSync(join(dir, f), 'utf8').split('\n')) if (line) events.push({ p, ...JSON.parse(line) });
}
events.sort((a, b) => a.t - b.t);
// The local client's streams are seen from infisical-connect's side: its accept on the listener port.
const accepts = events.filter((e) => e.p === 'connect' && e.k === 'accept' && e.lp === port).slice(WARMUP);
const streams = accepts.flatMap((a) => {
  const back = events.find((e) => e.p === 'connect' && e.k === 'w' && e.id === a.id && e.t > a.t);
  return back ? [{ t0: a.t, end: back.t, us: back.t - a.t }] : [];
});
const sorted = [...streams].sort((a, b) => a.us - b.us);
const show = (label: string, s: (typeof streams)[number] | undefined) => {
  if (!s) return;
  console.log(`\n${label}: accept → echo written back to the local client ${(s.us / 1000).toFixed(2)} ms`);
  for (const e of events) {
    if (e.t < s.t0 || e.t > s.end) continue;
    console.log(
      `${String(e.t - s.t0).padStart(6)} µs  ${e.p.padEnd(8)} ${e.k.padEnd(14)} ${e.c.padEnd(10)} #${e.id} ${e.lp ?? '-'}→${e.rp ?? '-'} ${e.n} B`,
    );
  }
};
show('median stream', sorted[Math.floor(sorted.length / 2)]);
show('first quartile', sorted[Math.floor(sorted.length / 4)]);
rmSync(dir, { recursive: true, force: true });
