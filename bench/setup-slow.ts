/**
 * The slowest streams of `BENCH=setup`, explained (BENCH_SETUP_TRACE=<dir>): each process of the run (proxy,
 * gateway, `infisical-connect`, the bench itself) records its garbage collections and late event loops
 * (bench/stall-trace.ts); for the slowest 5 % of a path's streams and, as the reference, its middle 50 %, this
 * says how often each kind of event overlapped the stream and for how long, beside the stream's own step
 * timings. Written to <dir>/slow.txt and to stderr; docs/performance.md "New-stream setup" has what it showed.
 */
import { readdirSync, readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

export interface TracedStream {
  /** Epoch ms at the stream's connect. */
  at: number;
  ms: number;
  /** Step timings (ms) and flags the client side knows, e.g. gatewayMs, warm. */
  steps: Record<string, number | boolean | undefined>;
}

interface TraceEvent {
  type: 'gc' | 'stall';
  at: number;
  ms: number;
  kind?: number;
  cpuMs?: number;
  intervalMs?: number;
}

const GC_KIND: Record<number, string> = { 1: 'scavenge', 2: 'mark-compact', 4: 'incremental', 8: 'weak-cb' };

function readTraces(dir: string): Map<string, TraceEvent[]> {
  const out = new Map<string, TraceEvent[]>();
  for (const f of readdirSync(dir).filter((n) => n.endsWith('.jsonl'))) {
    const name = f.replace(/-\d+\.jsonl$/, '');
    const events = readFileSync(join(dir, f), 'utf8')
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as TraceEvent);
    out.set(name, [...(out.get(name) ?? []), ...events]);
  }
  return out;
}

/** What of `events` overlapped [at, at + ms]: GC ms by kind, late-loop ms split into busy (CPU) and waiting. */
function overlap(events: TraceEvent[], s: TracedStream) {
  const end = s.at + s.ms;
  const r = { gcMs: 0, gcKinds: new Set<string>(), busyMs: 0, waitMs: 0 };
  for (const e of events) {
    const from = Math.max(e.at, s.at);
    const to = Math.min(e.at + e.ms, end);
    if (to <= from) continue;
    if (e.type === 'gc') {
      r.gcMs += to - from;
      r.gcKinds.add(GC_KIND[e.kind ?? 0] ?? String(e.kind));
    } else {
      // Share of the late interval the process spent on a CPU (its own work) vs off it (waiting for a core).
      const busy = Math.min(1, (e.cpuMs ?? 0) / (e.intervalMs ?? e.ms));
      r.busyMs += (to - from) * busy;
      r.waitMs += (to - from) * (1 - busy);
    }
  }
  return r;
}

const f1 = (n: number) => n.toFixed(1);

function describe(path: string, streams: TracedStream[], traces: Map<string, TraceEvent[]>): string {
  const sorted = [...streams].sort((a, b) => a.ms - b.ms);
  const slow = sorted.slice(Math.floor(sorted.length * 0.95));
  const middle = sorted.slice(Math.floor(sorted.length * 0.25), Math.floor(sorted.length * 0.75));
  const lines = [`${path}: ${streams.length} streams, slowest ${slow.length} (≥ ${f1(slow[0]?.ms ?? 0)} ms)`];
  for (const s of slow.reverse()) {
    const steps = Object.entries(s.steps)
      .filter(([, v]) => v !== undefined)
      .map(([k, v]) => `${k}=${typeof v === 'number' ? f1(v) : v}`)
      .join(' ');
    const per = [...traces]
      .map(([name, ev]) => {
        const o = overlap(ev, s);
        if (o.gcMs + o.busyMs + o.waitMs < 0.5) return '';
        return `${name}: gc ${f1(o.gcMs)}${o.gcKinds.size ? ` (${[...o.gcKinds].join('+')})` : ''}, late loop busy ${f1(o.busyMs)} waiting ${f1(o.waitMs)}`;
      })
      .filter(Boolean);
    lines.push(`  ${f1(s.ms)} ms  ${steps}\n    ${per.join('\n    ') || 'no GC or late loop in any process'}`);
  }
  const share = (set: TracedStream[], name: string, pick: (o: ReturnType<typeof overlap>) => number) => {
    const ev = traces.get(name) ?? [];
    const hit = set.filter((s) => pick(overlap(ev, s)) >= 0.5).length;
    const sum = set.reduce((a, s) => a + pick(overlap(ev, s)), 0);
    return `${hit}/${set.length} (${f1(sum / Math.max(1, set.length))} ms avg)`;
  };
  lines.push('  share of streams overlapping ≥0.5 ms of: GC · late loop, busy · late loop, waiting for a core');
  for (const name of traces.keys()) {
    for (const [label, set] of [
      ['slowest 5 %', slow],
      ['middle 50 %', middle],
    ] as const) {
      lines.push(
        `    ${name.padEnd(22)} ${label}: ${share(set, name, (o) => o.gcMs)} · ${share(set, name, (o) => o.busyMs)} · ${share(set, name, (o) => o.waitMs)}`,
      );
    }
  }
  return lines.join('\n');
}

export function reportSlowStreams(dir: string, paths: Record<string, TracedStream[]>): void {
  const traces = readTraces(dir);
  const text = `${Object.entries(paths)
    .map(([path, streams]) => describe(path, streams, traces))
    .join('\n\n')}\n`;
  writeFileSync(join(dir, 'slow.txt'), text);
  process.stderr.write(`\nslowest streams (BENCH_SETUP_TRACE=${dir}):\n${text}`);
}
