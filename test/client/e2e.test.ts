/**
 * End to end: real `psql` and `curl` through `infisical-connect` (a child process) → CA over HTTPS (pinned) →
 * proxy (lib/proxy) → SSH reverse tunnel → gateway (lib/gateway) → PostgreSQL 15 / an HTTP service.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, execFile, spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import http from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { createInterface } from 'node:readline';
import { after, before, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { PG_BIN, type Postgres, startPostgres } from '../helpers/postgres.js';
import { GATEWAY, type Installation, ORG, startInstallation } from './installation.js';

const CONNECT = join(dirname(fileURLToPath(import.meta.url)), '../../daemons/connect.js');
const run = promisify(execFile);

let pg: Postgres;
let web: http.Server;
let webPort: number;
let inst: Installation;
let dir: string;
const NOT_IN_ALLOWLIST = 9; // allowed by the CA policy, not by the gateway's allowlist

before(async () => {
  pg = await startPostgres();
  web = http.createServer((req, res) => {
    res.writeHead(200, { 'content-type': 'application/json' });
    res.end(JSON.stringify({ url: req.url, host: req.headers.host, method: req.method }));
  });
  web.listen(0, '127.0.0.1');
  await once(web, 'listening');
  webPort = (web.address() as AddressInfo).port;
  inst = await startInstallation({
    proxies: 2,
    policyTargets: [`127.0.0.1:${pg.port}`, `127.0.0.1:${webPort}`, `127.0.0.1:${NOT_IN_ALLOWLIST}`, 'name:ping'],
    allowPorts: [pg.port, webPort],
  });
  dir = mkdtempSync(join(tmpdir(), 'client-e2e-'));
  writeFileSync(join(dir, 'secret'), `${inst.clientSecret}\n`, { mode: 0o600 });
});

after(async () => {
  await inst?.close();
  web?.closeAllConnections();
  web?.close();
  await pg?.stop();
  if (dir) rmSync(dir, { recursive: true, force: true });
});

function common(secretFile = join(dir, 'secret')): string[] {
  return [
    '--json',
    '--ca',
    inst.caUrl,
    '--ca-fingerprint',
    `sha256:${inst.fingerprint}`,
    '--org',
    ORG,
    '--client-id',
    inst.clientId,
    '--client-secret-file',
    secretFile,
  ];
}

interface Cli {
  child: ChildProcess;
  events: Record<string, unknown>[];
  /** Resolves with the first event of this kind. */
  next(event: string, timeoutMs?: number): Promise<Record<string, unknown>>;
  exit: Promise<number | null>;
}

