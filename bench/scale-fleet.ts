/**
 * Processes for the scale benchmarks: a proxy host (lib/proxy's ProxyServer alone in its own Node process, so
 * its RSS and CPU are its own) and fleets of simulated gateways (each a real TunnelPool from lib/gateway, the
 * gateway daemon's own supervisor with its backoff, holding one tunnel to that proxy) in child processes.
 * Certificates are real: the World's SSH client CA signs one user certificate per simulated gateway.
 *
 * Both speak line JSON on stdout (a sample every 100 ms) and stop when their stdin ends.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import type { KeyObject } from 'node:crypto';
import { once } from 'node:events';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { createInterface } from 'node:readline';
import { fileURLToPath } from 'node:url';
import { writeHeapSnapshot } from 'node:v8';
import { DEFAULT_BACKOFF } from '../lib/gateway/backoff.js';
import { TunnelPool } from '../lib/gateway/pool.js';
import { type ProxyCredentials, type ProxyLimits, ProxyServer } from '../lib/proxy/proxy.js';
import type { World } from '../test/helpers/world.js';
import { proxyCredentials } from '../test/proxy/harness.js';

const ROLE = 'INFISICAL_BENCH_SCALE_ROLE';
const SPEC = 'INFISICAL_BENCH_SCALE_SPEC';
const SELF = fileURLToPath(import.meta.url);

export interface ProxySample {
  tunnels: number;
  sshConnections: number;
  sshUnauthenticated: number;
  rss: number;
  heapUsed: number;
  external: number;
}

interface ProxySpec {
  credentials: Omit<ProxyCredentials, 'sshUserCaKeys' | 'tlsKey'> & { tlsKey: string; sshUserCaKeys: string[] };
  limits: Partial<ProxyLimits>;
  sshPort: number;
  tlsPort: number;
  heapSnapshot?: string;
}

interface FleetSpec {
  port: number;
  hostCa: string;
  gateways: { id: string; privateKey: string; certificate: string }[];
  /** Pools started at once (then one more as each is up); 0: all at once. */
  concurrency: number;
}

/** A child process of this file in `role`; its sample lines go to `onSample`. */
function child(role: string, spec: object, onSample: (s: Record<string, number>) => void) {
  const file = join(tmpdir(), `scale-bench-${process.pid}-${role}-${Math.random().toString(36).slice(2)}.json`);
  writeFileSync(file, JSON.stringify(spec), { mode: 0o600 });
  const proc = spawn(process.execPath, ['--max-old-space-size=4096', SELF], {
    env: { ...process.env, [ROLE]: role, [SPEC]: file },
    stdio: ['pipe', 'pipe', 'inherit'],
  });
  createInterface({ input: proc.stdout! }).on('line', (line) => {
    try {
      onSample(JSON.parse(line) as Record<string, number>);
    } catch {
      // not a sample
    }
  });
  return { proc, file };
}

async function stop(proc: ChildProcess, file: string): Promise<void> {
  if (proc.exitCode === null && proc.signalCode === null) {
    proc.stdin?.end();
    await Promise.race([once(proc, 'exit'), new Promise((r) => setTimeout(r, 10_000))]);
    if (proc.exitCode === null && proc.signalCode === null) proc.kill('SIGKILL');
  }
  rmSync(file, { force: true });
}

export interface ProxyHost {
  readonly pid: number;
  readonly last: ProxySample | undefined;
  /** The largest sshUnauthenticated seen since the last reset. */
  peakUnauthenticated: number;
  ready: Promise<void>;
  /** Writes a heap snapshot to the path given at start (investigation only). */
  snapshot(): Promise<void>;
  /** SIGKILL, as a crash. */
  kill(): Promise<void>;
  stop(): Promise<void>;
}

/** Starts a proxy host on fixed ports (a restart reuses them) with explicit limits. */
export function startProxyHost(
  world: World,
  ports: { ssh: number; tls: number },
  limits: Partial<ProxyLimits>,
  heapSnapshot?: string,
): ProxyHost {
  const c = proxyCredentials(world, 'instance');
  const spec: ProxySpec = {
    credentials: {
      ...c,
      tlsKey: (c.tlsKey as KeyObject).export({ type: 'pkcs8', format: 'pem' }).toString(),
      sshHostCertificate: Buffer.isBuffer(c.sshHostCertificate)
        ? c.sshHostCertificate.toString('base64')
        : c.sshHostCertificate,
      sshUserCaKeys: c.sshUserCaKeys.map((k) => k.toString('base64')),
    },
    limits,
    sshPort: ports.ssh,
    tlsPort: ports.tls,
    ...(heapSnapshot ? { heapSnapshot } : {}),
  };
  let resolveReady: () => void = () => {};
  let snapshotDone: () => void = () => {};
  const host: ProxyHost = {
    pid: 0,
    last: undefined,
    peakUnauthenticated: 0,
    ready: new Promise((r) => {
      resolveReady = r;
    }),
    snapshot: async () => {
      proc.stdin?.write('snapshot\n');
      await new Promise<void>((r) => {
        snapshotDone = r;
      });
    },
    kill: async () => {
      proc.kill('SIGKILL');
      if (proc.exitCode === null && proc.signalCode === null) await once(proc, 'exit');
      rmSync(file, { force: true });
    },
    stop: () => stop(proc, file),
  };
  const { proc, file } = child('proxy', spec, (s) => {
    if (s['ready']) resolveReady();
    if (s['snapshot']) snapshotDone();
    (host as { last: ProxySample }).last = s as unknown as ProxySample;
    host.peakUnauthenticated = Math.max(host.peakUnauthenticated, s['sshUnauthenticated'] ?? 0);
  });
  (host as { pid: number }).pid = proc.pid!;
  return host;
}

