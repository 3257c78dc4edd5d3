/**
 * Scale (issue 13), `BENCH=scale make bench`: idle tunnels on one proxy process (default 10,000), a herd of
 * tunnels (default 500) returning to a proxy killed and restarted, 1,000 concurrent streams through one gateway
 * with per-stream fairness, and the proxy's memory after a flood of unauthenticated TLS handshakes.
 *
 * Every simulated gateway logs in from 127.0.0.1, so the per-source limit (max_unauthenticated_per_source)
 * and the tunnel quota per org are set explicitly here (said in each row's note); a real fleet comes from many
 * addresses and orgs. Sizes: BENCH_SCALE_TUNNELS, BENCH_SCALE_HERD, BENCH_SCALE_STREAMS, BENCH_SCALE_SECONDS,
 * BENCH_SCALE_HANDSHAKES; BENCH_SCALE_PARTS=idle,herd,fair,abuse picks parts.
 */
import { readFileSync } from 'node:fs';
import type { ProxyLimits } from '../lib/proxy/proxy.js';
import { freePort } from '../test/helpers/openssh.js';
import { World } from '../test/helpers/world.js';
import { abuseMemory } from './scale-abuse.js';
import { fairness } from './scale-fair.js';
import { type ProxyHost, startFleet, startProxyHost } from './scale-fleet.js';
import { sshdPerTunnel } from './scale-sshd.js';
import { type BenchRow, fmt } from './table.js';

const TUNNELS = Math.max(1, Number(process.env['BENCH_SCALE_TUNNELS'] ?? 10_000));
const HERD = Math.max(1, Number(process.env['BENCH_SCALE_HERD'] ?? 500));
/** sshd runs two processes per connection: the reference holds fewer tunnels and is given per tunnel. */
const SSHD_TUNNELS = Math.min(TUNNELS, 200);
const MiB = 2 ** 20;

/** Limits for a fleet that all comes from 127.0.0.1 and one org (a real one comes from many addresses). */
const fleetLimits = (n: number): Partial<ProxyLimits> => ({
  maxConnections: n + 1000,
  maxTunnelsPerOrg: n + 1000,
  maxUnauthenticatedPerSource: 512,
});

/** CPU seconds (user + system) a process has used so far, from /proc/<pid>/stat. */
function cpuSeconds(pid: number): number {
  const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
  const fields = stat.slice(stat.lastIndexOf(')') + 2).split(' ');
  return (Number(fields[11]) + Number(fields[12])) / 100; // utime, stime in clock ticks (USER_HZ 100)
}

async function until(cond: () => boolean, ms: number, every = 50): Promise<boolean> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) return false;
    await new Promise((r) => setTimeout(r, every));
  }
  return true;
}

async function idleTunnels(world: World): Promise<BenchRow[]> {
  const ports = { ssh: await freePort(), tls: await freePort() };
  const proxy = startProxyHost(world, ports, fleetLimits(TUNNELS), process.env['BENCH_SCALE_HEAP_SNAPSHOT']);
  await proxy.ready;
  await new Promise((r) => setTimeout(r, 500));
  const start = proxy.last!;
  const children = Math.max(1, Math.min(4, Math.ceil(TUNNELS / 2500)));
  const fleet = startFleet(world, ports.ssh, TUNNELS, children, 16);
  const t0 = performance.now();
  try {
    await until(() => (proxy.last?.tunnels ?? 0) >= TUNNELS, 20 * 60_000, 200);
    const seconds = (performance.now() - t0) / 1000;
    // Idle: let the logins' garbage go the way it would (no forced GC), keepalives running.
    await new Promise((r) => setTimeout(r, 15_000));
    const held = proxy.last!;
    if (process.env['BENCH_SCALE_HEAP_SNAPSHOT']) await proxy.snapshot();
    const per = (held.rss - start.rss) / held.tunnels / 1024;
    await fleet.stop();
    const sshd = await sshdPerTunnel(SSHD_TUNNELS);
    return [
      {
        area: 'scale',
        metric: `${held.tunnels} idle tunnels on one proxy process: RSS`,
        ours: `${fmt.mib(held.rss / MiB)} (${per.toFixed(1)} KiB/tunnel)`,
        reference:
          `OpenSSH sshd: ${(sshd.bytes / 1024).toFixed(0)} KiB/tunnel (PSS, ${sshd.held} held) = ` +
          `${fmt.mib((sshd.bytes * held.tunnels) / MiB)} for ${held.tunnels}`,
        note:
          `goal ≤ 1 GiB; ${fmt.mib(start.rss / MiB)} with none, heap ${fmt.mib(held.heapUsed / MiB)}, external ` +
          `${fmt.mib(held.external / MiB)}; all up in ${seconds.toFixed(0)} s; simulated gateways (TunnelPool, real certs) from ` +
          `127.0.0.1 in ${children} processes: max_connections and max_tunnels_per_org set to ${TUNNELS + 1000} for this run`,
      },
    ];
  } finally {
    await fleet.stop();
    await proxy.stop();
  }
}

