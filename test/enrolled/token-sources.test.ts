/**
 * Where `enroll` takes its one-time token from, driven through the real programs against a real CA (issue 14,
 * secrets): a 0600 --token-file, standard input (--token-file -) and INFISICAL_<DAEMON>_ENROLLMENT_TOKEN each
 * enroll silently; --token on the command line (visible in ps) still enrolls but warns; a token or secret file
 * readable by group or others is refused with E_SECRET_FILE_MODE, the chmod that fixes it and exit 78, before
 * anything is enrolled or the token spent. infisical-connect's --client-secret-file follows the same rule.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { chmodSync, existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { assertByteExact, type Deployment, ORG, startDeployment } from '../lifecycle/deploy.js';
import { cleanEnv, type Program, programPath } from '../lifecycle/process.js';

interface Run {
  code: number | null;
  stdout: string;
  stderr: string;
}

/** Runs a program to its exit with `stdin` written to it and `env` added to a clean environment. */
function run(program: Program, args: string[], o: { env?: Record<string, string>; stdin?: string } = {}): Promise<Run> {
  const child = spawn(process.execPath, [programPath(program), ...args], {
    stdio: ['pipe', 'pipe', 'pipe'],
    env: cleanEnv(o.env ?? {}),
  });
  let stdout = '';
  let stderr = '';
  child.stdout.on('data', (d: Buffer) => {
    stdout += d.toString();
  });
  child.stderr.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  child.stdin.on('error', () => {}); // a program that exits without reading its input
  child.stdin.end(o.stdin ?? '');
  const timer = setTimeout(() => child.kill('SIGKILL'), 60_000);
  return new Promise((resolve) =>
    child.once('close', (code) => {
      clearTimeout(timer);
      resolve({ code, stdout, stderr });
    }),
  );
}

let d: Deployment;
before(async () => {
  d = await startDeployment({ proxies: 1, gateways: 0 });
});
after(() => d?.close());

const secretFile = (name: string, content: string, mode: number): string => {
  const file = join(d.dir, 'secrets', name);
  writeFileSync(file, `${content}\n`, { mode });
  chmodSync(file, mode);
  return file;
};

async function gatewayToken(gatewayId: string): Promise<string> {
  return String((await d.ca.cli(['token', '--org', ORG, '--kind', 'gateway', '--subject', gatewayId]))['token']);
}

function gatewayEnroll(gatewayId: string, extra: string[]): string[] {
  const stateDir = join(d.dir, gatewayId);
  return ['enroll', '--state-dir', stateDir, ...d.ca.pinned(), '--org', ORG, '--gateway-id', gatewayId, ...extra];
}

async function enrolledGateways(): Promise<string[]> {
  const list = (await d.ca.cli(['gateway', 'list', ORG])) as unknown as { gatewayId: string }[];
  return list.map((g) => g.gatewayId);
}

/** The CA knows it, and its state database holds the enrollment. */
async function assertEnrolled(r: Run, gatewayId: string, what: string): Promise<void> {
  assert.equal(r.code, 0, `${what}: exit ${r.code}\n${r.stderr}`);
  const out = JSON.parse(r.stdout) as { gatewayUri: string; database: string };
  assert.ok(out.gatewayUri.endsWith(`/gateway/${gatewayId}`), `${what}: ${out.gatewayUri}`);
  assert.ok(existsSync(out.database), `${what}: ${out.database} exists`);
  assert.ok((await enrolledGateways()).includes(gatewayId), `${what}: the CA lists ${gatewayId}`);
}

test('gateway: a token from a 0600 --token-file, from standard input and from the environment each enroll, silently', async () => {
  const fromFile = await run(
    'gateway',
    gatewayEnroll('gw-file', [
      '--token-file',
      secretFile('gw-file.token', await gatewayToken('gw-file'), 0o600),
      '--json',
    ]),
  );
  await assertEnrolled(fromFile, 'gw-file', '--token-file PATH');
  assert.equal(fromFile.stderr, '', 'no warning for a token file');

  const fromStdin = await run('gateway', gatewayEnroll('gw-stdin', ['--token-file', '-', '--json']), {
    stdin: `${await gatewayToken('gw-stdin')}\n`,
  });
  await assertEnrolled(fromStdin, 'gw-stdin', '--token-file -');
  assert.equal(fromStdin.stderr, '', 'no warning for standard input');

  const fromEnv = await run('gateway', gatewayEnroll('gw-env', ['--json']), {
    env: { INFISICAL_GATEWAY_ENROLLMENT_TOKEN: await gatewayToken('gw-env') },
  });
  await assertEnrolled(fromEnv, 'gw-env', 'INFISICAL_GATEWAY_ENROLLMENT_TOKEN');
  assert.equal(fromEnv.stderr, '', 'no warning for the environment');
});

