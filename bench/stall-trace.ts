/**
 * What a process was doing when a stream was slow: loaded with `NODE_OPTIONS=--import=<this file>` and
 * BENCH_STALL_TRACE_DIR set (bench/setup.ts does both with BENCH_SETUP_TRACE), it records every garbage
 * collection (perf_hooks 'gc': kind and duration) and every moment its event loop ran late (a 5 ms timer more
 * than 2 ms late), with the CPU the process used meanwhile: a late loop that burned CPU was busy (JS, a
 * synchronous write, a GC), one that did not was waiting for a core or blocked in a system call. Written as
 * JSON lines (epoch ms) to <dir>/<program>-<command>-<pid>.jsonl, flushed every second and at exit.
 */
import { appendFileSync } from 'node:fs';
import { basename, join } from 'node:path';
import { type PerformanceEntry, PerformanceObserver, performance } from 'node:perf_hooks';

const dir = process.env['BENCH_STALL_TRACE_DIR'];
if (dir) {
  const file = join(dir, `${basename(process.argv[1] ?? 'node', '.js')}-${process.argv[2] ?? ''}-${process.pid}.jsonl`);
  const origin = performance.timeOrigin;
  const pending: string[] = [];
  const flush = (): void => {
    if (pending.length) appendFileSync(file, `${pending.splice(0).join('\n')}\n`);
  };
  new PerformanceObserver((list) => {
    for (const e of list.getEntries()) {
      const kind = (e as PerformanceEntry & { detail?: { kind?: number } }).detail?.kind;
      pending.push(JSON.stringify({ type: 'gc', at: origin + e.startTime, ms: e.duration, kind }));
    }
  }).observe({ entryTypes: ['gc'] });
  const TICK_MS = 5;
  let last = performance.now();
  let cpu = process.cpuUsage();
  setInterval(() => {
    const now = performance.now();
    const late = now - last - TICK_MS;
    if (late > 2) {
      const used = process.cpuUsage(cpu);
      pending.push(
        JSON.stringify({
          type: 'stall',
          at: origin + last + TICK_MS,
          ms: late,
          cpuMs: (used.user + used.system) / 1000,
          intervalMs: now - last,
        }),
      );
    }
    last = now;
    cpu = process.cpuUsage();
  }, TICK_MS).unref();
  setInterval(flush, 1000).unref();
  process.once('exit', flush);
}
