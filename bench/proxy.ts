/**
 * Proxy: bytes through one stream (platform → proxy → SSH tunnel → gateway), new streams per second, the
 * memory one idle tunnel costs the proxy with 1,000 tunnels held by simulated gateways (ssh2 clients in a
 * child process, so the proxy process measures only itself), and a reconnect storm: 500 gateways from one
 * address logging in all at once against the default limits (max_unauthenticated_per_source, handshake_timeout),
 * as after a proxy restart behind a NAT. Everything on 127.0.0.1; bounded in time.
 *
 * References, measured in the same run: the same bytes over a direct TLS connection on loopback (what the
 * platform would see with no proxy and no tunnel), and stream setup against a plain TLS server.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import tls from 'node:tls';
import { fileURLToPath } from 'node:url';
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';
import { DEFAULT_LIMITS, type ProxyLimits, type ProxyServer } from '../lib/proxy/proxy.js';
import { connectWithCertificate } from '../lib/sshwire/client.js';
import type { Client } from '../lib/sshwire/ssh2.js';
import { World } from '../test/helpers/world.js';
import { connectGateway, dialProxy, startProxy } from '../test/proxy/harness.js';
import { type BenchRow, fmt } from './table.js';

const THROUGHPUT_BYTES = 256 * 1024 * 1024;
const TUNNELS = 1000;
const STORM = 500;
const CHILD_FLAG = 'INFISICAL_BENCH_PROXY_GATEWAYS';

/** Sends `bytes` into `socket` and resolves when the far end has counted them all (reported by `received`). */
async function push(socket: tls.TLSSocket, bytes: number, received: () => number): Promise<number> {
  const chunk = Buffer.alloc(256 * 1024, 0x42);
  const t0 = performance.now();
  for (let sent = 0; sent < bytes; sent += chunk.length) {
    if (!socket.write(chunk)) await once(socket, 'drain');
  }
  while (received() < bytes) await new Promise((r) => setImmediate(r));
  return bytes / (1024 * 1024) / ((performance.now() - t0) / 1000);
}

async function throughput(world: World, proxy: ProxyServer): Promise<BenchRow[]> {
  let got = 0;
  const gw = await connectGateway(world, proxy, {
    orgId: 'org-a',
    gatewayId: 'gw-bench',
    scope: 'instance',
    onStream: (ch) => {
      ch.on('error', () => {});
      ch.on('data', (d: Buffer) => {
        got += d.length;
      });
    },
  });
  const outer = world.platformOuter({ orgId: 'org-a', gatewayId: 'gw-bench', scope: 'instance' });
  const { socket } = await dialProxy(world, proxy, outer);
  const ours = await push(socket, THROUGHPUT_BYTES, () => got);
  socket.destroy();

  // Reference: the same TLS client straight into a TLS sink on loopback.
  const creds = world.proxyTls({ scope: 'instance', proxyId: 'ref' });
  let direct = 0;
  const server = tls.createServer({ key: creds.keyPem, cert: creds.certPem, minVersion: 'TLSv1.3' }, (s) =>
    s.on('data', (d: Buffer) => {
      direct += d.length;
    }),
  );
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const ref = tls.connect({
    port: (server.address() as { port: number }).port,
    host: '127.0.0.1',
    ca: creds.caPem,
    servername: 'localhost',
  });
  await once(ref, 'secureConnect');
  const reference = await push(ref, THROUGHPUT_BYTES, () => direct);
  ref.destroy();
  server.close();

  // New streams: dial, status line, close — one at a time, then 16 at a time.
  const t0 = performance.now();
  let n = 0;
  while (performance.now() - t0 < 2000) {
    const d = await dialProxy(world, proxy, outer);
    d.socket.destroy();
    n++;
  }
  const sequential = n / ((performance.now() - t0) / 1000);
  const t1 = performance.now();
  let m = 0;
  await Promise.all(
    Array.from({ length: 16 }, async () => {
      while (performance.now() - t1 < 2000) {
        const d = await dialProxy(world, proxy, outer);
        d.socket.destroy();
        m++;
      }
    }),
  );
  const concurrent = m / ((performance.now() - t1) / 1000);
  gw.close();
  return [
    {
      area: 'proxy',
      metric: 'one stream, platform → gateway',
      ours: fmt.mibs(ours),
      reference: `${fmt.mibs(reference)} direct TLS`,
      note: `${THROUGHPUT_BYTES / 2 ** 20} MiB, TLS 1.3 + SSH channel`,
    },
    {
      area: 'proxy',
      metric: 'new streams (mTLS + route + channel)',
      ours: fmt.perSec(sequential),
      reference: `${fmt.perSec(concurrent)} with 16 in flight`,
      note: 'one at a time',
    },
  ];
}

function gc(): () => void {
  setFlagsFromString('--expose-gc');
  return runInNewContext('gc') as () => void;
}

/** Simulated gateways in a child process, `concurrency` logging in at once; stdin's end stops them. */
function spawnGateways(world: World, proxy: ProxyServer, n: number, concurrency: number) {
  const file = join(tmpdir(), `proxy-bench-${process.pid}-${n}.json`);
  const gateways = Array.from({ length: n }, (_, i) => {
    const ssh = world.gatewaySsh({ orgId: 'org-a', gatewayId: `gw-${i}`, scope: 'instance' });
    return { id: `gw-${i}`, privateKey: ssh.privateKey, certificate: ssh.certificateLine };
  });
  writeFileSync(
    file,
    JSON.stringify({
      port: proxy.sshPort,
      hostCa: world.instance.sshServer.publicBlob.toString('base64'),
      gateways,
      concurrency,
    }),
    { mode: 0o600 },
  );
  return {
    file,
    start: () =>
      spawn(process.execPath, [fileURLToPath(import.meta.url)], {
        env: { ...process.env, [CHILD_FLAG]: file },
        stdio: ['pipe', 'pipe', 'inherit'],
      }),
  };
}