test('gateway: --token on the command line still enrolls, with a warning that names the safe ways', async () => {
  const r = await run('gateway', gatewayEnroll('gw-argv', ['--token', await gatewayToken('gw-argv'), '--json']));
  await assertEnrolled(r, 'gw-argv', '--token');
  assert.match(
    r.stderr,
    /^infisical-gateway: warning: --token puts the enrollment token on the command line, where every user of this host can read it \(ps\); use --token-file PATH, --token-file - \(standard input\) or INFISICAL_GATEWAY_ENROLLMENT_TOKEN instead\n$/,
  );
  JSON.parse(r.stdout); // stdout stays the JSON answer alone
});

test('gateway: a token file readable by group or others is refused with the chmod that fixes it; nothing is enrolled or spent', async () => {
  const token = await gatewayToken('gw-loose');
  for (const mode of [0o644, 0o640]) {
    const file = secretFile('gw-loose.token', token, mode);
    const r = await run('gateway', gatewayEnroll('gw-loose', ['--token-file', file]));
    assert.equal(r.code, 78, r.stderr);
    const octal = `0${mode.toString(8)}`;
    assert.equal(
      r.stderr,
      `infisical-gateway: E_SECRET_FILE_MODE: secret file is readable by group or others: ${file} has mode ${octal} ` +
        `(refused, as OpenSSH refuses such a private key); fix it with: chmod 600 ${file}\n`,
    );
    assert.equal(r.stdout, '');
    assert.equal(existsSync(join(d.dir, 'gw-loose')), false, 'no state directory was made');
    assert.ok(!(await enrolledGateways()).includes('gw-loose'), 'the CA enrolled nothing');
  }
  // The token was never sent: after the chmod it still enrolls.
  chmodSync(join(d.dir, 'secrets', 'gw-loose.token'), 0o600);
  const fixed = await run(
    'gateway',
    gatewayEnroll('gw-loose', ['--token-file', join(d.dir, 'secrets', 'gw-loose.token'), '--json']),
  );
  await assertEnrolled(fixed, 'gw-loose', 'after chmod 600');
});

test('proxy: --token-file enrolls (kind proxy); a loose --client-secret-file is refused the same way', async () => {
  const token = String((await d.ca.cli(['token', '--kind', 'proxy', '--subject', 'p-file']))['token']);
  const common = (id: string) => [
    'enroll',
    '--state-dir',
    join(d.dir, id),
    ...d.ca.pinned(),
    '--scope',
    'instance',
    '--proxy-id',
    id,
    '--hostname',
    '127.0.0.1',
    '--ssh-listen',
    '127.0.0.1:0',
    '--tls-listen',
    '127.0.0.1:0',
    '--json',
  ];
  const r = await run('proxy', [...common('p-file'), '--token-file', secretFile('p-file.token', token, 0o600)]);
  assert.equal(r.code, 0, r.stderr);
  assert.ok(String(JSON.parse(r.stdout)['proxyUri']).endsWith('/p-file'), r.stdout);
  assert.equal(r.stderr, '');

  const loose = secretFile('admin-loose.secret', d.ca.adminClientSecret, 0o604);
  const refused = await run('proxy', [
    ...common('p-loose'),
    '--admin-client-id',
    d.ca.adminClientId,
    '--client-secret-file',
    loose,
  ]);
  assert.equal(refused.code, 78, refused.stderr);
  assert.match(refused.stdout, /"code":"E_SECRET_FILE_MODE"/);
  assert.ok(refused.stdout.includes(`has mode 0604`) && refused.stdout.includes(`chmod 600 ${loose}`), refused.stdout);
  assert.equal(existsSync(join(d.dir, 'p-loose')), false, 'no state directory was made');
});

test('infisical-connect: a loose --client-secret-file is refused (exit 2); the secret still has no flag', async () => {
  const loose = secretFile('app-loose.secret', 'not-read', 0o644);
  const args = [...d.ca.pinned(), '--org', ORG, '--client-id', d.app.clientId, '--gateway', 'gw-file', '--count', '1'];
  const r = await run('connect', ['ping', ...args, '--target', d.target.address, '--client-secret-file', loose]);
  assert.equal(r.code, 2, r.stderr);
  assert.match(r.stderr, new RegExp(`E_SECRET_FILE_MODE: .*${loose} has mode 0644 .*chmod 600 ${loose}`));
  const help = await run('connect', ['--help']);
  assert.doesNotMatch(help.stdout, /--client-secret[^-]/, 'no flag takes the secret itself');
});

test('a gateway enrolled from a token file serves: a checksummed transfer crosses it', async () => {
  // The harness enrolls every gateway with --token-file now (test/lifecycle/roles.ts).
  const g = await d.addGateway();
  await g.waitTunnels(1);
  const c = await d.connect({ gateway: g });
  assertByteExact(await d.transfer(c, 1 << 20), 'transfer through a --token-file gateway');
});