export interface Fleet {
  /** Tunnels up now (sum over the children). */
  readonly up: number;
  /** The children's process ids. */
  readonly pids: number[];
  stop(): Promise<void>;
}

/** `n` simulated gateways (gw-0 … gw-n-1 of org-a) in `children` processes, each a TunnelPool to `sshPort`. */
export function startFleet(world: World, sshPort: number, n: number, children: number, concurrency: number): Fleet {
  const hostCa = world.instance.sshServer.publicBlob.toString('base64');
  const ups: number[] = Array.from({ length: children }, () => 0);
  const procs = Array.from({ length: children }, (_, c) => {
    const gateways = [];
    for (let i = c; i < n; i += children) {
      const ssh = world.gatewaySsh({ orgId: 'org-a', gatewayId: `gw-${i}`, scope: 'instance' });
      gateways.push({ id: `gw-${i}`, privateKey: ssh.privateKey, certificate: ssh.certificateLine });
    }
    const spec: FleetSpec = { port: sshPort, hostCa, gateways, concurrency };
    return child('fleet', spec, (s) => {
      ups[c] = s['up'] ?? 0;
    });
  });
  return {
    get up() {
      return ups.reduce((a, b) => a + b, 0);
    },
    pids: procs.map((p) => p.proc.pid!),
    stop: async () => {
      await Promise.all(procs.map((p) => stop(p.proc, p.file)));
    },
  };
}

/** Child: one ProxyServer, a sample line every 100 ms. */
async function runProxy(spec: ProxySpec): Promise<void> {
  const server = await ProxyServer.start({
    credentials: {
      ...spec.credentials,
      sshUserCaKeys: spec.credentials.sshUserCaKeys.map((k) => Buffer.from(k, 'base64')),
      sshHostCertificate: /\s/.test(String(spec.credentials.sshHostCertificate))
        ? spec.credentials.sshHostCertificate
        : Buffer.from(String(spec.credentials.sshHostCertificate), 'base64'),
    },
    limits: spec.limits,
    ssh: { host: '127.0.0.1', port: spec.sshPort },
    tls: { host: '127.0.0.1', port: spec.tlsPort },
  });
  const sample = (extra: object = {}) => {
    const s = server.stats();
    const m = process.memoryUsage();
    const line: ProxySample = {
      tunnels: s.tunnels,
      sshConnections: s.sshConnections,
      sshUnauthenticated: s.sshUnauthenticated,
      rss: m.rss,
      heapUsed: m.heapUsed,
      external: m.external,
    };
    process.stdout.write(`${JSON.stringify({ ...line, ...extra })}\n`);
  };
  sample({ ready: 1 });
  const timer = setInterval(sample, 100);
  process.stdin.on('data', (d: Buffer) => {
    if (!d.toString().includes('snapshot')) return;
    if (spec.heapSnapshot) writeHeapSnapshot(spec.heapSnapshot);
    sample({ snapshot: 1 });
  });
  process.stdin.resume();
  await once(process.stdin, 'end');
  clearInterval(timer);
  await server.stop();
  process.exit(0);
}

/** Child: one TunnelPool per gateway, `concurrency` starting at once; a line {up} every 100 ms. */
async function runFleet(spec: FleetSpec): Promise<void> {
  const hostCa = Buffer.from(spec.hostCa, 'base64');
  const proxy = {
    proxyId: 'p1',
    scope: 'instance' as const,
    hostname: '127.0.0.1',
    sshAddress: `127.0.0.1:${spec.port}`,
  };
  const pools: TunnelPool[] = [];
  const timer = setInterval(() => {
    let up = 0;
    for (const p of pools) up += p.status().up;
    process.stdout.write(`${JSON.stringify({ up })}\n`);
  }, 100);
  const queue = [...spec.gateways];
  const startOne = (g: FleetSpec['gateways'][number]): TunnelPool => {
    const pool = new TunnelPool({
      gatewayId: g.id,
      proxies: [proxy],
      credentialsFor: () => ({ privateKey: g.privateKey, certificate: g.certificate, trustedHostCaKeys: [hostCa] }),
      onChannel: (ch) => ch.destroy(),
      backoff: DEFAULT_BACKOFF,
    });
    pool.start();
    pools.push(pool);
    return pool;
  };
  const width = spec.concurrency > 0 ? spec.concurrency : queue.length;
  await Promise.all(
    Array.from({ length: width }, async () => {
      for (let g = queue.shift(); g; g = queue.shift()) {
        await startOne(g)
          .whenUp(300_000)
          .catch(() => {});
      }
    }),
  );
  process.stdin.resume();
  await once(process.stdin, 'end');
  clearInterval(timer);
  await Promise.all(pools.map((p) => p.close()));
  process.exit(0);
}

const role = process.env[ROLE];
if (role && process.env[SPEC]) {
  const spec = JSON.parse(readFileSync(process.env[SPEC], 'utf8')) as unknown;
  if (role === 'proxy') {
    // The proxy daemon's V8 settings (daemons/proxy.ts loads them first), so that its memory is the daemon's.
    await import('../lib/runtime/v8-flags.js');
    await runProxy(spec as ProxySpec);
  }
  if (role === 'fleet') await runFleet(spec as FleetSpec);
}
