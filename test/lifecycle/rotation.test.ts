/**
 * Issue 12, phased CA rotation with real processes (CA, an instance proxy and an org proxy, two gateways,
 * infisical-connect), driven through `infisical-ca rotate` as an operator would:
 *   1. every CA of the org and of the instance rotated init → update_clients → update_servers → standby, in
 *      lockstep, while checksummed streams flow without a break;
 *   2. rotations rolled back from init, from update_clients and from update_servers, then finished on the
 *      old CA, the same way, while another CA rotates in automatic mode (--grace);
 *   3. a gateway stopped during update_clients and started after standby is told E_ROTATION_MISSED and stops,
 *      instead of hanging or retrying; one away for standby only catches up by itself.
 * Throughout: a new stream and a ping through every proxy to every gateway in each phase; no stream fails, no
 * component restarts. What the fleet signs with and trusts is read from the components' own state (trustSnapshot)
 * after each phase: both CAs trusted until standby, the new one alone after it (the old one after a rollback).
 */
import assert from 'node:assert/strict';
import { test } from 'node:test';
import {
  assertByteExact,
  type ConnectHandle,
  type Daemon,
  type Deployment,
  type GatewayHandle,
  startDeployment,
  waitFor,
} from './deploy.js';
import { runProgram } from './helpers2.js';
import { type RollingTraffic, rollingTraffic } from './rolling.js';
import {
  type Authority,
  acknowledged,
  advance,
  INSTANCE_AUTHORITIES,
  keysOf,
  label,
  ORG_AUTHORITIES,
  type Phase,
  rotateNow,
  signsClients,
  sleep,
  statusesOf,
  type TrustView,
  trustSnapshot,
} from './rotation.js';

const MiB = 1024 * 1024;
/** Short grants, so that waiting for those signed by a retiring CA to expire takes seconds. */
const CA_ARGS = ['--grant-ttl', '15s', '--supersede-grace', '5s'];

type Step = 'next' | 'rollback';

/** One authority's way through a rotation, after `start`. */
interface Plan {
  authority: Authority;
  steps: Step[];
}

/** Where a plan stands: its phase, the old CA key, the new one once the fleet shows it. */
interface Progress {
  plan: Plan;
  phase: Phase;
  rolledBack: boolean;
  old: string[];
  fresh?: string[];
}

function nextPhase(p: Progress, step: Step): Phase {
  if (step === 'rollback') return 'rollback';
  if (p.phase === 'rollback') return 'standby';
  const order: Phase[] = ['init', 'update_clients', 'update_servers', 'standby'];
  return order[order.indexOf(p.phase) + 1] ?? 'standby';
}

/**
 * What the fleet must show for one authority in its phase (undefined: it does). Keys by side: "trusted" (the
 * trusting components' lists) and "signers" (the CAs of the certificates components hold); a side the fleet
 * has no component for is not checked.
 */
function trustProblem(view: TrustView, p: Progress): string | undefined {
  const a = p.plan.authority;
  const v = view[label(a)];
  if (!v) return undefined;
  const [old] = p.old;
  const seen = keysOf(view, a).filter((k) => k !== old);
  if (seen.length > 1) return `more than two CA keys: ${JSON.stringify(v)}`;
  if (seen[0] && !p.fresh) p.fresh = [seen[0]];
  const fresh = p.fresh?.[0];
  const both = [old!, fresh].filter((k): k is string => k !== undefined).sort();
  let trusted: string[];
  let signers: string[];
  switch (p.phase) {
    case 'init':
    case 'rollback':
      trusted = fresh ? both : [old!];
      signers = [old!];
      break;
    case 'update_clients':
      trusted = both;
      signers = signsClients(a) ? (fresh ? [fresh] : ['(a new CA)']) : [old!];
      break;
    case 'update_servers':
      trusted = both;
      signers = fresh ? [fresh] : ['(a new CA)'];
      break;
    default:
      trusted = p.rolledBack ? [old!] : fresh ? [fresh] : ['(a new CA)'];
      signers = trusted;
  }
  if (p.phase !== 'standby' && fresh === undefined && v.trusted.length > 0) {
    return `the new CA is not trusted yet in ${p.phase}: ${JSON.stringify(v)}`;
  }
  const same = (x: string[], y: string[]) => JSON.stringify(x) === JSON.stringify(y);
  if (v.trusted.length > 0 && !same(v.trusted, trusted)) {
    return `${p.phase}: trusted ${JSON.stringify(v.trusted)}, want ${JSON.stringify(trusted)} (old ${old})`;
  }
  if (v.signers.length > 0 && !same(v.signers, signers)) {
    return `${p.phase}: certificates signed by ${JSON.stringify(v.signers)}, want ${JSON.stringify(signers)} (old ${old})`;
  }
  return undefined;
}

