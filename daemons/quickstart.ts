#!/usr/bin/env node
/**
 * `make run`: a complete local deployment with embedded defaults, state under the project folder.
 *
 *   1. the CA (initialised once), an org "demo", a machine identity "app" and a policy rule for it;
 *   2. an instance proxy, enrolled against the CA with the admin credential;
 *   3. a sample private resource (an HTTP server on 127.0.0.1);
 *   4. a gateway, enrolled with a one-time token, whose allowlist admits only that resource;
 *   5. one connection through the tunnel (infisical-connect http → proxy → SSH tunnel → gateway → resource),
 *      then instructions to connect by hand. Ctrl-C stops everything.
 *
 * Every daemon runs as its own process, exactly as an operator would run it; their logs go to
 * <state>/logs/. Re-running reuses the state (delete the state folder to start over).
 * Options: --once (stop after the demo connection; used by the tests), --state DIR, --port-base N.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { chmodSync, createWriteStream, existsSync, mkdirSync, readFileSync, writeFileSync } from 'node:fs';
import { createServer, request } from 'node:http';
import { dirname, join, resolve } from 'node:path';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { gatewayConfigSchema } from '../lib/gateway/config.js';
import { envName } from '../lib/runtime/config-schema.js';
import { EXIT_REVOKED } from '../lib/runtime/exit-status.js';
import { QUICKSTART_PORT_BASE_ENV } from '../lib/runtime/program-env.js';

const HERE = dirname(fileURLToPath(import.meta.url)); // build/daemons
const REPO = resolve(HERE, '../..');
const DEFAULT_STATE = join(REPO, '.state/quickstart');
const { values: opts } = parseArgs({
  options: {
    once: { type: 'boolean', default: false },
    state: { type: 'string', default: DEFAULT_STATE },
    'port-base': { type: 'string', default: process.env[QUICKSTART_PORT_BASE_ENV] || '18400' },
    help: { type: 'boolean', default: false },
  },
});
if (opts.help) {
  process.stdout.write(
    'usage: node build/daemons/quickstart.js [--once] [--state DIR] [--port-base N]\n' +
      'Starts a CA, a proxy, a gateway and a sample private resource on 127.0.0.1 and connects through the tunnel.\n' +
      `Environment: ${QUICKSTART_PORT_BASE_ENV} (as --port-base; the flag wins). No other variable is read.\n`,
  );
  process.exit(0);
}

const STATE = resolve(opts.state);
const base = Number(opts['port-base']);
if (!Number.isInteger(base) || base < 1024 || base > 65000) throw new Error('--port-base must be 1024..65000');
const PORT = {
  ca: base + 43,
  caOps: base + 71,
  proxySsh: base + 22,
  proxyTls: base + 44,
  proxyOps: base + 73,
  gatewayOps: base + 72,
  resource: base + 80,
  local: base + 81,
};
const ORG = 'demo';
const GATEWAY = 'gw-demo';
const PROXY = 'proxy-1';
const CA_URL = `https://127.0.0.1:${PORT.ca}`;
const RESOURCE = `http://127.0.0.1:${PORT.resource}`;

interface Setup {
  fingerprint: string;
  adminClientId: string;
  appClientId: string;
}

const children: { name: string; child: ChildProcess }[] = [];
const say = (line: string) => process.stdout.write(`${line}\n`);
const step = (n: number, line: string) => say(`\n[${n}/5] ${line}`);

function bin(name: string): string {
  return join(HERE, `${name}.js`);
}

/** Runs a CLI to completion (with `env` added to ours); returns its parsed --json output. */
async function runJson(
  name: string,
  args: string[],
  env: Record<string, string> = {},
): Promise<Record<string, unknown>> {
  const child = spawn(process.execPath, [bin(name), ...args, '--json'], {
    stdio: ['ignore', 'pipe', 'pipe'],
    env: { ...process.env, ...env },
  });
  const out: Buffer[] = [];
  const err: Buffer[] = [];
  child.stdout.on('data', (d: Buffer) => out.push(d));
  child.stderr.on('data', (d: Buffer) => err.push(d));
  const code = await new Promise<number>((r) => child.on('close', (c) => r(c ?? 1)));
  const text = Buffer.concat(out).toString();
  if (code !== 0) {
    throw new Error(`${name} ${args[0]} failed (exit ${code}): ${text.trim()} ${Buffer.concat(err).toString().trim()}`);
  }
  return JSON.parse(text) as Record<string, unknown>;
}

