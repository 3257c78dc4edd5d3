/**
 * The fuzz harness: runs one target's property for a time budget with fast-check and judges every input.
 *
 * The property every parser that takes outside input must keep: it returns (a value, or a refusal Verdict whose
 * code is one of ErrorCodes) or throws a GatewayError with such a code; nothing else escapes. Each input must
 * finish within `slowMs`, and no single buffer allocation during it may exceed MAX_ALLOC_BYTES (a length field
 * claiming 4 GiB must be refused, not allocated). A failing input is recorded and fuzzing goes on, so one run
 * reports how many inputs failed and how; the first few are kept, hex or JSON, for a regression test.
 */
import fc from 'fast-check';
import { ErrorCodes, GatewayError } from '../../lib/errors/codes.js';
import type { FuzzTarget, Seeds } from './target.js';

/** What the runner hands a worker thread (worker.ts). */
export interface WorkerJob {
  target: string;
  seconds: number;
  seed: number;
  slowMs: number;
  seeds: Seeds;
  /** [busy, generation, length] as Int32, then the input's description as UTF-8. */
  shared: SharedArrayBuffer;
}

export const HEADER_BYTES = 12;

/** Largest single Buffer allocation an input may cause: far above any input the targets see (≤ 64 KiB). */
export const MAX_ALLOC_BYTES = 16 * 1024 * 1024;

export interface FuzzFailure {
  kind: 'escaped' | 'bad-code' | 'property' | 'slow' | 'allocation' | 'hang' | 'crash';
  message: string;
  input: string;
}

export interface FuzzReport {
  target: string;
  runs: number;
  failures: number;
  /** The first failures (at most MAX_KEPT), with their inputs. */
  examples: FuzzFailure[];
  /** Slowest single input, ms. */
  slowestMs: number;
  seconds: number;
  seed: number;
}

const MAX_KEPT = 5;

/** Where the current input is published (for a watchdog that must name the input a hung worker was on). */
export interface InputProbe {
  begin(describe: () => string): void;
  end(): void;
}

class AllocationRefused extends Error {
  override name = 'AllocationRefused';
}

let guardArmed = false;

/** Wraps Buffer's allocators once per process; the wrappers only check while an input is being judged. */
function installAllocationGuard(): void {
  const B = Buffer as unknown as Record<string, (...args: unknown[]) => unknown>;
  if ((B as { __fuzzGuard?: boolean }).__fuzzGuard) return;
  (B as { __fuzzGuard?: boolean }).__fuzzGuard = true;
  for (const name of ['alloc', 'allocUnsafe', 'allocUnsafeSlow']) {
    const original = B[name]!.bind(Buffer);
    B[name] = (size: unknown, ...rest: unknown[]) => {
      if (guardArmed && typeof size === 'number' && size > MAX_ALLOC_BYTES) {
        throw new AllocationRefused(`Buffer.${name}(${size})`);
      }
      return original(size, ...rest);
    };
  }
  const concat = B['concat']!.bind(Buffer) as (list: readonly Uint8Array[], total?: number) => Buffer;
  B['concat'] = ((list: readonly Uint8Array[], total?: number) => {
    if (guardArmed) {
      const size = total ?? list.reduce((n, b) => n + b.length, 0);
      if (size > MAX_ALLOC_BYTES) throw new AllocationRefused(`Buffer.concat of ${size} bytes`);
    }
    return concat(list, total);
  }) as never;
}