/** A new stream through the connect listener, and a ping through every proxy to every running gateway. */
async function newConnections(
  d: Deployment,
  c: ConnectHandle,
  when: string,
  gateways = d.gateways.filter((x) => x.running),
): Promise<void> {
  assertByteExact(await d.transfer(c, MiB), `a new stream (${when})`);
  for (const g of gateways) {
    const r = await runProgram('connect', [
      'ping',
      ...d.ca.pinned(),
      '--org',
      d.org,
      '--client-id',
      d.app.clientId,
      '--client-secret-file',
      d.app.secretFile,
      '--gateway',
      g.gatewayId,
      '--target',
      d.target.address,
      '--count',
      '2',
      '--json',
    ]);
    const pings = r.stdout
      .split('\n')
      .filter((l) => l.startsWith('{'))
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .filter((e) => e['event'] === 'ping');
    const failed = pings.filter((p) => p['ok'] !== true);
    assert.equal(r.code, 0, `ping ${g.gatewayId} (${when}) exited ${r.code}: ${r.stdout}${r.stderr}`);
    assert.equal(pings.length, d.proxies.length, `ping ${g.gatewayId} (${when}): ${r.stdout}`);
    assert.deepEqual(failed, [], `ping ${g.gatewayId} through each proxy (${when})`);
  }
}

function pidsOf(d: Deployment): Map<Daemon, number | undefined> {
  return new Map(d.daemons().map((x) => [x, x.pid]));
}

function assertNoRestart(pids: Map<Daemon, number | undefined>, except: Daemon[] = []): void {
  for (const [x, pid] of pids) {
    if (except.includes(x) || pid === undefined) continue;
    assert.ok(x.running, `${x.name} is still running`);
    assert.equal(x.pid, pid, `${x.name} was not restarted`);
  }
}

/** Every stream of the rolling traffic byte-exact, and some stream mid-transfer at each phase change. */
async function assertTraffic(traffic: RollingTraffic, changes: { what: string; at: number }[]) {
  const streams = await traffic.stop();
  const failed = streams.filter((s) => !s.result?.ok);
  assert.deepEqual(
    failed.map((s) => `#${s.n}: ${s.result?.error}`),
    [],
    `0 of ${streams.length} streams may fail`,
  );
  for (const c of changes) {
    assert.ok(traffic.spanning(c.at).length > 0, `a stream was mid-transfer when ${c.what}`);
  }
  const bytes = streams.reduce((n, s) => n + (s.result?.bytes ?? 0), 0);
  return { streams: streams.length, mib: bytes / MiB };
}

function assertConnectClean(c: ConnectHandle): void {
  const bad = c.events().filter((e) => e['event'] === 'error' || e['event'] === 'proxy-failed');
  assert.deepEqual(bad, [], `${c.name}: no failed stream and no proxy refusing one`);
}

/**
 * Runs the plans in lockstep: `start` for all, then step k of every plan that has one, each time waiting until
 * the CA allows the move (polling `next`) and the fleet acknowledged it (`status` pending empty), then checking
 * the fleet's trust and opening new connections.
 */