function startCli(args: string[]): Cli {
  const child = spawn(process.execPath, [CONNECT, ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  const events: Record<string, unknown>[] = [];
  const waiters: { event: string; resolve: (e: Record<string, unknown>) => void }[] = [];
  createInterface({ input: child.stdout! }).on('line', (line) => {
    const e = JSON.parse(line) as Record<string, unknown>;
    events.push(e);
    for (const w of waiters.filter((x) => x.event === e['event'])) w.resolve(e);
  });
  let stderr = '';
  child.stderr!.on('data', (d: Buffer) => {
    stderr += d.toString();
  });
  const exit = new Promise<number | null>((resolve) => child.once('exit', (code) => resolve(code)));
  return {
    child,
    events,
    exit,
    next: (event, timeoutMs = 20_000) => {
      const seen = events.find((e) => e['event'] === event);
      if (seen) return Promise.resolve(seen);
      return new Promise((resolve, reject) => {
        const timer = setTimeout(
          () => reject(new Error(`no ${event} event; got ${JSON.stringify(events)} ${stderr}`)),
          timeoutMs,
        );
        waiters.push({
          event,
          resolve: (e) => {
            clearTimeout(timer);
            resolve(e);
          },
        });
        void exit.then(() =>
          setTimeout(() => reject(new Error(`exited before ${event}: ${JSON.stringify(events)} ${stderr}`)), 50),
        );
      });
    },
  };
}

async function stopCli(cli: Cli): Promise<void> {
  cli.child.kill('SIGTERM');
  assert.equal(await cli.exit, 0);
}

const psql = (port: number, sql: string) =>
  run(join(PG_BIN, 'psql'), ['-h', '127.0.0.1', '-p', String(port), '-U', 'postgres', '-At', '-c', sql], {
    timeout: 20_000,
    env: { ...process.env, PGCONNECT_TIMEOUT: '10' },
  });

test('psql through `infisical-connect tcp` reaches PostgreSQL 15 behind the gateway', async () => {
  const cli = startCli([
    'tcp',
    ...common(),
    '--gateway',
    GATEWAY,
    '--target',
    `127.0.0.1:${pg.port}`,
    '--listen',
    '127.0.0.1:0',
  ]);
  try {
    const listening = await cli.next('listening');
    const port = Number(listening['port']);
    const [a, b] = await Promise.all([psql(port, 'select 40 + 2'), psql(port, "select current_setting('port')")]);
    assert.equal(a.stdout.trim(), '42');
    assert.equal(b.stdout.trim(), String(pg.port));
    const grants = cli.events.filter((e) => e['event'] === 'grant');
    assert.equal(grants.length, 1, 'one CA grant served both connections');
    assert.ok(cli.events.filter((e) => e['event'] === 'opened').length >= 2);
  } finally {
    await stopCli(cli);
  }
  assert.ok(inst.records.some((r) => r.mode === 'tcp' && r.target === `127.0.0.1:${pg.port}` && r.outcome === 'ok'));
});

test('curl through `infisical-connect http` reaches the private HTTP service; another target is refused', async () => {
  const cli = startCli(['http', ...common(), '--gateway', GATEWAY, '--target', `http://127.0.0.1:${webPort}`]);
  try {
    const port = Number((await cli.next('listening'))['port']);
    const { stdout } = await run('curl', ['-sS', '--max-time', '15', `http://127.0.0.1:${port}/hello?x=1`]);
    assert.deepEqual(JSON.parse(stdout), { url: '/hello?x=1', host: `127.0.0.1:${webPort}`, method: 'GET' });
    // Used as a forward proxy for ANOTHER target, the gateway checks the grant and answers 403.
    const other = await run('curl', [
      '-sS',
      '--max-time',
      '15',
      '-x',
      `http://127.0.0.1:${port}`,
      '-w',
      '\n%{http_code}',
      `http://127.0.0.1:${pg.port}/`,
    ]);
    const lines = other.stdout.trim().split('\n');
    assert.equal(lines.at(-1), '403');
    assert.equal(JSON.parse(lines[0]!).code, 'E_GRANT_TARGET');
  } finally {
    await stopCli(cli);
  }
});

test('`infisical-connect ping` measures the way through each proxy', async () => {
  const cli = startCli(['ping', ...common(), '--gateway', GATEWAY, '--count', '3']);
  assert.equal(await cli.exit, 0);
  const pings = cli.events.filter((e) => e['event'] === 'ping');
  assert.deepEqual(
    pings.map((p) => [p['proxyId'], p['ok'], (p['rttMs'] as number[]).length]),
    [
      ['p1', true, 3],
      ['p2', true, 3],
    ],
  );
  assert.deepEqual(cli.events.find((e) => e['event'] === 'summary')?.['ok'], 2);
});

test('a policy refusal fails fast, names the CA hop, exit code 4', async () => {
  const cli = startCli(['tcp', ...common(), '--gateway', GATEWAY, '--target', '127.0.0.1:1']);
  assert.equal(await cli.exit, 4);
  const err = cli.events.find((e) => e['event'] === 'error')!;
  assert.equal(err['code'], 'E_POLICY_DENIED');
  assert.equal(err['hop'], 'ca');
});

test('a wrong client secret is refused by the CA, exit code 3', async () => {
  const bad = join(dir, 'bad-secret');
  writeFileSync(bad, 'not-the-secret\n', { mode: 0o600 });
  const cli = startCli(['tcp', ...common(bad), '--gateway', GATEWAY, '--target', `127.0.0.1:${pg.port}`]);
  assert.equal(await cli.exit, 3);
  const err = cli.events.find((e) => e['event'] === 'error')!;
  assert.equal(err['hop'], 'ca');
  assert.match(String(err['code']), /^E_AUTH_/);
});

test("the gateway's allowlist refusal reaches the CLI with its code, the gateway and the key to set", async () => {
  const cli = startCli(['tcp', ...common(), '--gateway', GATEWAY, '--target', `127.0.0.1:${NOT_IN_ALLOWLIST}`]);
  try {
    const port = Number((await cli.next('listening'))['port']);
    await assert.rejects(psql(port, 'select 1'));
    const err = await cli.next('error');
    assert.equal(err['code'], 'E_TARGET_NOT_ALLOWED');
    assert.equal(err['hop'], 'gateway');
    assert.equal(err['gatewayId'], GATEWAY);
    assert.match(
      String(err['message']),
      new RegExp(`127\\.0\\.0\\.1:${NOT_IN_ALLOWLIST} .*\\(set allow_ports there\\)`),
    );
    assert.equal(cli.events.filter((e) => e['event'] === 'proxy-failed' && e['proxyId'] === 'p2').length, 0);
  } finally {
    await stopCli(cli);
  }
  assert.ok(inst.refusals.some((r) => r.code === 'E_TARGET_NOT_ALLOWED'));
});

test('a grant revoked under a running `infisical-connect tcp`: the next psql gets through on a new grant', async () => {
  const cli = startCli(['tcp', ...common(), '--gateway', GATEWAY, '--target', `127.0.0.1:${pg.port}`]);
  try {
    const port = Number((await cli.next('listening'))['port']);
    assert.equal((await psql(port, 'select 1')).stdout.trim(), '1');
    const first = String((await cli.next('grant'))['grantId']);
    // Revoked at the CA, and at the gateway as the CA's feed would bring it.
    await inst.admin.revoke({ kind: 'grant', orgId: ORG, subject: first, reason: 'test' });
    inst.revokeAtGateway({ kind: 'grant', subject: first, orgId: ORG });
    assert.equal((await psql(port, 'select 2')).stdout.trim(), '2', 'no failure after the revocation');
    const dropped = await cli.next('grant-dropped');
    assert.equal(dropped['grantId'], first);
    assert.equal(dropped['code'], 'E_CERT_REVOKED');
    assert.equal(dropped['hop'], 'gateway');
    const grants = cli.events.filter((e) => e['event'] === 'grant').map((e) => e['grantId']);
    assert.equal(grants.length, 2);
    assert.notEqual(grants[1], first, 'a new grant id');
    assert.equal(cli.events.filter((e) => e['event'] === 'error').length, 0);
  } finally {
    await stopCli(cli);
  }
});

test('failover: with proxy p1 stopped, psql still gets through p2', async () => {
  await inst.proxies[0]!.stop();
  const cli = startCli(['tcp', ...common(), '--gateway', GATEWAY, '--target', `127.0.0.1:${pg.port}`]);
  try {
    const port = Number((await cli.next('listening'))['port']);
    assert.equal((await psql(port, 'select 7')).stdout.trim(), '7');
    const failed = cli.events.find((e) => e['event'] === 'proxy-failed');
    assert.equal(failed?.['proxyId'], 'p1');
    assert.equal(failed?.['code'], 'E_PROXY_UNREACHABLE');
    assert.equal(cli.events.find((e) => e['event'] === 'opened')?.['proxyId'], 'p2');
  } finally {
    await stopCli(cli);
  }
});
