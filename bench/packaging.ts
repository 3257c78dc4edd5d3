/**
 * Packaging figures: the standalone CA binary (Node 24 SEA, one bundled CJS file with a V8 code cache) from
 * spawn to serving, beside the same daemon run from build/ by the Node that runs the tests (unbundled ESM).
 * "Serving" is the daemon's own `"msg":"serving"` log line, written right after READY=1. Needs `make package`
 * (dist/sea/infisical-ca); without it the row says so.
 */
import { spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdtempSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type BenchRow, fmt, percentile } from './table.js';

const ROOT = join(import.meta.dirname, '../..');
const SEA = join(ROOT, 'dist/sea/infisical-ca');
const RUNS = 7;

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const server = createServer();
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => {
      const { port } = server.address() as { port: number };
      server.close(() => resolve(port));
    });
  });
}

/** ms from spawn to the "serving" line; the daemon is then stopped with SIGTERM. */
async function timeToServing(argv: string[], stateDir: string): Promise<number> {
  const [api, ops] = [await freePort(), await freePort()];
  const started = process.hrtime.bigint();
  const child = spawn(
    argv[0]!,
    [
      ...argv.slice(1),
      'serve',
      '--state-dir',
      stateDir,
      '--listen',
      `127.0.0.1:${api}`,
      '--ops-listen',
      `127.0.0.1:${ops}`,
    ],
    { stdio: ['ignore', 'pipe', 'pipe'], env: { PATH: process.env['PATH'] ?? '/usr/bin:/bin' } },
  );
  const exited = new Promise((resolve) => child.once('exit', resolve));
  try {
    return await new Promise<number>((resolve, reject) => {
      let out = '';
      let err = '';
      child.stdout.on('data', (chunk: Buffer) => {
        out += chunk.toString('utf8');
        if (out.includes('"msg":"serving"')) resolve(Number(process.hrtime.bigint() - started) / 1e6);
      });
      child.stderr.on('data', (chunk: Buffer) => {
        err += chunk.toString('utf8');
      });
      child.once('exit', (code) => reject(new Error(`exited ${code} before serving: ${err.slice(-500)}`)));
    });
  } finally {
    child.kill('SIGTERM');
    await exited;
  }
}

async function measure(argv: string[]): Promise<{ p50: number; min: number }> {
  const dir = mkdtempSync(join(tmpdir(), 'bench-packaging-'));
  try {
    const init = spawnSync(argv[0]!, [...argv.slice(1), 'init', '--state-dir', dir, '--json'], { encoding: 'utf8' });
    if (init.status !== 0) throw new Error(`init failed: ${init.stderr}`);
    const times: number[] = [];
    for (let i = 0; i < RUNS; i++) times.push(await timeToServing(argv, dir));
    return { p50: percentile(times, 50), min: Math.min(...times) };
  } finally {
    rmSync(dir, { recursive: true, force: true });
  }
}

export async function benchPackaging(): Promise<BenchRow[]> {
  const metric = `infisical-ca spawn → serving (READY=1), p50 of ${RUNS}`;
  const node = await measure([process.execPath, join(ROOT, 'build/daemons/ca.js')]);
  const fromBuild = `${fmt.ms(node.p50)} (node ${process.version}, build/ unbundled)`;
  if (!existsSync(SEA)) {
    return [
      {
        area: 'packaging',
        metric,
        ours: '-',
        reference: fromBuild,
        note: 'standalone binary: run `make package` first',
      },
    ];
  }
  const sea = await measure([SEA]);
  return [
    {
      area: 'packaging',
      metric,
      ours: fmt.ms(sea.p50),
      reference: fromBuild,
      note: `standalone Node 24 binary; min ${fmt.ms(sea.min)} vs ${fmt.ms(node.min)}`,
    },
  ];
}
