/**
 * Commands beside a running `serve` (real processes, one CA, one proxy, one gateway): a second serve or an
 * enroll on the same state directory is refused naming the pid that holds it (E_CONFIG_INVALID, exit 78);
 * renew and the CA's admin commands keep working; a SIGKILLed serve does not block the next start; `status`
 * reports the state directory and, when serve runs, its ops endpoint.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { type Deployment, ORG, startDeployment, waitFor } from '../lifecycle/deploy.js';
import { cleanEnv, programPath } from '../lifecycle/process.js';

let d: Deployment;
before(async () => {
  d = await startDeployment({ proxies: 1, gateways: 1 });
});
after(() => d?.close());

function run(
  program: 'gateway' | 'proxy',
  args: string[],
  env: Record<string, string> = {},
): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [programPath(program), ...args],
      { env: cleanEnv(env), timeout: 60_000 },
      (err, stdout, stderr) =>
        resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr }),
    );
  });
}

const heldBy = (role: string, pid: number | undefined) =>
  new RegExp(`^infisical-${role}: E_CONFIG_INVALID: .*is in use by infisical-${role} serve \\(pid ${pid},`);

test('a second serve on a state directory in use is refused, naming the pid that holds it', async () => {
  const g = d.gateways[0]!;
  const p = d.proxies[0]!;
  const [gateway, proxy] = await Promise.all([
    run('gateway', ['serve', '--state-dir', g.stateDir, '--ops-listen', '127.0.0.1:0']),
    run('proxy', [
      'serve',
      '--state-dir',
      p.stateDir,
      '--ops-listen',
      '127.0.0.1:0',
      '--ssh-listen',
      '127.0.0.1:0',
      '--tls-listen',
      '127.0.0.1:0',
    ]),
  ]);
  assert.equal(gateway.code, 78, gateway.stderr);
  assert.match(gateway.stderr, heldBy('gateway', g.pid));
  assert.equal(proxy.code, 78, proxy.stderr);
  assert.match(proxy.stderr, heldBy('proxy', p.pid));
  assert.equal((await g.readyz()).status, 200, 'the running gateway is untouched');
  assert.equal((await p.readyz()).status, 200, 'the running proxy is untouched');
});

test('enroll under a running serve is refused before the CA is asked', async () => {
  const g = d.gateways[0]!;
  const token = String((await d.ca.cli(['token', '--org', ORG, '--kind', 'gateway', '--subject', 'gw-1']))['token']);
  const r = await run(
    'gateway',
    ['enroll', '--state-dir', g.stateDir, ...d.ca.pinned(), '--org', ORG, '--gateway-id', 'gw-1'],
    { INFISICAL_GATEWAY_ENROLLMENT_TOKEN: token },
  );
  assert.equal(r.code, 78, r.stderr);
  assert.match(r.stderr, heldBy('gateway', g.pid));
  // The CA was not asked: the one gateway enrollment in its audit is the deployment's.
  const audit = (await d.ca.cli(['audit']))['entries'] as { action: string }[];
  assert.equal(audit.filter((e) => e.action === 'gateway.enroll').length, 1);
});

test('renew and the CA admin commands work beside a running serve', async () => {
  const g = d.gateways[0]!;
  const p = d.proxies[0]!;
  for (const [role, dir] of [
    ['gateway', g.stateDir],
    ['proxy', p.stateDir],
  ] as const) {
    const r = await run(role, ['renew', '--state-dir', dir, '--json']);
    assert.equal(r.code, 0, `${role} renew: ${r.stderr}`);
    const out = JSON.parse(r.stdout) as { serial: string; previousSerial: string };
    assert.notEqual(out.serial, out.previousSerial);
  }
  const gateways = (await d.ca.cliResult(['gateway', 'list', ORG])).stdout;
  assert.match(gateways, /gw-1/);
  assert.equal((await g.readyz()).status, 200);
});

test('the CA lists each gateway and proxy as online, with when it was last seen and its version', async () => {
  type Listed = { online: boolean; lastSeenAt: string | null; version: string | null };
  const listed = async () => {
    const [g] = (await d.ca.cli(['gateway', 'list', ORG])) as unknown as (Listed & { gatewayId: string })[];
    const [p] = (await d.ca.cli(['proxy', 'list'])) as unknown as (Listed & { proxyId: string })[];
    return { g: g!, p: p! };
  };
  // Both read the feed at start; the first read is recorded at once.
  const { g, p } = await waitFor(
    async () => {
      const l = await listed();
      return l.g.online && l.p.online ? l : undefined;
    },
    { what: 'the CA to list gw-1 and proxy-1 online', detail: () => d.tails() },
  );
  for (const c of [g, p]) {
    assert.equal(c.version, '0.1.0');
    assert.ok(Date.now() - Date.parse(c.lastSeenAt!) < 120_000, `last seen ${c.lastSeenAt}`);
  }
  // The table (ca.cli adds --json).
  const table = await new Promise<string>((resolve) => {
    execFile(
      process.execPath,
      [programPath('ca'), 'gateway', 'list', ORG, '--state-dir', d.ca.stateDir],
      { env: cleanEnv() },
      (_e, out) => resolve(out),
    );
  });
  const [header, row] = table
    .trim()
    .split('\n')
    .map((l) => l.split('\t'));
  assert.deepEqual(header!.slice(-3), ['ONLINE', 'LAST_SEEN', 'VERSION']);
  assert.equal(row![0], 'gw-1');
  assert.deepEqual([row!.at(-3), row!.at(-1)], ['yes', '0.1.0']);
});

test('a SIGKILLed serve does not block the next start', async () => {
  const g = d.gateways[0]!;
  await g.kill();
  await g.start();
  await g.waitTunnels(1);
  const p = d.proxies[0]!;
  await p.kill();
  await p.start();
});

interface Status {
  role: string;
  uri: string;
  orgId: string | null;
  id: string;
  certificates: { name: string; notAfter: string }[];
  revoked: boolean;
  serve: {
    pid: number;
    ready?: boolean;
    counts?: Record<string, number>;
    detail?: { proxies?: { proxyId: string; state: string }[] };
    feedLastSuccess?: string | null;
    nextRenewal?: string | null;
    certificateExpiry?: string | null;
    revoked?: boolean;
  } | null;
}

async function status(role: 'gateway' | 'proxy', dir: string): Promise<Status> {
  const r = await run(role, ['status', '--state-dir', dir, '--json']);
  assert.equal(r.code, 0, `${role} status: ${r.stderr}`);
  return JSON.parse(r.stdout) as Status;
}

test('status: enrolled as what, certificates, and what the running serve reports; then stopped, then revoked', async () => {
  const g = d.gateways[0]!;
  const p = d.proxies[0]!;
  const gs = await waitFor(
    async () => {
      const s = await status('gateway', g.stateDir);
      return s.serve?.feedLastSuccess && s.serve.counts?.['tunnels up'] === 1 ? s : undefined;
    },
    { what: 'gateway status to show a feed read and its tunnel', detail: () => d.tails() },
  );
  assert.equal(gs.uri, `spiffe://infisical.local/org/${ORG}/gateway/gw-1`);
  assert.equal(gs.orgId, ORG);
  assert.equal(gs.id, 'gw-1');
  assert.equal(gs.revoked, false);
  assert.ok(gs.certificates.length >= 2 && gs.certificates.every((c) => Date.parse(c.notAfter) > Date.now()));
  assert.equal(gs.serve!.pid, g.pid);
  assert.equal(gs.serve!.ready, true);
  assert.equal(gs.serve!.counts!['tunnels total'], 1);
  assert.deepEqual(gs.serve!.detail!.proxies, [{ proxyId: 'proxy-1', state: 'up' }]);
  assert.ok(Date.parse(gs.serve!.nextRenewal!) > Date.now(), 'next renewal ahead');
  assert.ok(Date.parse(gs.serve!.certificateExpiry!) > Date.now());
  assert.equal(gs.serve!.revoked, false);

  const ps = await status('proxy', p.stateDir);
  assert.equal(ps.uri, 'spiffe://infisical.local/instance/proxy/proxy-1');
  assert.equal(ps.orgId, null);
  assert.equal(ps.serve!.pid, p.pid);
  assert.equal(ps.serve!.counts!['tunnels'], 1);
  assert.equal(typeof ps.serve!.counts!['streams open'], 'number');

  const text = await run('gateway', ['status', '--state-dir', g.stateDir]);
  assert.equal(text.code, 0, text.stderr);
  assert.match(text.stdout, new RegExp(`serve: running, pid ${g.pid}`));
  assert.match(text.stdout, /proxy proxy-1: up/);
  assert.match(text.stdout, /revoked: no/);

  await g.stop();
  const stopped = await status('gateway', g.stateDir);
  assert.equal(stopped.serve, null);
  assert.match((await run('gateway', ['status', '--state-dir', g.stateDir])).stdout, /serve: not running/);

  await d.revoke('proxy', 'proxy-1');
  await waitFor(async () => (await status('proxy', p.stateDir)).serve?.revoked === true, {
    what: 'proxy status to say revoked',
    detail: () => d.tails(),
  });
  assert.equal((await status('proxy', p.stateDir)).revoked, true, 'the store holds its revocation');
});
