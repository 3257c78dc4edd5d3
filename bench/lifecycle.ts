/**
 * Lifecycle: how fast revocation and fleet changes land, every component a real process started through its
 * CLI (test/lifecycle harness): CA, 2 proxies, G gateways (BENCH_GATEWAYS, default 12), infisical-connect.
 *   - revoke → stream cut: a live stream through `infisical-connect tcp`, then `infisical-ca revoke` (grant,
 *     identity, gateway; 20 in all); the time from the CLI's return until the stream's socket closes.
 *     Reference, same run: the same with the feed polled every 10 s (feed_wait 0, revocation_poll 10s), as
 *     before the long-poll.
 *   - proxy enrolled → every gateway connected: a third proxy enrolled and started while the gateways run;
 *     from its first /readyz 200 until every gateway has a tunnel to it. Before, gateways learned of new proxies
 *     only at their next renewal (hours).
 */
import net from 'node:net';
import { type ConnectHandle, type Deployment, startDeployment, waitFor } from '../test/lifecycle/deploy.js';
import { type BenchRow, fmt, percentile } from './table.js';

const GATEWAYS = Math.max(6, Number(process.env['BENCH_GATEWAYS'] ?? 12));
const GRANTS = 8;
const IDENTITIES = 8;
const GATEWAY_REVOCATIONS = 4;

/** A live stream: connected through the connect listener, one echo round trip done, held open. */
async function liveStream(port: number): Promise<{ closed: Promise<number> }> {
  const socket = net.connect(port, '127.0.0.1');
  socket.setNoDelay(true);
  await new Promise<void>((resolve, reject) => {
    socket.once('error', reject);
    socket.once('connect', () => {
      socket.write('ping\n');
      socket.once('data', () => resolve());
    });
  });
  socket.on('error', () => {});
  const closed = new Promise<number>((resolve) => socket.once('close', () => resolve(performance.now())));
  return { closed };
}

async function grantOf(c: ConnectHandle): Promise<string> {
  return waitFor(
    () => {
      const g = c.events().filter((e) => e['event'] === 'grant');
      return g.at(-1)?.['grantId'] as string | undefined;
    },
    { what: `${c.name}: a grant`, timeoutMs: 15_000 },
  );
}

/** Revokes and returns ms from the CLI's return until the live stream closed. */
async function cut(d: Deployment, port: number, revoke: () => Promise<unknown>): Promise<number> {
  const s = await liveStream(port);
  await revoke();
  const after = performance.now();
  const closedAt = await Promise.race([s.closed, new Promise<number>((r) => setTimeout(() => r(Number.NaN), 30_000))]);
  if (Number.isNaN(closedAt)) throw new Error(`stream not cut within 30 s\n${d.tails(5)}`);
  return Math.max(0, closedAt - after);
}

async function revocationRound(d: Deployment, o: { grants: number; identities: number; gateways: number }) {
  const samples: { kind: string; ms: number }[] = [];
  for (let i = 0; i < o.grants; i++) {
    const c = await d.connect({ gateway: d.gateways[0]! });
    const s = await liveStream(c.port); // makes it fetch a grant
    const grant = await grantOf(c);
    const ms = await cut(d, c.port, () => d.revoke('grant', grant));
    samples.push({ kind: 'grant', ms });
    await s.closed;
    await c.stop();
  }
  for (let i = 0; i < o.identities; i++) {
    const id = await d.identity(`bench-id-${i}-${Date.now()}`, { targets: [d.target.address], modes: ['tcp'] });
    const c = await d.connect({ gateway: d.gateways[1]!, identity: id });
    samples.push({ kind: 'identity', ms: await cut(d, c.port, () => d.revoke('identity', id.identityId)) });
    await c.stop();
  }
  for (let i = 0; i < o.gateways; i++) {
    const g = d.gateways[d.gateways.length - 1 - i]!;
    const c = await d.connect({ gateway: g });
    samples.push({ kind: 'gateway', ms: await cut(d, c.port, () => d.revoke('gateway', g.gatewayId)) });
    await c.stop();
  }
  return samples;
}

function summary(samples: { ms: number }[]): string {
  const ms = samples.map((s) => s.ms).sort((a, b) => a - b);
  return `p50 ${fmt.ms(percentile(ms, 50))} / p99 ${fmt.ms(percentile(ms, 99))} (n=${ms.length})`;
}

export async function benchLifecycle(): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  // Reference first: the feed polled every 10 s, as before the long-poll.
  const polled = ['--feed-wait', '0', '--revocation-poll', '10s'];
  const ref = await startDeployment({ proxies: 2, gateways: 3, proxyArgs: polled, gatewayArgs: polled });
  let reference: { ms: number }[] = [];
  try {
    reference = await revocationRound(ref, { grants: 3, identities: 2, gateways: 1 });
  } finally {
    await ref.close();
  }

  const d = await startDeployment({ proxies: 2, gateways: GATEWAYS });
  try {
    const samples = await revocationRound(d, {
      grants: GRANTS,
      identities: IDENTITIES,
      gateways: GATEWAY_REVOCATIONS,
    });
    const byKind = (k: string) => samples.filter((s) => s.kind === k);
    rows.push({
      area: 'lifecycle',
      metric: `revoke → live stream cut (grant, identity, gateway; 2 proxies, ${GATEWAYS} gateways)`,
      ours: summary(samples),
      reference: `poll every 10 s: ${summary(reference)}`,
      note: `grant ${summary(byKind('grant'))}; identity ${summary(byKind('identity'))}; gateway ${summary(byKind('gateway'))}`,
    });

    const live = d.gateways.slice(0, d.gateways.length - GATEWAY_REVOCATIONS);
    const proxy = await d.addProxy();
    const readyAt = performance.now();
    const want = d.proxies.length;
    await waitFor(
      async () => {
        for (const g of live) if ((await g.tunnelsUp()) < want) return false;
        return true;
      },
      { what: `every gateway connected to ${proxy.proxyId}`, timeoutMs: 60_000, intervalMs: 20 },
    );
    rows.push({
      area: 'lifecycle',
      metric: `proxy enrolled → every gateway connected (${live.length} gateways)`,
      ours: fmt.ms(performance.now() - readyAt),
      reference: "before: at each gateway's next renewal (hours)",
      note: "from the new proxy's first /readyz 200",
    });
  } finally {
    await d.close();
  }
  return rows;
}
