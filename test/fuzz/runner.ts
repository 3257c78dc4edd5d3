/**
 * Runs fuzz targets one after another, each in its own worker thread with a memory cap, and watches them: a
 * worker stuck on one input past `hangMs` is stopped and the input reported as a hang; a worker that dies (out
 * of memory, a native crash) is reported as a crash with the input it was on.
 */
import { Worker } from 'node:worker_threads';
import { type FuzzReport, HEADER_BYTES, type WorkerJob } from './harness.js';
import { makeSeeds } from './seeds.js';
import type { Seeds } from './target.js';
import { TARGETS } from './targets/index.js';

export interface FuzzRunOptions {
  /** Seconds for each target. */
  secondsEach: number;
  seed: number;
  /** Only these targets (default all). */
  only?: readonly string[];
  slowMs?: number;
  /** A single input running this long is a hang (default 20 s). */
  hangMs?: number;
  /** Heap cap of each worker (default 768 MiB): growing past it is an unbounded allocation. */
  heapMb?: number;
  seeds?: Seeds;
  onReport?: (r: FuzzReport) => void;
}

const SHARED_BYTES = HEADER_BYTES + 64 * 1024;

export function targetNames(only?: readonly string[]): string[] {
  const all = TARGETS.map((t) => t.name);
  if (!only || only.length === 0) return all;
  for (const n of only) if (!all.includes(n)) throw new Error(`no fuzz target ${n}; known: ${all.join(', ')}`);
  return [...only];
}

export async function fuzz(options: FuzzRunOptions): Promise<FuzzReport[]> {
  const seeds = options.seeds ?? makeSeeds();
  const reports: FuzzReport[] = [];
  for (const name of targetNames(options.only)) {
    const report = await runOne(name, seeds, options);
    options.onReport?.(report);
    reports.push(report);
  }
  return reports;
}

function runOne(name: string, seeds: Seeds, o: FuzzRunOptions): Promise<FuzzReport> {
  const shared = new SharedArrayBuffer(SHARED_BYTES);
  const header = new Int32Array(shared, 0, 3);
  const job: WorkerJob = {
    target: name,
    seconds: o.secondsEach,
    seed: o.seed,
    slowMs: o.slowMs ?? 2000,
    seeds,
    shared,
  };
  const worker = new Worker(new URL('./worker.js', import.meta.url), {
    workerData: job,
    resourceLimits: { maxOldGenerationSizeMb: o.heapMb ?? 768 },
  });
  const hangMs = o.hangMs ?? 20_000;
  const current = () => Buffer.from(shared, HEADER_BYTES, Atomics.load(header, 2)).toString('utf8');
  const failed = (kind: 'hang' | 'crash', message: string): FuzzReport => ({
    target: name,
    runs: Atomics.load(header, 1),
    failures: 1,
    examples: [{ kind, message, input: current() }],
    slowestMs: 0,
    seconds: o.secondsEach,
    seed: o.seed,
  });
  return new Promise((resolve) => {
    let settled = false;
    let seen = { generation: -1, since: Date.now() };
    const finish = (r: FuzzReport) => {
      if (settled) return;
      settled = true;
      clearInterval(watch);
      void worker.terminate();
      resolve(r);
    };
    const watch = setInterval(() => {
      const generation = Atomics.load(header, 1);
      if (generation !== seen.generation) seen = { generation, since: Date.now() };
      else if (Atomics.load(header, 0) === 1 && Date.now() - seen.since > hangMs) {
        finish(failed('hang', `one input ran for more than ${hangMs} ms`));
      }
    }, 250);
    worker.once('message', (r: FuzzReport) => finish(r));
    worker.once('error', (err) => finish(failed('crash', `${err.name}: ${err.message}`)));
    worker.once('exit', (code) => finish(failed('crash', `worker exited with ${code} before reporting`)));
  });
}

/** One line per target: runs, failures, slowest input. */
export function formatReport(r: FuzzReport): string {
  const head = `${r.target.padEnd(22)} runs ${String(r.runs).padStart(8)}  failures ${String(r.failures).padStart(5)}  slowest ${r.slowestMs.toFixed(1).padStart(7)} ms`;
  const lines = r.examples.map((e) => `    ${e.kind}: ${e.message}\n      input ${e.input.slice(0, 600)}`);
  return [head, ...lines].join('\n');
}
