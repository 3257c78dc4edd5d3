/**
 * Memory under abuse (issue 13): N unauthenticated TLS handshakes (no client certificate) against the platform
 * listener of a real `infisical-proxy serve` process (test/lifecycle deployment: CA + one proxy), 64 at a time,
 * then the proxy's RSS sampled from /proc every second for 60 s with no forced garbage collection.
 * Reference, same run, same flood: `openssl s_server` (one process, the machine's OpenSSL) with a fresh key.
 * All from 127.0.0.1: the flood stays under the default max_unauthenticated_per_source (512) by keeping 64 in
 * flight, so no handshake is refused at accept.
 */
import { type ChildProcess, execFileSync, spawn } from 'node:child_process';
import { mkdtempSync, readFileSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { RELAY_ALPN } from '../lib/protocol/relay.js';
import { freePort } from '../test/helpers/openssh.js';
import { unauthenticatedHandshakes } from '../test/lifecycle/abuse.js';
import { startDeployment } from '../test/lifecycle/deploy.js';
import { type BenchRow, fmt } from './table.js';

const HANDSHAKES = Math.max(1, Number(process.env['BENCH_SCALE_HANDSHAKES'] ?? 20_000));
const SETTLE_S = Math.max(1, Number(process.env['BENCH_SCALE_SETTLE_S'] ?? 60));
const IN_FLIGHT = Math.max(1, Number(process.env['BENCH_SCALE_IN_FLIGHT'] ?? 64));

/** Resident set of a process, bytes (VmRSS of /proc/<pid>/status). */
export function rssOf(pid: number): number {
  const m = /^VmRSS:\s+(\d+) kB/m.exec(readFileSync(`/proc/${pid}/status`, 'utf8'));
  return m ? Number(m[1]) * 1024 : Number.NaN;
}

export interface RssCurve {
  startMiB: number;
  peakMiB: number;
  /** Seconds after the last handshake until RSS was within 50 MiB of the start (NaN: never within SETTLE_S). */
  backWithinS: number;
  endMiB: number;
  secured: number;
  floodS: number;
}

/** Floods `port`, samples `pid`'s RSS during the flood and for SETTLE_S after it. */
async function measure(pid: number, port: number): Promise<RssCurve> {
  const MiB = 2 ** 20;
  const start = rssOf(pid);
  let peak = start;
  const sampler = setInterval(() => {
    peak = Math.max(peak, rssOf(pid));
  }, 250);
  const t0 = performance.now();
  const secured = await unauthenticatedHandshakes(port, HANDSHAKES, IN_FLIGHT);
  const floodS = (performance.now() - t0) / 1000;
  let backWithinS = Number.NaN;
  const t1 = performance.now();
  let now = rssOf(pid);
  while ((performance.now() - t1) / 1000 < SETTLE_S) {
    now = rssOf(pid);
    peak = Math.max(peak, now);
    if (Number.isNaN(backWithinS) && now - start <= 50 * MiB) backWithinS = (performance.now() - t1) / 1000;
    await new Promise((r) => setTimeout(r, 1000));
  }
  clearInterval(sampler);
  return { startMiB: start / MiB, peakMiB: peak / MiB, backWithinS, endMiB: now / MiB, secured, floodS };
}

/** openssl s_server with a fresh self-signed key, asking for (and requiring) a client certificate. */
async function openSslServer(): Promise<{ child: ChildProcess; port: number; close(): void }> {
  const dir = mkdtempSync(join(tmpdir(), 'scale-openssl-'));
  const req = '-x509 -newkey rsa:2048 -nodes -subj /CN=localhost -days 1'.split(' ');
  execFileSync('openssl', ['req', ...req, '-keyout', join(dir, 'key.pem'), '-out', join(dir, 'cert.pem')], {
    stdio: 'ignore',
  });
  const port = await freePort();
  const child = spawn(
    'openssl',
    [
      's_server',
      '-quiet',
      '-accept',
      String(port),
      '-key',
      join(dir, 'key.pem'),
      '-cert',
      join(dir, 'cert.pem'),
      '-Verify',
      '1',
      '-CAfile',
      join(dir, 'cert.pem'),
      '-alpn',
      RELAY_ALPN,
    ],
    { stdio: ['ignore', 'ignore', 'ignore'] },
  );
  await new Promise((r) => setTimeout(r, 500));
  return {
    child,
    port,
    close: () => {
      child.kill('SIGKILL');
      rmSync(dir, { recursive: true, force: true });
    },
  };
}

const describe = (c: RssCurve) =>
  `${fmt.mib(c.startMiB)} → peak ${fmt.mib(c.peakMiB)} → ${fmt.mib(c.endMiB)} after ${SETTLE_S} s; ` +
  (Number.isNaN(c.backWithinS) ? 'never within 50 MiB of start' : `within 50 MiB after ${c.backWithinS.toFixed(0)} s`);

export async function abuseMemory(): Promise<BenchRow[]> {
  const d = await startDeployment({ proxies: 1, gateways: 0, waitTunnels: false });
  let ours: RssCurve;
  try {
    const proxy = d.proxies[0]!;
    ours = await measure(proxy.pid!, proxy.tlsPort);
  } finally {
    await d.close();
  }
  const ref = await openSslServer();
  let reference: RssCurve;
  try {
    reference = await measure(ref.child.pid!, ref.port);
  } finally {
    ref.close();
  }
  return [
    {
      area: 'scale',
      metric: `proxy RSS, ${HANDSHAKES} unauthenticated TLS handshakes (${IN_FLIGHT} in flight)`,
      ours: describe(ours),
      reference: `openssl s_server: ${describe(reference)}`,
      note:
        `infisical-proxy serve process; ${ours.secured} handshakes completed in ${ours.floodS.toFixed(0)} s ` +
        `(s_server ${reference.secured} in ${reference.floodS.toFixed(0)} s); no forced GC; goal: within 50 MiB in 60 s`,
    },
  ];
}

// Run directly: node build/bench/scale-abuse.js
if (import.meta.url === `file://${process.argv[1]}`) {
  const { renderTable } = await import('./table.js');
  console.log(renderTable(await abuseMemory()));
}