async function drive(
  t: { diagnostic(msg: string): void },
  d: Deployment,
  c: ConnectHandle,
  plans: Plan[],
  /** Authorities rotating meanwhile on their own (automatic mode): not checked here. */
  others: Authority[] = [],
): Promise<{ what: string; at: number }[]> {
  const before = trustSnapshot(d);
  const progress: Progress[] = plans.map((plan) => {
    const old = keysOf(before, plan.authority);
    assert.ok(old.length <= 1, `${label(plan.authority)} shows one CA before: ${JSON.stringify(old)}`);
    return { plan, phase: 'init', rolledBack: false, old };
  });
  const changes: { what: string; at: number }[] = [];
  const note = (msg: string) => t.diagnostic(`${new Date().toISOString().slice(11, 23)} ${msg}`);
  const settle = async (moved: Progress[]) => {
    const acks = await acknowledged(
      d.ca,
      moved.map((p) => p.plan.authority),
    );
    for (const p of moved) {
      const { status } = acks.get(p.plan.authority)!;
      assert.equal(status.phase, p.phase, `${label(p.plan.authority)}: ${JSON.stringify(status)}`);
    }
    note(
      `${moved.map((p) => `${label(p.plan.authority)} ${p.phase}`).join(', ')}: acknowledged (${[...acks.values()].map((x) => x.ms).join(', ')} ms)`,
    );
    await waitFor(
      () => {
        const view = trustSnapshot(d);
        const problems = progress
          .map((p) => [label(p.plan.authority), trustProblem(view, p)] as const)
          .filter(([, e]) => e !== undefined);
        return problems.length === 0;
      },
      {
        what: 'the fleet to trust and hold what the phases say',
        timeoutMs: 20_000,
        detail: () => {
          const view = trustSnapshot(d);
          return progress
            .map((p) => `${label(p.plan.authority)} ${p.phase}: ${trustProblem(view, p) ?? 'ok'}`)
            .join('\n');
        },
      },
    );
    note('trust as the phases say');
    await newConnections(d, c, moved.map((p) => `${label(p.plan.authority)} ${p.phase}`).join(', '));
    note('new connections through every proxy and gateway');
  };

  // Each step is taken for every plan at once (one CLI each, as several operators might).
  await Promise.all(
    progress.map(async (p) => {
      const started = await rotateNow(d.ca, 'start', p.plan.authority);
      changes.push({ what: `${label(p.plan.authority)} started`, at: Date.now() });
      assert.equal(started.to, 'init', `${label(p.plan.authority)} after start`);
      note(`${label(p.plan.authority)} started (init)`);
    }),
  );
  await settle(progress);

  const steps = Math.max(...plans.map((p) => p.steps.length));
  for (let k = 0; k < steps; k++) {
    const moved = progress.filter((p) => p.plan.steps[k] !== undefined);
    const move = async (p: Progress) => {
      const step = p.plan.steps[k]!;
      const want = nextPhase(p, step);
      if (step === 'rollback') {
        const r = await rotateNow(d.ca, 'rollback', p.plan.authority);
        assert.equal(r.to, want, `${label(p.plan.authority)} after rollback`);
        p.rolledBack = true;
        p.phase = want;
        note(`${label(p.plan.authority)} rolled back`);
      } else {
        const r = await advance(d.ca, p.plan.authority);
        assert.equal(r.phase, want, `${label(p.plan.authority)} after next`);
        p.phase = want;
        note(
          `${label(p.plan.authority)} → ${want} after ${r.ms} ms, ${r.refusals} refusals` +
            (r.lastRefusal ? ` (last: ${r.lastRefusal.slice(0, 160)})` : ''),
        );
      }
      changes.push({ what: `${label(p.plan.authority)} moved to ${p.phase}`, at: Date.now() });
    };
    await Promise.all(moved.map(move));
    await settle(moved);
  }

  // The end: every plan in standby, on the new CA (or the old one, rolled back), different from the old.
  const after = trustSnapshot(d);
  for (const p of progress) {
    const keys = keysOf(after, p.plan.authority);
    if (keys.length === 0) continue;
    assert.equal(keys.length, 1, `${label(p.plan.authority)}: one CA at the end: ${JSON.stringify(after)}`);
    if (p.rolledBack) assert.deepEqual(keys, p.old, `${label(p.plan.authority)}: back on the old CA`);
    else if (p.old.length) assert.notDeepEqual(keys, p.old, `${label(p.plan.authority)}: on a new CA`);
  }
  // Authorities not rotated are untouched.
  const rotated = new Set([...plans.map((p) => label(p.authority)), ...others.map(label)]);
  for (const [key, v] of Object.entries(before)) {
    if (!rotated.has(key)) assert.deepEqual(after[key], v, `${key} was not rotated and must not change`);
  }
  return changes;
}