/** Starts a long-running daemon; its output goes to <state>/logs/<name>.log. */
function startDaemon(name: string, args: string[]): ChildProcess {
  const log = createWriteStream(join(STATE, 'logs', `${name}.log`), { flags: 'a' });
  const child = spawn(process.execPath, [bin(name), ...args], { stdio: ['ignore', 'pipe', 'pipe'] });
  child.stdout?.pipe(log);
  child.stderr?.pipe(log);
  children.push({ name, child });
  child.on('exit', (code, signal) => {
    if (!stopping) say(`  ! ${name} exited (${signal ?? code}); see ${join(STATE, 'logs', `${name}.log`)}`);
  });
  return child;
}

/** What a daemon says when this state directory can serve no more: it was revoked, or renewed by another copy. */
const REVOKED_CODES = new Set(['E_SUBJECT_REVOKED', 'E_CERT_REVOKED', 'E_CERT_SUPERSEDED']);

/** The quickstart's own component was revoked (e.g. `infisical-ca revoke` on its state): only a new state helps. */
class Revoked extends Error {
  constructor(name: string, why: string) {
    super(
      `the quickstart's ${name} was revoked (${why}).\n` +
        `  Its enrollment in ${STATE} cannot serve again. To start clean, delete that folder and run again:\n` +
        `    rm -rf ${STATE} && ${STATE === DEFAULT_STATE ? 'make run' : `node ${process.argv[1]} --state ${STATE}`}`,
    );
  }
}

/** A daemon that exited while we waited for it: revoked (status 77, or a revocation code in its last lines) or not. */
function exited(name: string, status: number): Error {
  const last = logTail(name, 3);
  const code = [...REVOKED_CODES].find((c) => last.includes(c));
  if (status === EXIT_REVOKED || code) {
    return new Revoked(name, `it exited with status ${status}: ${last.split('\n').at(-2)?.trim()}`);
  }
  return new Error(`${name} exited with status ${status}; its log ends with:\n${logTail(name)}`);
}

/**
 * Polls an ops endpoint until /readyz says 200. A daemon that exits, or says it was revoked (503 with a
 * revocation code while running; exit status 77 when it starts already revoked), ends the wait at once.
 */