/** 500 gateways from 127.0.0.1 at once against the default limits: how long until all hold a tunnel, and refusals. */
export async function reconnectStorm(world: World, limits: Partial<ProxyLimits> = {}): Promise<BenchRow[]> {
  const proxy = await startProxy(world, { scope: 'instance', limits });
  const perSource = limits.maxUnauthenticatedPerSource ?? DEFAULT_LIMITS.maxUnauthenticatedPerSource;
  const { file, start } = spawnGateways(world, proxy, STORM, STORM);
  const child = start();
  let t0 = 0;
  let peak = 0;
  try {
    const deadline = Date.now() + 120_000;
    while (proxy.table.size < STORM && Date.now() < deadline && child.exitCode === null) {
      await new Promise((r) => setTimeout(r, 10));
      const { sshConnections, sshUnauthenticated } = proxy.stats();
      if (!t0 && sshConnections > 0) t0 = performance.now(); // the clock starts at the first login, not the spawn
      peak = Math.max(peak, sshUnauthenticated);
    }
    const seconds = (performance.now() - t0) / 1000;
    const refused = [...proxy.refusals()].filter(([k]) => /^ssh:E_/.test(k)).reduce((n, [, v]) => n + v, 0);
    return [
      {
        area: 'proxy',
        metric: `reconnect storm: ${STORM} gateways, one address, all at once`,
        ours: `${proxy.table.size} up in ${seconds.toFixed(1)} s`,
        reference: `${refused} refused, at most ${peak} in handshake at once (max_unauthenticated_per_source ${perSource}, handshake_timeout ${DEFAULT_LIMITS.handshakeTimeoutMs / 1000} s)`,
        note: 'from the first login; proxy and gateways share the machine',
      },
    ];
  } finally {
    child.stdin?.end();
    await Promise.race([once(child, 'exit'), new Promise((r) => setTimeout(r, 5000))]);
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(file, { force: true });
    await proxy.stop();
  }
}

async function idleTunnels(world: World, proxy: ProxyServer): Promise<BenchRow[]> {
  const { file, start } = spawnGateways(world, proxy, TUNNELS, 32);
  const collect = gc();
  collect();
  const before = process.memoryUsage();
  const child = start();
  const t0 = performance.now();
  try {
    const deadline = Date.now() + 120_000;
    while (proxy.table.size < TUNNELS && Date.now() < deadline && child.exitCode === null) {
      await new Promise((r) => setTimeout(r, 50));
    }
    const held = proxy.table.size;
    const seconds = (performance.now() - t0) / 1000;
    await new Promise((r) => setTimeout(r, 500));
    collect();
    const after = process.memoryUsage();
    const per = (a: number, b: number) => (held ? (a - b) / held / 1024 : Number.NaN);
    return [
      {
        area: 'proxy',
        metric: `memory per idle tunnel (${held} held)`,
        ours: `${per(after.rss, before.rss).toFixed(1)} KiB rss`,
        reference: `${per(after.heapUsed + after.external, before.heapUsed + before.external).toFixed(1)} KiB heap+ext`,
        note: `tunnels up in ${seconds.toFixed(1)} s (${(held / seconds).toFixed(0)}/s)`,
      },
    ];
  } finally {
    child.stdin?.end();
    await Promise.race([once(child, 'exit'), new Promise((r) => setTimeout(r, 5000))]);
    if (child.exitCode === null) child.kill('SIGKILL');
    rmSync(file, { force: true });
  }
}

export async function benchProxy(): Promise<BenchRow[]> {
  const world = new World();
  const proxy = await startProxy(world, { scope: 'instance', limits: { maxConnections: 100_000 } });
  try {
    return [
      ...(await throughput(world, proxy)),
      ...(await idleTunnels(world, proxy)),
      ...(await reconnectStorm(world)),
    ];
  } finally {
    await proxy.stop();
  }
}

/** Child process: holds one tunnel per gateway of the JSON file until stdin closes. */
async function runGateways(file: string): Promise<void> {
  const spec = JSON.parse(readFileSync(file, 'utf8')) as {
    port: number;
    hostCa: string;
    gateways: { id: string; privateKey: string; certificate: string }[];
    concurrency: number;
  };
  const clients: Client[] = [];
  const queue = [...spec.gateways];
  await Promise.all(
    Array.from({ length: spec.concurrency }, async () => {
      for (let g = queue.shift(); g; g = queue.shift()) {
        // As a gateway does: a failed attempt is retried after a full-jitter delay doubling from 250 ms.
        for (let attempt = 0; ; attempt++) {
          try {
            const { client } = await connectWithCertificate({
              host: '127.0.0.1',
              port: spec.port,
              username: g.id,
              privateKey: g.privateKey,
              certificate: g.certificate,
              trustedHostCaKeys: [Buffer.from(spec.hostCa, 'base64')],
              hostPrincipal: '127.0.0.1',
              readyTimeout: 15_000,
            });
            client.on('error', () => {});
            await new Promise<void>((resolve, reject) => client.forwardIn(g.id, 0, (e) => (e ? reject(e) : resolve())));
            clients.push(client);
            break;
          } catch {
            const ceiling = Math.min(30_000, 250 * 2 ** attempt);
            await new Promise((r) => setTimeout(r, Math.random() * ceiling));
          }
        }
      }
    }),
  );
  process.stdin.resume();
  await once(process.stdin, 'end');
  for (const c of clients) c.end();
  process.exit(0);
}

if (process.env[CHILD_FLAG]) await runGateways(process.env[CHILD_FLAG]);
