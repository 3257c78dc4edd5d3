/**
 * `make bench`: runs every benchmark area and prints one table, our figures beside references measured in the
 * same run on the same machine. Narrow with `BENCH=pki,sshcert make bench`.
 * Benchmarks report; they never fail on timing.
 */
import { cpus, totalmem } from 'node:os';
import { type BenchRow, renderTable } from './table.js';

type Area = { name: string; module: string; fn: string };
const AREAS: Area[] = [
  { name: 'pki', module: './pki.js', fn: 'benchPki' },
  { name: 'sshcert', module: './sshcert.js', fn: 'benchSshcert' },
  { name: 'ssh', module: './ssh.js', fn: 'benchSsh' },
  { name: 'ca', module: './ca.js', fn: 'benchCa' },
  { name: 'castore', module: './ca-store.js', fn: 'benchCaStore' },
  { name: 'proxy', module: './proxy.js', fn: 'benchProxy' },
  { name: 'gateway', module: './gateway.js', fn: 'benchGateway' },
  { name: 'client', module: './client.js', fn: 'benchClient' },
  { name: 'datapath', module: './datapath.js', fn: 'benchDatapath' },
  { name: 'lifecycle', module: './lifecycle.js', fn: 'benchLifecycle' },
  { name: 'outage', module: './outage.js', fn: 'benchOutage' },
  { name: 'setup', module: './setup.js', fn: 'benchSetup' },
  { name: 'rotation', module: './rotation.js', fn: 'benchRotation' },
  { name: 'packaging', module: './packaging.js', fn: 'benchPackaging' },
  { name: 'scale', module: './scale.js', fn: 'benchScale' },
];

async function main(): Promise<void> {
  const only = process.env['BENCH']?.split(',').filter(Boolean);
  const rows: BenchRow[] = [];
  for (const area of AREAS) {
    if (only && !only.includes(area.name)) continue;
    const started = Date.now();
    process.stderr.write(`bench: ${area.name}…\n`);
    try {
      const mod = (await import(area.module)) as Record<string, () => Promise<BenchRow[]>>;
      const fn = mod[area.fn];
      if (typeof fn !== 'function') throw new Error(`${area.module} has no ${area.fn}()`);
      rows.push(...(await fn()));
    } catch (err) {
      rows.push({ area: area.name, metric: '(failed to run)', ours: '-', note: String((err as Error).message ?? err) });
    }
    process.stderr.write(`bench: ${area.name} done in ${((Date.now() - started) / 1000).toFixed(1)} s\n`);
  }
  const cpu = cpus()[0]?.model ?? 'unknown cpu';
  console.log(
    `\nmachine: ${cpus().length} × ${cpu}, ${(totalmem() / 2 ** 30).toFixed(0)} GiB, node ${process.version}\n`,
  );
  console.log(renderTable(rows));
}

await main();
