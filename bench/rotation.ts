/**
 * Rotation (issue 12): how long a fleet takes to acknowledge each phase of a CA rotation, every component a real
 * process (test/lifecycle harness): CA, 2 instance proxies, G gateways (BENCH_ROTATION_GATEWAYS, default 20).
 * Two authorities, one after the other: the instance proxy SSH client CA (every gateway renews its SSH
 * certificate, both proxies take the new CA) and the org's gateway server CA (every gateway renews its TLS
 * certificate). For each phase: from the `rotate start` / `rotate next` that succeeded until `rotate status`
 * lists nobody pending (standby: until no component's state holds or trusts the old CA, since the CA tracks
 * no acknowledgement of standby); and how long `next` was refused before (no grants here, so nothing to
 * expire). Status is read through the CLI, one process per poll: the figure is exact to about one call (the
 * note says how long one took).
 */
import { type Deployment, startDeployment, waitFor } from '../test/lifecycle/deploy.js';
import {
  type Authority,
  acknowledged,
  advance,
  keysOf,
  label,
  PHASES,
  rotateNow,
  rotationStatus,
  trustSnapshot,
} from '../test/lifecycle/rotation.js';
import { type BenchRow, fmt } from './table.js';

const GATEWAYS = Math.max(1, Number(process.env['BENCH_ROTATION_GATEWAYS'] ?? 20));
const AUTHORITIES: Authority[] = [
  { scope: 'instance', name: 'proxy-ssh-client' },
  { scope: 'org', name: 'gateway-server' },
];

/** How long one trustSnapshot of the whole fleet takes (the resolution of the standby figure). */
function readMs(): number {
  return lastReadMs;
}
let lastReadMs = 0;

async function rotateMeasured(d: Deployment, a: Authority): Promise<BenchRow[]> {
  const rows: BenchRow[] = [];
  const fleet = `2 proxies, ${d.gateways.length} gateways`;
  const [old] = keysOf(trustSnapshot(d), a);
  for (const phase of PHASES) {
    let waited = '';
    if (phase === 'init') {
      await rotateNow(d.ca, 'start', a);
    } else {
      const r = await advance(d.ca, a, { timeoutMs: 180_000, intervalMs: 250 });
      if (r.phase !== phase) throw new Error(`${label(a)}: next gave ${r.phase}, not ${phase}`);
      waited = `; next refused ${r.refusals}× over ${fmt.ms(r.ms)} before`;
    }
    const from = Date.now();
    if (phase === 'standby') {
      // The CA tracks no acknowledgement of standby (status lists nobody pending there): read the fleet's own
      // state until no component holds or trusts the old CA any more.
      await waitFor(
        () => {
          const at = Date.now();
          const keys = keysOf(trustSnapshot(d), a);
          lastReadMs = Date.now() - at;
          return keys.length === 1 && keys[0] !== old;
        },
        { what: `${label(a)}: the fleet on the new CA alone`, timeoutMs: 180_000, intervalMs: 0 },
      );
      rows.push({
        area: 'rotation',
        metric: `${label(a)} standby: the old CA gone from every component's state (${fleet})`,
        ours: fmt.ms(Date.now() - from),
        reference: 'issue 12: within 30 s',
        note: `read from the state databases (ssh-keygen, X.509; one read of the fleet ${fmt.ms(readMs())})${waited}`,
      });
      continue;
    }
    const { status } = (await acknowledged(d.ca, [a], { timeoutMs: 180_000, intervalMs: 0 })).get(a)!;
    const ms = Date.now() - from;
    const call = Date.now();
    await rotationStatus(d.ca, a);
    const oneCall = Date.now() - call;
    rows.push({
      area: 'rotation',
      metric: `${label(a)} ${phase}: acknowledged by the fleet (${fleet})`,
      ours: fmt.ms(ms),
      reference: 'issue 12: within 30 s',
      note: `rotate status: pending empty; offline ${status.offline.length}${waited}; one status call ${fmt.ms(oneCall)}`,
    });
  }
  return rows;
}

export async function benchRotation(): Promise<BenchRow[]> {
  const d = await startDeployment({ proxies: 2, gateways: GATEWAYS });
  try {
    const rows: BenchRow[] = [];
    for (const a of AUTHORITIES) rows.push(...(await rotateMeasured(d, a)));
    return rows;
  } finally {
    await d.close();
  }
}