async function waitReady(name: string, port: number, timeoutMs = 30_000): Promise<void> {
  const deadline = Date.now() + timeoutMs;
  let last = 'no answer';
  const child = children.find((c) => c.name === name)?.child;
  while (Date.now() < deadline) {
    if (child && child.exitCode !== null) throw exited(name, child.exitCode);
    try {
      const r = await httpGet(`http://127.0.0.1:${port}/readyz`);
      if (r.status === 200) return;
      last = r.body.trim();
      const body = parseJson(last);
      if (r.status === 503 && REVOKED_CODES.has(String(body?.['code']))) {
        throw new Revoked(name, `its /readyz says 503 ${String(body?.['code'])}: ${String(body?.['reason'] ?? last)}`);
      }
    } catch (e) {
      if (e instanceof Revoked) throw e;
      last = (e as Error).message;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
  throw new Error(
    `${name} did not become ready within ${timeoutMs / 1000} s (${last}); its log ends with:\n${logTail(name)}`,
  );
}

function parseJson(text: string): Record<string, unknown> | undefined {
  try {
    const v: unknown = JSON.parse(text);
    return v && typeof v === 'object' ? (v as Record<string, unknown>) : undefined;
  } catch {
    return undefined;
  }
}

/** The last lines of a daemon's log, so a failure explains itself. */
function logTail(name: string, lines = 15): string {
  const file = join(STATE, 'logs', `${name}.log`);
  if (!existsSync(file)) return '  (no log)';
  const tail = readFileSync(file, 'utf8').trimEnd().split('\n').slice(-lines);
  return `${tail.map((l) => `    ${l}`).join('\n')}\n  (${file})`;
}

function httpGet(url: string, proxy?: string): Promise<{ status: number; body: string }> {
  return new Promise((resolveGet, reject) => {
    const target = new URL(url);
    const via = proxy ? new URL(proxy) : target;
    const req = request(
      {
        host: via.hostname,
        port: via.port,
        path: proxy ? url : target.pathname,
        headers: { host: target.host },
        timeout: 10_000,
      },
      (res) => {
        const parts: Buffer[] = [];
        res.on('data', (d: Buffer) => parts.push(d));
        res.on('end', () => resolveGet({ status: res.statusCode ?? 0, body: Buffer.concat(parts).toString() }));
      },
    );
    req.on('timeout', () => req.destroy(new Error('timed out')));
    req.on('error', reject);
    req.end();
  });
}

function writeSecret(file: string, secret: string): void {
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
}

const caState = ['--state-dir', join(STATE, 'ca')];
const setupFile = join(STATE, 'setup.json');

/** First run only: CA init, org, identity, policy. Credentials are kept 0600 in the state folder. */
async function initialiseCa(): Promise<Setup> {
  if (existsSync(setupFile)) {
    say(`  reusing ${STATE} (delete it to start over)`);
    return JSON.parse(readFileSync(setupFile, 'utf8')) as Setup;
  }
  say('  first run: creating the CA, org demo, machine identity app and its policy…');
  const init = await runJson('ca', ['init', ...caState, '--api-name', 'localhost', '--api-name', '127.0.0.1']);
  writeSecret(join(STATE, 'admin.secret'), String(init['adminClientSecret']));
  await runJson('ca', ['org', 'create', ORG, ...caState]);
  const app = await runJson('ca', ['identity', 'create', ORG, 'app', ...caState]);
  writeSecret(join(STATE, 'app.secret'), String(app['clientSecret']));
  await runJson('ca', [
    'policy',
    'add',
    ORG,
    ...caState,
    '--subject',
    'identity:app',
    '--gateway',
    GATEWAY,
    '--target',
    `127.0.0.1:${PORT.resource}`,
    '--mode',
    'tcp',
    '--mode',
    'http',
    '--mode',
    'ping',
  ]);
  const setup: Setup = {
    fingerprint: String(init['apiFingerprint']),
    adminClientId: String(init['adminClientId']),
    appClientId: String(app['clientId']),
  };
  return setup;
}

async function enrollOnce(setup: Setup): Promise<void> {
  if (existsSync(setupFile)) return;
  say(`  first run: enrolling ${PROXY} and ${GATEWAY} with the CA…`);
  await runJson('proxy', [
    'enroll',
    '--state-dir',
    join(STATE, 'proxy'),
    '--ca',
    CA_URL,
    '--ca-fingerprint',
    setup.fingerprint,
    '--admin-client-id',
    setup.adminClientId,
    '--client-secret-file',
    join(STATE, 'admin.secret'),
    '--scope',
    'instance',
    '--proxy-id',
    PROXY,
    '--hostname',
    '127.0.0.1',
    '--ssh-address',
    `127.0.0.1:${PORT.proxySsh}`,
    '--tls-address',
    `127.0.0.1:${PORT.proxyTls}`,
  ]);
  const token = await runJson('ca', ['token', '--org', ORG, '--kind', 'gateway', '--subject', GATEWAY, ...caState]);
  // The token goes by the environment, not the command line, where every user of the host could read it.
  await runJson(
    'gateway',
    [
      'enroll',
      '--state-dir',
      join(STATE, 'gateway'),
      '--ca',
      CA_URL,
      '--ca-fingerprint',
      setup.fingerprint,
      '--org',
      ORG,
      '--gateway-id',
      GATEWAY,
    ],
    { [envName(gatewayConfigSchema, 'enrollment_token')]: String(token['token']) },
  );
  writeFileSync(setupFile, JSON.stringify(setup, null, 2), { mode: 0o600 });
}

function startResource(): Promise<() => void> {
  const server = createServer((req, res) => {
    res.setHeader('content-type', 'text/plain');
    res.end(`hello from the private network (you asked for ${req.method} ${req.url})\n`);
  });
  return new Promise((ok, fail) => {
    server.once('error', fail);
    server.listen(PORT.resource, '127.0.0.1', () => ok(() => server.close()));
  });
}

let stopping = false;
async function stopAll(code: number): Promise<never> {
  stopping = true;
  for (const { child } of children) if (child.exitCode === null) child.kill('SIGTERM');
  await Promise.all(
    children.map(
      ({ child }) =>
        new Promise<void>((r) => {
          if (child.exitCode !== null) return r();
          const t = setTimeout(() => {
            child.kill('SIGKILL');
            r();
          }, 10_000);
          child.on('exit', () => {
            clearTimeout(t);
            r();
          });
        }),
    ),
  );
  process.exit(code);
}

async function main(): Promise<void> {
  mkdirSync(join(STATE, 'logs'), { recursive: true, mode: 0o700 });
  say(`gateway suite quickstart: state in ${STATE}, daemon logs in ${join(STATE, 'logs')}`);

  step(1, `CA on ${CA_URL}`);
  const setup = await initialiseCa();
  startDaemon('ca', [
    'serve',
    ...caState,
    '--listen',
    `127.0.0.1:${PORT.ca}`,
    '--ops-listen',
    `127.0.0.1:${PORT.caOps}`,
  ]);
  await waitReady('ca', PORT.caOps);
  say(`  ready; API certificate pinned as ${setup.fingerprint}`);

  step(2, `instance proxy ${PROXY}: SSH for gateways on :${PORT.proxySsh}, mTLS for platforms on :${PORT.proxyTls}`);
  await enrollOnce(setup);
  const proxyState = ['--state-dir', join(STATE, 'proxy')];
  startDaemon('proxy', [
    'serve',
    ...proxyState,
    '--ssh-listen',
    `127.0.0.1:${PORT.proxySsh}`,
    '--tls-listen',
    `127.0.0.1:${PORT.proxyTls}`,
    '--ops-listen',
    `127.0.0.1:${PORT.proxyOps}`,
  ]);
  await waitReady('proxy', PORT.proxyOps);
  say('  ready');

  step(3, `sample private resource: ${RESOURCE} (reachable only through the gateway's allowlist)`);
  const stopResource = await startResource();

  step(4, `gateway ${GATEWAY} in org ${ORG}: outbound SSH tunnel to ${PROXY}`);
  startDaemon('gateway', [
    'serve',
    '--state-dir',
    join(STATE, 'gateway'),
    '--ops-listen',
    `127.0.0.1:${PORT.gatewayOps}`,
    '--allow-cidr',
    '127.0.0.1/32',
    '--allow-port',
    String(PORT.resource),
  ]);
  await waitReady('gateway', PORT.gatewayOps);
  say('  tunnel up');

  step(5, 'a connection through the tunnel: infisical-connect http → proxy → SSH tunnel → gateway → resource');
  const connectArgs = [
    '--ca',
    CA_URL,
    '--ca-fingerprint',
    setup.fingerprint,
    '--org',
    ORG,
    '--client-id',
    setup.appClientId,
    '--client-secret-file',
    join(STATE, 'app.secret'),
  ];
  const connectChild = startDaemon('connect', [
    'http',
    ...connectArgs,
    '--gateway',
    GATEWAY,
    '--target',
    RESOURCE,
    '--listen',
    `127.0.0.1:${PORT.local}`,
  ]);
  const reply = await retry(
    () => httpGet(`http://127.0.0.1:${PORT.local}/`),
    30_000,
    () => {
      if (connectChild.exitCode !== null) throw exited('connect', connectChild.exitCode);
    },
  );
  say(`  GET / through the tunnel → ${reply.status} ${reply.body.trim()}`);
  if (reply.status !== 200) throw new Error(`the demo connection failed with HTTP ${reply.status}`);
  say('  QUICKSTART OK');

  if (opts.once) {
    stopResource();
    await stopAll(0);
  }
  const connect = `node ${bin('connect')} ${connectArgs.join(' ')}`;
  say(`
Everything is running. Try it by hand:
  curl http://127.0.0.1:${PORT.local}/                       # through the running infisical-connect http
  ${connect} ping --gateway ${GATEWAY} --target 127.0.0.1:${PORT.resource}
  ${connect} tcp --gateway ${GATEWAY} --target 127.0.0.1:${PORT.resource} --listen 127.0.0.1:${PORT.local + 1}
Ops endpoints: http://127.0.0.1:${PORT.proxyOps}/metrics (proxy), http://127.0.0.1:${PORT.gatewayOps}/readyz (gateway).
Press Ctrl-C to stop everything.`);
  await new Promise(() => {});
}

/** Calls fn until it resolves; `check` may end the wait early by throwing (a helper process that exited). */
async function retry<T>(fn: () => Promise<T>, timeoutMs: number, check: () => void): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  for (;;) {
    try {
      return await fn();
    } catch (err) {
      check();
      if (Date.now() > deadline) throw err;
      await new Promise((r) => setTimeout(r, 250));
    }
  }
}

process.on('SIGINT', () => void stopAll(0));
process.on('SIGTERM', () => void stopAll(0));
main().catch(async (err: unknown) => {
  say(`\nquickstart failed: ${(err as Error).message}`);
  await stopAll(1);
});