/** The failure a returned value or thrown error means, if any. */
export function judgeOutcome(
  outcome: { threw: false; value: unknown } | { threw: true; error: unknown },
  allowError?: (err: unknown) => boolean,
): { kind: FuzzFailure['kind']; message: string } | undefined {
  if (outcome.threw) {
    const err = outcome.error;
    if (err instanceof AllocationRefused) return { kind: 'allocation', message: err.message };
    if (err instanceof GatewayError) {
      return Object.hasOwn(ErrorCodes, err.code)
        ? undefined
        : { kind: 'bad-code', message: `GatewayError with unknown code ${String(err.code)}` };
    }
    if (allowError?.(err)) return undefined;
    const e = err as Error;
    return { kind: 'escaped', message: `${e?.name ?? typeof err}: ${String(e?.message ?? err).slice(0, 300)}` };
  }
  const v = outcome.value as { ok?: unknown; code?: unknown; reason?: unknown } | null;
  if (v && typeof v === 'object' && v.ok === false) {
    if (typeof v.code !== 'string' || !Object.hasOwn(ErrorCodes, v.code)) {
      return { kind: 'bad-code', message: `refusal with unknown code ${JSON.stringify(v.code)}` };
    }
    if (typeof v.reason !== 'string') return { kind: 'bad-code', message: 'refusal without a reason' };
  }
  return undefined;
}

export interface RunOptions {
  seconds: number;
  seed: number;
  /** An input slower than this is a failure (default 2000 ms: generous for a shared 2-core machine). */
  slowMs?: number;
  probe?: InputProbe;
}

/** Fuzzes one target for `seconds`; never throws for a failing input (it is counted and kept). */
export function runTarget<T>(target: FuzzTarget<T>, seeds: Seeds, options: RunOptions): FuzzReport {
  installAllocationGuard();
  const slowMs = options.slowMs ?? 2000;
  const report: FuzzReport = {
    target: target.name,
    runs: 0,
    failures: 0,
    examples: [],
    slowestMs: 0,
    seconds: options.seconds,
    seed: options.seed,
  };
  const show = (input: T): string => (target.show ?? showInput)(input).slice(0, 20_000);
  const fail = (input: T, kind: FuzzFailure['kind'], message: string) => {
    report.failures++;
    if (report.examples.length < MAX_KEPT) report.examples.push({ kind, message, input: show(input) });
  };
  const property = fc.property(target.arbitrary(seeds), (input: T) => {
    report.runs++;
    options.probe?.begin(() => show(input));
    const started = performance.now();
    let outcome: { threw: false; value: unknown } | { threw: true; error: unknown };
    guardArmed = true;
    try {
      outcome = { threw: false, value: target.run(input, seeds) };
    } catch (error) {
      outcome = { threw: true, error };
    } finally {
      guardArmed = false;
    }
    const ms = performance.now() - started;
    options.probe?.end();
    report.slowestMs = Math.max(report.slowestMs, ms);
    const bad = judgeOutcome(outcome, target.allowError);
    if (bad) fail(input, bad.kind, bad.message);
    else if (ms > slowMs) fail(input, 'slow', `took ${Math.round(ms)} ms (budget ${slowMs} ms)`);
    else if (target.check) {
      let problem: string | undefined;
      try {
        problem = target.check(input, outcome, seeds);
      } catch (err) {
        problem = `check threw ${(err as Error).name}: ${(err as Error).message}`;
      }
      if (problem) fail(input, 'property', problem);
    }
    return true;
  });
  fc.check(property, {
    seed: options.seed,
    numRuns: 2 ** 31 - 1,
    interruptAfterTimeLimit: options.seconds * 1000,
    markInterruptAsFailure: false,
  });
  return report;
}

/** Buffers as hex, strings and objects as JSON (Buffers inside as {hex}). */
export function showInput(input: unknown): string {
  if (Buffer.isBuffer(input) || input instanceof Uint8Array) return `hex:${Buffer.from(input).toString('hex')}`;
  return JSON.stringify(input, (_k, v) => {
    if (v && typeof v === 'object' && v.type === 'Buffer' && Array.isArray(v.data)) {
      return { hex: Buffer.from(v.data).toString('hex') };
    }
    if (v instanceof Uint8Array) return { hex: Buffer.from(v).toString('hex') };
    if (typeof v === 'bigint') return `${v}n`;
    return v;
  });
}