/** A herd of tunnels returning to a proxy killed (SIGKILL), down 3 s, restarted on the same ports. */
async function herd(world: World): Promise<BenchRow[]> {
  const ports = { ssh: await freePort(), tls: await freePort() };
  const limits = fleetLimits(HERD);
  let proxy: ProxyHost = startProxyHost(world, ports, limits);
  await proxy.ready;
  const fleet = startFleet(world, ports.ssh, HERD, 2, 32);
  try {
    if (!(await until(() => (proxy.last?.tunnels ?? 0) >= HERD, 10 * 60_000, 100))) {
      throw new Error(`only ${proxy.last?.tunnels} of ${HERD} tunnels came up`);
    }
    await until(() => fleet.up >= HERD, 30_000);
    await new Promise((r) => setTimeout(r, 1000));
    await proxy.kill();
    await new Promise((r) => setTimeout(r, 3000));
    proxy = startProxyHost(world, ports, limits);
    await proxy.ready;
    const t0 = performance.now();
    const cpu0 = cpuSeconds(proxy.pid);
    const fleetCpu = () => fleet.pids.reduce((n, pid) => n + cpuSeconds(pid), 0);
    const fleetCpu0 = fleetCpu();
    let cpuPeak = 0;
    let last = { t: t0, cpu: cpu0 };
    const sampler = setInterval(() => {
      const now = { t: performance.now(), cpu: cpuSeconds(proxy.pid) };
      cpuPeak = Math.max(cpuPeak, ((now.cpu - last.cpu) / ((now.t - last.t) / 1000)) * 100);
      last = now;
    }, 500);
    const times: number[] = [];
    let seen = 0;
    const all = await until(
      () => {
        const n = proxy.last?.tunnels ?? 0;
        for (; seen < n; seen++) times.push(performance.now() - t0);
        return n >= HERD;
      },
      60_000,
      20,
    );
    clearInterval(sampler);
    const allMs = performance.now() - t0;
    const cpuAvg = ((cpuSeconds(proxy.pid) - cpu0) / (allMs / 1000)) * 100;
    const fleetCpuAvg = ((fleetCpu() - fleetCpu0) / (allMs / 1000)) * 100;
    const p50 = times[Math.floor(times.length / 2)] ?? Number.NaN;
    const stragglers = times.filter((t) => t > 10_000).length + (HERD - times.length);
    return [
      {
        area: 'scale',
        metric: `herd: ${HERD} tunnels back to a restarted proxy (killed, down 3 s)`,
        ours: all ? `all back in ${fmt.ms(allMs)} (half in ${fmt.ms(p50)})` : `${times.length} back after 60 s`,
        reference:
          `proxy CPU ${cpuAvg.toFixed(0)}% average, ${cpuPeak.toFixed(0)}% peak (0.5 s); at most ` +
          `${proxy.peakUnauthenticated} in handshake at once; ${stragglers} past 10 s; the simulated gateways used ` +
          `${fleetCpuAvg.toFixed(0)}% CPU meanwhile (both sides share the machine: read with its load)`,
        note:
          'from the restarted proxy ready; gateways: TunnelPool with the default backoff (unreachable: retry ≤ 1 s); ' +
          `all from 127.0.0.1: max_unauthenticated_per_source ${limits.maxUnauthenticatedPerSource}, max_tunnels_per_org ${limits.maxTunnelsPerOrg} set for this run`,
      },
    ];
  } finally {
    await fleet.stop();
    await proxy.stop();
  }
}

export async function benchScale(): Promise<BenchRow[]> {
  const parts = (process.env['BENCH_SCALE_PARTS'] ?? 'idle,herd,fair,abuse').split(',');
  const world = new World();
  const rows: BenchRow[] = [];
  const run = async (name: string, fn: () => Promise<BenchRow[]>) => {
    if (!parts.includes(name)) return;
    try {
      rows.push(...(await fn()));
    } catch (err) {
      rows.push({ area: 'scale', metric: `${name} (failed to run)`, ours: '-', note: String((err as Error).message) });
    }
  };
  await run('idle', () => idleTunnels(world));
  await run('herd', () => herd(world));
  await run('fair', () => fairness(world));
  await run('abuse', () => abuseMemory());
  return rows;
}

// Run directly: node build/bench/scale.js
if (import.meta.url === `file://${process.argv[1]}`) {
  const { renderTable } = await import('./table.js');
  console.log(renderTable(await benchScale()));
}