/** Narrow with ROTATION_AUTHORITIES=org/gateway-server,instance/proxy-ssh-client. */
function selected(all: Authority[]): Authority[] {
  const only = process.env['ROTATION_AUTHORITIES']?.split(',').filter(Boolean);
  return only ? all.filter((a) => only.includes(label(a))) : all;
}

async function deployment(t: { after(fn: () => Promise<void>): void }, gateways = 2) {
  const d = await startDeployment({ proxies: 1, orgProxies: 1, gateways, caArgs: CA_ARGS });
  t.after(() => d.close());
  const c = await d.connect({ gateway: d.gateways[0]! });
  const traffic = rollingTraffic({ port: () => c.port, target: d.target, rate: MiB, streamMs: 6000, everyMs: 2000 });
  return { d, c, traffic };
}

async function withTails<T>(d: Deployment, fn: () => Promise<T>): Promise<T> {
  try {
    return await fn();
  } catch (err) {
    process.stderr.write(`\n${d.tails(40)}\n`);
    throw err;
  }
}

test('every CA of the org and of the instance rotated through all four phases while traffic flows', async (t) => {
  const { d, c, traffic } = await deployment(t);
  await withTails(d, async () => {
    const pids = pidsOf(d);
    const plans = selected([...ORG_AUTHORITIES, ...INSTANCE_AUTHORITIES]).map((authority) => ({
      authority,
      steps: ['next', 'next', 'next'] as Step[],
    }));
    const changes = await drive(t, d, c, plans);
    for (const [a, st] of await statusesOf(
      d.ca,
      plans.map((p) => p.authority),
    )) {
      assert.equal(st.phase, 'standby', label(a));
    }
    const { streams, mib } = await assertTraffic(traffic, changes);
    t.diagnostic(`${streams} overlapping streams, ${mib.toFixed(1)} MiB, all byte-exact`);
    assertConnectClean(c);
    assertNoRestart(pids);
  });
});

test('rotations rolled back from init, update_clients and update_servers end on the old CA; one rotates by itself', async (t) => {
  const { d, c, traffic } = await deployment(t);
  await withTails(d, async () => {
    const pids = pidsOf(d);
    const from = (names: string[], steps: Step[]): Plan[] =>
      [...ORG_AUTHORITIES, ...INSTANCE_AUTHORITIES]
        .filter((a) => names.includes(label(a)))
        .map((authority) => ({ authority, steps }));
    const plans = [
      ...from(['org/proxy-pki-client'], ['rollback', 'next']),
      ...from(['org/proxy-ssh-client', 'instance/proxy-ssh-server'], ['next', 'rollback', 'next']),
      ...from(['org/gateway-server'], ['next', 'next', 'rollback', 'next']),
    ];
    // Meanwhile one CA rotates in automatic mode: the CA daemon walks its phases, each lasting the grace.
    const auto: Authority = { scope: 'org', name: 'proxy-pki-server' };
    const [autoOld] = keysOf(trustSnapshot(d), auto);
    assert.equal((await rotateNow(d.ca, 'start', auto, ['--grace', '3s'])).to, 'init');
    const changes = await drive(t, d, c, plans, [auto]);
    const autoDone = await waitFor(
      async () => {
        const st = (await statusesOf(d.ca, [auto])).get(auto)!;
        return st.phase === 'standby' && st;
      },
      { what: `${label(auto)} to reach standby by itself`, timeoutMs: 90_000, intervalMs: 1000 },
    );
    assert.deepEqual(autoDone.pending, []);
    await waitFor(
      () => {
        const keys = keysOf(trustSnapshot(d), auto);
        return keys.length === 1 && keys[0] !== autoOld;
      },
      { what: `the fleet on ${label(auto)}'s new CA alone`, timeoutMs: 20_000 },
    );
    await newConnections(d, c, `${label(auto)} rotated automatically`);
    changes.push({ what: `${label(auto)} standby (automatic)`, at: Date.now() });
    t.diagnostic(`${label(auto)} walked init → standby by itself (--grace 3s)`);
    for (const [a, st] of await statusesOf(
      d.ca,
      plans.map((p) => p.authority),
    )) {
      assert.equal(st.phase, 'standby', label(a));
    }
    const { streams, mib } = await assertTraffic(traffic, changes);
    t.diagnostic(`${streams} overlapping streams, ${mib.toFixed(1)} MiB, all byte-exact`);
    assertConnectClean(c);
    assertNoRestart(pids);
  });
});

