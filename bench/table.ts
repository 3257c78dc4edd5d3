/** One row of `make bench`: our figure beside a reference measured in the same run on the same machine. */
export type BenchRow = { area: string; metric: string; ours: string; reference?: string; note?: string };

/** Renders rows as an aligned plain-text table. */
export function renderTable(rows: BenchRow[]): string {
  const header: BenchRow = { area: 'area', metric: 'metric', ours: 'ours', reference: 'reference', note: 'note' };
  const cells = [header, ...rows].map((r) => [r.area, r.metric, r.ours, r.reference ?? '', r.note ?? '']);
  const widths = cells[0]!.map((_, i) => Math.max(...cells.map((c) => c[i]!.length)));
  const line = (c: string[]) =>
    c
      .map((v, i) => v.padEnd(widths[i]!))
      .join(' | ')
      .trimEnd();
  const sep = widths.map((w) => '-'.repeat(w)).join('-|-');
  return [line(cells[0]!), sep, ...cells.slice(1).map(line)].join('\n');
}

/** Runs `fn` repeatedly for about `ms` milliseconds; returns operations per second. */
export async function rate(fn: () => unknown | Promise<unknown>, ms = 1000): Promise<number> {
  const start = process.hrtime.bigint();
  const deadline = start + BigInt(ms) * 1_000_000n;
  let n = 0;
  let now = start;
  while (now < deadline) {
    await fn();
    n++;
    now = process.hrtime.bigint();
  }
  return n / (Number(now - start) / 1e9);
}

/** Percentile (0..100) of a list of numbers. */
export function percentile(values: number[], p: number): number {
  if (values.length === 0) return Number.NaN;
  const sorted = [...values].sort((a, b) => a - b);
  const idx = Math.min(sorted.length - 1, Math.max(0, Math.ceil((p / 100) * sorted.length) - 1));
  return sorted[idx]!;
}

export const fmt = {
  perSec: (n: number) => `${n >= 100 ? Math.round(n) : n.toFixed(1)}/s`,
  ms: (n: number) => `${n >= 100 ? Math.round(n) : n.toFixed(2)} ms`,
  mibs: (n: number) => `${n.toFixed(0)} MiB/s`,
  mib: (n: number) => `${n.toFixed(1)} MiB`,
};
