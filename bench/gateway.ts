/**
 * Gateway: how fast tunnels come back after a proxy restart (default backoff: first retry ≤ 250 ms), and
 * 1,000 concurrent streams through one gateway (platform → real proxy → SSH tunnel → gateway → echo target),
 * with the memory they cost. Everything in-process on 127.0.0.1.
 */
import { dialViaProxy } from '../lib/client/dial.js';
import { unwrap } from '../lib/errors/codes.js';
import { Tunnel } from '../lib/gateway/tunnel.js';
import { parsePublicKey } from '../lib/sshcert/index.js';
import {
  gatewayState,
  killProxy,
  platformGrant,
  type RunningProxy,
  settings,
  startGateway,
  startRealProxy,
} from '../test/gateway/deploy.js';
import { echoServer } from '../test/gateway/harness.js';
import { World } from '../test/helpers/world.js';
import { type BenchRow, fmt, percentile } from './table.js';

const RESTARTS = 5;
const STREAMS = 1000;
const DIAL_CONCURRENCY = 50;

async function restartToReady(world: World): Promise<BenchRow[]> {
  let proxy: RunningProxy = await startRealProxy(world, 'p1');
  const state = gatewayState(world, [proxy]);
  const s = settings([]);
  // Restarts here come seconds apart; a shorter "stable" time than the default 10 s lets each one count as a
  // restart after a healthy tunnel (attempt counter back to 0), as in production where proxies run for days.
  const stableMs = 1000;
  const { gateway } = startGateway(world, state, {
    ...s,
    backoff: { baseMs: 250, capMs: 30_000, factor: 2, stableMs },
  });
  await gateway.pool.whenUp(10_000);
  // Reference: one cold Tunnel.open (TCP + SSH handshake + cert auth + forward) to the same proxy.
  const handshakes: number[] = [];
  for (let i = 0; i < RESTARTS; i++) {
    const t0 = performance.now();
    const t = await Tunnel.open({
      gatewayId: 'gw-bench-ref',
      proxy: { proxyId: 'p1', scope: 'instance', hostname: '127.0.0.1', sshAddress: `127.0.0.1:${proxy.sshPort}` },
      credentials: (() => {
        const ssh = world.gatewaySsh({ orgId: 'org-a', gatewayId: 'gw-bench-ref', scope: 'instance' });
        return {
          privateKey: ssh.privateKey,
          certificate: ssh.certificate,
          trustedHostCaKeys: [unwrap(parsePublicKey(world.instance.sshServer.publicLine))],
        };
      })(),
      keepaliveIntervalMs: 10_000,
      keepaliveCountMax: 2,
      readyTimeoutMs: 10_000,
    });
    handshakes.push(performance.now() - t0);
    t.close();
  }
  const back: number[] = [];
  for (let i = 0; i < RESTARTS; i++) {
    await new Promise((r) => setTimeout(r, stableMs + 100));
    await killProxy(proxy);
    while (gateway.pool.status().up > 0) await new Promise((r) => setTimeout(r, 5));
    // The proxy stays down a moment, as a real restart does.
    await new Promise((r) => setTimeout(r, 300));
    const t0 = performance.now();
    proxy = await startRealProxy(world, 'p1', { ssh: proxy.sshPort, tls: proxy.tlsPort });
    await gateway.pool.whenUp(30_000);
    back.push(performance.now() - t0);
  }
  await gateway.close();
  await proxy.server.stop();
  return [
    {
      area: 'gateway',
      metric: `proxy restart → tunnel up (p50 / max of ${RESTARTS}, down 300 ms)`,
      ours: `${fmt.ms(percentile(back, 50))} / ${fmt.ms(Math.max(...back))}`,
      reference: `${fmt.ms(percentile(handshakes, 50))} one cold tunnel handshake`,
      note: 'target: within ~2 s; backoff base 250 ms, full jitter',
    },
  ];
}

async function concurrentStreams(world: World): Promise<BenchRow[]> {
  const echo = await echoServer();
  const proxy = await startRealProxy(world, 'p1');
  const { gateway } = startGateway(world, gatewayState(world, [proxy]), settings([echo.port]));
  await gateway.pool.whenUp(10_000);
  const grant = await platformGrant(world, [proxy], { host: '127.0.0.1', port: echo.port }, 'tcp');
  const via = grant.proxies[0]!;
  global.gc?.();
  const rss0 = process.memoryUsage().rss;
  const sockets: Awaited<ReturnType<typeof dialViaProxy>>['socket'][] = [];
  const t0 = performance.now();
  let next = 0;
  const workers = Array.from({ length: DIAL_CONCURRENCY }, async () => {
    while (next < STREAMS) {
      next++;
      sockets.push((await dialViaProxy(grant, via, 'tcp', { stepTimeoutMs: 30_000 })).socket);
    }
  });
  await Promise.all(workers);
  const openMs = performance.now() - t0;
  const live = gateway.registry.size;
  // One round trip on every stream, all at once, while all are open.
  const rtts = await Promise.all(
    sockets.map(
      (s) =>
        new Promise<number>((resolve) => {
          const t = performance.now();
          s.once('data', () => resolve(performance.now() - t));
          s.write('ping');
        }),
    ),
  );
  const rss1 = process.memoryUsage().rss;
  for (const s of sockets) s.destroy();
  const tClose = performance.now();
  while (gateway.registry.size > 0 && performance.now() - tClose < 10_000) await new Promise((r) => setTimeout(r, 10));
  await gateway.close();
  await proxy.server.stop();
  await echo.close();
  const perStreamKiB = (rss1 - rss0) / STREAMS / 1024;
  return [
    {
      area: 'gateway',
      metric: `${STREAMS} concurrent streams: open (${DIAL_CONCURRENCY} dialling at once)`,
      ours: `${fmt.ms(openMs)} (${fmt.perSec((STREAMS / openMs) * 1000)})`,
      note: `${live} live at the gateway; each = outer TLS + status + inner TLS`,
    },
    {
      area: 'gateway',
      metric: `${STREAMS} concurrent streams: echo round trip p50 / p99`,
      ours: `${fmt.ms(percentile(rtts, 50))} / ${fmt.ms(percentile(rtts, 99))}`,
      note: 'all streams written at once',
    },
    {
      area: 'gateway',
      metric: `${STREAMS} concurrent streams: RSS growth (platform + proxy + gateway in one process)`,
      ours: `${fmt.mib((rss1 - rss0) / 2 ** 20)} (${perStreamKiB.toFixed(0)} KiB/stream)`,
      note: 'bounded: max_streams (gateway) and max_streams_per_gateway (proxy) refuse beyond',
    },
  ];
}

export async function benchGateway(): Promise<BenchRow[]> {
  const world = new World();
  return [...(await restartToReady(world)), ...(await concurrentStreams(world))];
}

// Run directly: node build/bench/gateway.js
if (import.meta.url === `file://${process.argv[1]}`) {
  const { renderTable } = await import('./table.js');
  console.log(renderTable(await benchGateway()));
}