test('a gateway away since update_clients is told E_ROTATION_MISSED; one away only for standby catches up', async (t) => {
  const { d, c, traffic } = await deployment(t, 3);
  await withTails(d, async () => {
    const pids = pidsOf(d);
    const note = (msg: string) => t.diagnostic(`${new Date().toISOString().slice(11, 23)} ${msg}`);
    // The gateways' TLS CA (a gateway away for it cannot authenticate any more) and the proxies' host CA (which
    // a returning gateway learns anew when it renews).
    const tls: Authority = { scope: 'org', name: 'gateway-server' };
    const host: Authority = { scope: 'instance', name: 'proxy-ssh-server' };
    const both = [tls, host];
    const [gw1, gw2, gw3] = d.gateways as [GatewayHandle, GatewayHandle, GatewayHandle];
    const oldHost = keysOf(trustSnapshot(d), host);
    const changes: { what: string; at: number }[] = [];
    const step = async (phase: string, o: { timeoutMs?: number } = {}) => {
      for (const a of both) {
        if (phase === 'init') await rotateNow(d.ca, 'start', a);
        else {
          const r = await advance(d.ca, a, o);
          assert.equal(r.phase, phase, label(a));
          if (r.refusals > 0)
            note(`${label(a)} → ${phase}: refused ${r.refusals}×, last: ${r.lastRefusal.slice(0, 300)}`);
        }
      }
      changes.push({ what: phase, at: Date.now() });
      note(`${phase}`);
      const acks = await acknowledged(d.ca, both);
      note(`${phase} acknowledged`);
      return acks;
    };
    await step('init');
    await step('update_clients');

    await gw2.stop();
    // gw-2 is listed offline (after the silence the CA allows), not waited for.
    const acks = await step('update_servers', { timeoutMs: 120_000 });
    for (const a of both) {
      const { status } = acks.get(a)!;
      assert.ok(
        status.offline.some((id) => id.includes('gw-2')),
        `gw-2 listed offline: ${JSON.stringify(status)}`,
      );
      assert.ok(!status.offline.some((id) => /gw-[13]/.test(id)), `gw-1, gw-3 online: ${JSON.stringify(status)}`);
    }
    // gw-3 acknowledged update_servers (renewed from the new TLS CA), then is away while the host CA goes to
    // standby. (Each move changes the rotation version of every gateway, so a gateway away for one move is
    // waited for, until offline, by the next move of any rotation: the host CA moves alone here.)
    await gw3.stop();
    assert.equal((await advance(d.ca, host)).phase, 'standby');
    changes.push({ what: `${label(host)} standby`, at: Date.now() });
    note(`${label(host)} standby`);
    await newConnections(d, c, `${label(host)} standby without gw-2 and gw-3`, [gw1]);

    // gw-3 comes back and catches up by itself: it renews, trusts the new host CA alone and reaches every proxy.
    await gw3.start();
    note('gw-3 started again');
    await gw3.waitTunnels(d.proxies.length, 60_000);
    note('gw-3 has a tunnel to every proxy');
    await waitFor(
      () => {
        const keys = keysOf(trustSnapshot(d, { gateways: [gw3] }), host);
        return keys.length === 1 && keys[0] !== oldHost[0];
      },
      { what: 'gw-3 to trust the new proxy host CA alone', timeoutMs: 30_000 },
    );
    await newConnections(d, c, 'gw-3 back after standby', [gw1, gw3]);
    t.diagnostic('gw-3, away for standby only, caught up: new host CA alone, tunnels to every proxy');

    assert.equal((await advance(d.ca, tls)).phase, 'standby');
    changes.push({ what: `${label(tls)} standby`, at: Date.now() });
    note(`${label(tls)} standby`);
    await newConnections(d, c, `${label(tls)} standby`, [gw1, gw3]);

    // Started again, gw-2 learns that it missed the rotation: it says so with the code and stops (or stays
    // up not ready, saying so), instead of hanging or retrying.
    const logStart = gw2.log().length;
    note('gw-2 starting again');
    gw2.spawn();
    const missed = () =>
      (
        gw2
          .log()
          .slice(logStart)
          .match(/E_ROTATION_MISSED/g) ?? []
      ).length;
    const exit = await Promise.race([
      gw2.exited,
      waitFor(async () => (await gw2.readyz().catch(() => undefined))?.json?.['code'] === 'E_ROTATION_MISSED', {
        what: 'gw-2 to say E_ROTATION_MISSED',
        timeoutMs: 60_000,
        detail: () => gw2.tail(),
      }).then(() => undefined),
    ]);
    if (exit) {
      assert.notEqual(exit.code, 0, `gw-2 exits with a failure: ${gw2.tail()}`);
      assert.ok(missed() > 0, `gw-2's log names E_ROTATION_MISSED:\n${gw2.tail()}`);
      t.diagnostic(`gw-2 exited ${exit.signal ?? exit.code}, ${missed()} log mentions of E_ROTATION_MISSED`);
    } else {
      const r = await gw2.readyz();
      assert.equal(r.status, 503, r.text);
      const first = missed();
      assert.ok(first > 0, `gw-2's log names E_ROTATION_MISSED:\n${gw2.tail()}`);
      await new Promise((res) => setTimeout(res, 5000));
      assert.ok(missed() <= first + 1, `gw-2 does not retry in a loop (${first} → ${missed()} mentions)`);
      assert.equal(await gw2.tunnelsUp(), 0, 'gw-2 holds no tunnel');
      t.diagnostic(`gw-2 stays up, /readyz 503 E_ROTATION_MISSED, ${missed()} log mentions`);
      await gw2.stop();
    }
    // Started once more (systemd, an operator), it refuses at once, still naming the missed rotation, not as if
    // an operator had revoked it.
    const again = gw2.log().length;
    gw2.spawn();
    const second = await Promise.race([gw2.exited, sleep(30_000).then(() => undefined)]);
    const output = gw2.log().slice(again);
    if (!second) await gw2.kill();
    assert.ok(second, `gw-2 started once more exits instead of running on:\n${gw2.tail()}`);
    assert.notEqual(second.code, 0, `gw-2 started once more fails:\n${output}`);
    assert.match(output, /E_ROTATION_MISSED/, `gw-2 started once more names the missed rotation:\n${output}`);
    t.diagnostic(`gw-2 started once more exited ${second.signal ?? second.code}`);
    assert.equal(await gw1.tunnelsUp(), d.proxies.length, 'gw-1 carries on');
    await newConnections(d, c, 'after gw-2 was refused', [gw1, gw3]);
    const { streams, mib } = await assertTraffic(traffic, changes);
    t.diagnostic(`${streams} overlapping streams through gw-1, ${mib.toFixed(1)} MiB, all byte-exact`);
    assertConnectClean(c);
    assertNoRestart(pids, [gw2, gw3]);
  });
});
