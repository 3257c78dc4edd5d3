/**
 * Outage recovery: a proxy is killed (SIGKILL, no goodbye), kept down 3 s and started again; how long after it
 * is ready does each gateway have its tunnel back? Every component is a real process started through its CLI
 * (test/lifecycle harness): CA, 2 proxies, N gateways (BENCH_OUTAGE_GATEWAYS, default 8), R rounds
 * (BENCH_OUTAGE_ROUNDS, default 3). Times come from the programs' own logs (same clock): "ready" is the
 * restarted proxy's `serving` line (listeners bound, ops up), "back" each gateway's `tunnel up` line for that
 * proxy. The backoff lines logged meanwhile say which kind of failure each gateway was backing off from
 * (unreachable: refused/reset, retried within a second; refused: the proxy answered no, backed off hard).
 * Reference: the issue's figure before the fast retry (median 12–14 s, worst 22.5 s, same procedure).
 */
import type { Daemon, Deployment } from '../test/lifecycle/deploy.js';
import { startDeployment } from '../test/lifecycle/deploy.js';
import { type BenchRow, fmt, percentile } from './table.js';

const GATEWAYS = Math.max(1, Number(process.env['BENCH_OUTAGE_GATEWAYS'] ?? 8));
const ROUNDS = Math.max(1, Number(process.env['BENCH_OUTAGE_ROUNDS'] ?? 3));
const DOWN_MS = 3000;

/** ms since the epoch of a pino line's `time` (ISO text or epoch ms). */
function timeOf(line: Record<string, unknown>): number {
  const t = line['time'];
  return typeof t === 'number' ? t : Date.parse(String(t));
}

/** Log lines of every process this handle ran (logLines() reads only the current one). */
function allLines(d: Daemon): Record<string, unknown>[] {
  const out: Record<string, unknown>[] = [];
  for (const line of d.log().split('\n')) {
    if (!line.startsWith('{')) continue;
    try {
      out.push(JSON.parse(line) as Record<string, unknown>);
    } catch {
      // a partial line
    }
  }
  return out;
}

interface Round {
  /** Per gateway: ms from the proxy's `serving` line to its `tunnel up` line. */
  backMs: number[];
  /** Spawn → `serving` of the restarted proxy. */
  startMs: number;
  /** Backoff lines logged by the gateways during the outage, by failure kind. */
  failures: Record<string, number>;
}

async function round(d: Deployment): Promise<Round> {
  const proxy = d.proxies[0]!;
  await Promise.all(d.gateways.map((g) => g.waitTunnels(d.proxies.length, 60_000)));
  const killedAt = Date.now();
  await proxy.kill();
  await new Promise((r) => setTimeout(r, DOWN_MS));
  const spawnedAt = Date.now();
  await proxy.start(60_000);
  const serving = proxy.logLines().find((l) => l['msg'] === 'serving');
  if (!serving) throw new Error(`${proxy.name}: no "serving" line\n${proxy.tail()}`);
  const readyAt = timeOf(serving);
  await Promise.all(d.gateways.map((g) => g.waitTunnels(d.proxies.length, 60_000)));
  const backMs: number[] = [];
  const failures: Record<string, number> = {};
  for (const g of d.gateways) {
    const lines = allLines(g).filter((l) => l['proxyId'] === proxy.proxyId && timeOf(l) >= killedAt);
    const up = lines.find((l) => l['msg'] === 'tunnel up');
    if (!up) throw new Error(`${g.name}: no "tunnel up" line for ${proxy.proxyId}\n${g.tail()}`);
    backMs.push(timeOf(up) - readyAt);
    for (const l of lines) {
      if (typeof l['failure'] === 'string' && timeOf(l) < timeOf(up)) {
        failures[l['failure']] = (failures[l['failure']] ?? 0) + 1;
      }
    }
  }
  return { backMs, startMs: readyAt - spawnedAt, failures };
}

export async function benchOutage(): Promise<BenchRow[]> {
  const d = await startDeployment({ proxies: 2, gateways: GATEWAYS });
  const rounds: Round[] = [];
  try {
    for (let i = 0; i < ROUNDS; i++) rounds.push(await round(d));
  } finally {
    await d.close();
  }
  const all = rounds.flatMap((r) => r.backMs).sort((a, b) => a - b);
  const perRound = rounds.map((r) => `${fmt.ms(percentile(r.backMs, 50))}/${fmt.ms(Math.max(...r.backMs))}`);
  const failures: Record<string, number> = {};
  for (const r of rounds) for (const [k, n] of Object.entries(r.failures)) failures[k] = (failures[k] ?? 0) + n;
  return [
    {
      area: 'outage',
      metric: `proxy killed, down 3 s, restarted → each gateway's tunnel back (${GATEWAYS} gateways × ${ROUNDS} rounds)`,
      ours: `median ${fmt.ms(percentile(all, 50))}, worst ${fmt.ms(all.at(-1) ?? Number.NaN)}`,
      reference: 'issue 13, before: median 12–14 s, worst 22.5 s (goal: ≤2 s median, ≤5 s worst)',
      note:
        `from the proxy's "serving" line; per round median/worst ${perRound.join(', ')}; ` +
        `proxy start ${rounds.map((r) => fmt.ms(r.startMs)).join(', ')}; ` +
        `backoff lines by kind: ${JSON.stringify(failures)}`,
    },
  ];
}
