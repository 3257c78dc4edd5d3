/**
 * Commands beside a running `serve` (real processes, one CA, one proxy, one gateway): a second serve or an
 * enroll on the same state directory is refused naming the pid that holds it (E_CONFIG_INVALID, exit 78);
 * renew and the CA's admin commands keep working; a SIGKILLed serve does not block the next start.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { after, before, test } from 'node:test';
import { type Deployment, ORG, startDeployment } from '../lifecycle/deploy.js';
import { cleanEnv, programPath } from '../lifecycle/process.js';

let d: Deployment;
before(async () => {
  d = await startDeployment({ proxies: 1, gateways: 1 });
});
after(() => d?.close());

function run(program: 'gateway' | 'proxy', args: string[]): Promise<{ code: number; stdout: string; stderr: string }> {
  return new Promise((resolve) => {
    execFile(
      process.execPath,
      [programPath(program), ...args],
      { env: cleanEnv(), timeout: 60_000 },
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
  const r = await run('gateway', [
    'enroll',
    '--state-dir',
    g.stateDir,
    ...d.ca.pinned(),
    '--token',
    token,
    '--org',
    ORG,
    '--gateway-id',
    'gw-1',
  ]);
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

test('a SIGKILLed serve does not block the next start', async () => {
  const g = d.gateways[0]!;
  await g.kill();
  await g.start();
  await g.waitTunnels(1);
  const p = d.proxies[0]!;
  await p.kill();
  await p.start();
});
