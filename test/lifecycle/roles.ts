/**
 * Each role of a lifecycle deployment, set up through its own CLI in the order of daemons/quickstart.ts:
 * the CA (`init`, `org create`, `serve`), identities (`identity create`, `policy add`), instance proxies
 * (`enroll` with the admin credential, `serve`), gateways (`ca token`, `enroll --token-file`, `serve`) and
 * `infisical-connect tcp`. deploy.ts composes them.
 */
import { chmodSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { type CliResult, cli } from '../ca/daemon-helpers.js';
import { freePort } from '../helpers/openssh.js';
import { Daemon, waitFor } from './process.js';

export const ORG = 'lab';

/** What every role needs from the deployment it joins. */
export interface Site {
  dir: string;
  logLevel: string;
  /** Every handle, in start order (close() stops them; tails() reads them). */
  all: Daemon[];
  tails(): string;
}

export interface Identity {
  identityId: string;
  /** The org it belongs to (ORG unless created in another). */
  org: string;
  clientId: string;
  /** A 0600 file holding its client secret (for --client-secret-file). */
  secretFile: string;
}

export interface CaHandle extends Daemon {
  url: string;
  fingerprint: string;
  adminClientId: string;
  adminClientSecret: string;
  /** A 0600 file holding the admin client secret. */
  adminSecretFile: string;
  /** The admin CLI on the CA's state (`infisical-ca <args> --state-dir … --json`): parsed JSON; throws on failure. */
  cli(args: string[]): Promise<Record<string, unknown>>;
  /** The same, never throwing: exit code, stdout, stderr (for refusals). */
  cliResult(args: string[]): Promise<CliResult>;
  /** `--ca URL --ca-fingerprint FP`, as every enroll and connect takes them. */
  pinned(): string[];
}

export interface ProxyHandle extends Daemon {
  proxyId: string;
  scope: 'instance' | 'org';
  sshPort: number;
  tlsPort: number;
}

export interface GatewayHandle extends Daemon {
  gatewayId: string;
  /** Tunnels up now, from /readyz detail.tunnelsUp (0 when it does not answer). */
  tunnelsUp(): Promise<number>;
  /** Waits until /readyz reports exactly `n` tunnels up (default: as many as the deployment has proxies). */
  waitTunnels(n?: number, timeoutMs?: number): Promise<void>;
}

export interface ConnectHandle extends Daemon {
  /** The local port it listens on now (from its current process's "listening" event; 0 until then). */
  readonly port: number;
  gatewayId: string;
  target: string;
  /** Its --json event lines so far (grant, listening, opened, closed, error, stopped). */
  events(): Record<string, unknown>[];
}

export function writeSecret(file: string, secret: string): string {
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return file;
}

/** `init` and `org create` on a fresh state directory; the returned handle is not started yet. */
export async function initCa(site: Site, extraServeArgs: string[], store?: string): Promise<CaHandle> {
  const stateDir = join(site.dir, 'ca');
  const storeArgs = store ? ['--store', store] : [];
  const cliResult = (args: string[]) => cli([...args, '--state-dir', stateDir, ...storeArgs, '--json']);
  const caCli = async (args: string[]): Promise<Record<string, unknown>> => {
    const r = await cliResult(args);
    if (r.code !== 0) throw new Error(`infisical-ca ${args.join(' ')} exited ${r.code}: ${r.stdout}${r.stderr}`);
    return JSON.parse(r.stdout) as Record<string, unknown>;
  };
  const init = await caCli(['init', '--api-name', '127.0.0.1', '--api-name', 'localhost']);
  await caCli(['org', 'create', ORG]);
  const [port, opsPort] = [await freePort(), await freePort()];
  const adminClientSecret = String(init['adminClientSecret']);
  const url = `https://127.0.0.1:${port}`;
  const fingerprint = String(init['apiFingerprint']);
  const ca = Object.assign(
    new Daemon({
      name: 'ca',
      program: 'ca',
      stateDir,
      logFile: join(site.dir, 'logs', 'ca.log'),
      opsPort,
      args: [
        'serve',
        '--state-dir',
        stateDir,
        '--listen',
        `127.0.0.1:${port}`,
        '--ops-listen',
        `127.0.0.1:${opsPort}`,
        '--log-level',
        site.logLevel,
        ...storeArgs,
        ...extraServeArgs,
      ],
    }),
    {
      url,
      fingerprint,
      adminClientId: String(init['adminClientId']),
      adminClientSecret,
      adminSecretFile: writeSecret(join(site.dir, 'secrets', 'admin.secret'), adminClientSecret),
      cli: caCli,
      cliResult,
      pinned: () => ['--ca', url, '--ca-fingerprint', fingerprint],
    },
  ) as CaHandle;
  site.all.push(ca);
  return ca;
}

export interface PolicyRule {
  targets: string[];
  /** Default ['*']. */
  gateways?: string[];
  /** Default ['tcp']. */
  modes?: string[];
}

/** `identity create` (its secret to a 0600 file) and, with a rule, `policy add` for it (in `org`, default ORG). */
export async function createIdentity(
  site: Site,
  ca: CaHandle,
  id: string,
  rule?: PolicyRule,
  org = ORG,
): Promise<Identity> {
  const created = await ca.cli(['identity', 'create', org, id]);
  const secretFile = writeSecret(join(site.dir, 'secrets', `${id}.secret`), String(created['clientSecret']));
  if (rule) {
    await ca.cli([
      'policy',
      'add',
      org,
      '--subject',
      `identity:${id}`,
      ...(rule.gateways ?? ['*']).flatMap((g) => ['--gateway', g]),
      ...rule.targets.flatMap((t) => ['--target', t]),
      ...(rule.modes ?? ['tcp']).flatMap((m) => ['--mode', m]),
    ]);
  }
  return { identityId: id, clientId: String(created['clientId']), secretFile, org };
}

/**
 * A proxy, then `serve` (waits for /readyz 200). An instance proxy enrolls with the admin credential; an org
 * proxy (`org` given: it serves that org only, under the org's own proxy CAs) with a one-time token.
 */
export async function startProxy(
  site: Site,
  ca: CaHandle,
  proxyId: string,
  extra: string[],
  org?: string,
): Promise<ProxyHandle> {
  const [sshPort, tlsPort, opsPort] = [await freePort(), await freePort(), await freePort()];
  const stateDir = join(site.dir, proxyId);
  const p = Object.assign(
    new Daemon({
      name: `proxy ${proxyId}`,
      program: 'proxy',
      stateDir,
      opsPort,
      logFile: join(site.dir, 'logs', `${proxyId}.log`),
      args: [
        'serve',
        '--state-dir',
        stateDir,
        '--ssh-listen',
        `127.0.0.1:${sshPort}`,
        '--tls-listen',
        `127.0.0.1:${tlsPort}`,
        '--ops-listen',
        `127.0.0.1:${opsPort}`,
        '--log-level',
        site.logLevel,
        ...extra,
      ],
    }),
    { proxyId, sshPort, tlsPort, scope: org === undefined ? 'instance' : 'org' },
  ) as ProxyHandle;
  site.all.push(p);
  const credential =
    org === undefined
      ? ['--admin-client-id', ca.adminClientId, '--client-secret-file', ca.adminSecretFile, '--scope', 'instance']
      : [
          '--token',
          String((await ca.cli(['token', '--org', org, '--kind', 'proxy', '--subject', proxyId]))['token']),
          '--scope',
          'org',
          '--org',
          org,
        ];
  await runOnce(p, [
    'enroll',
    '--state-dir',
    stateDir,
    ...ca.pinned(),
    ...credential,
    '--proxy-id',
    proxyId,
    '--hostname',
    '127.0.0.1',
    '--ssh-address',
    `127.0.0.1:${sshPort}`,
    '--tls-address',
    `127.0.0.1:${tlsPort}`,
    '--json',
  ]);
  await p.start();
  return p;
}

/**
 * A gateway: a one-time token from `infisical-ca token`, `enroll` (it learns the proxies enrolled so far),
 * then `serve` with an allowlist of 127.0.0.1/32 and `allowPorts` (waits for /readyz 200: one tunnel up).
 */
export async function startGateway(
  site: Site,
  ca: CaHandle,
  gatewayId: string,
  o: { allowPorts: number[]; extra: string[]; proxies: () => number; org?: string; replica?: string },
): Promise<GatewayHandle> {
  const org = o.org ?? ORG;
  // A replica (enrolled with --replica) has a state directory and a log of its own: gw-1-a, gw-1-b, …
  const name = o.replica ? `${gatewayId}-${o.replica}` : gatewayId;
  const stateDir = join(site.dir, name);
  const opsPort = await freePort();
  const g = Object.assign(
    new Daemon({
      name: `gateway ${o.replica ? `${gatewayId} replica ${o.replica}` : gatewayId}`,
      program: 'gateway',
      stateDir,
      opsPort,
      logFile: join(site.dir, 'logs', `${name}.log`),
      args: [
        'serve',
        '--state-dir',
        stateDir,
        '--ops-listen',
        `127.0.0.1:${opsPort}`,
        '--allow-cidr',
        '127.0.0.1/32',
        ...o.allowPorts.flatMap((port) => ['--allow-port', String(port)]),
        '--log-level',
        site.logLevel,
        ...o.extra,
      ],
    }),
    { gatewayId },
  ) as GatewayHandle;
  g.tunnelsUp = async () => {
    const r = await g.readyz().catch(() => undefined);
    const detail = r?.json?.['detail'] as { tunnelsUp?: number } | undefined;
    return detail?.tunnelsUp ?? 0;
  };
  g.waitTunnels = async (n = o.proxies(), timeoutMs = 30_000) => {
    await waitFor(async () => (await g.tunnelsUp()) === n, {
      timeoutMs,
      what: `${g.name} to report ${n} tunnels up`,
      detail: async () => `(it reports ${await g.tunnelsUp()})\n${site.tails()}`,
    });
  };
  site.all.push(g);
  const token = await ca.cli(['token', '--org', org, '--kind', 'gateway', '--subject', gatewayId]);
  await runOnce(g, [
    'enroll',
    '--state-dir',
    stateDir,
    ...ca.pinned(),
    '--token-file',
    writeSecret(join(site.dir, 'secrets', `${name}.token`), String(token['token'])),
    '--org',
    org,
    '--gateway-id',
    gatewayId,
    ...(o.replica ? ['--replica', o.replica] : []),
    '--json',
  ]);
  await g.start();
  return g;
}

let connects = 0;

/** `infisical-connect tcp` (or `http`) `--listen 127.0.0.1:0 --json`; with `wait`, resolves once it prints "listening". */
export async function startConnect(
  site: Site,
  ca: CaHandle,
  o: { gatewayId: string; identity: Identity; target: string; args: string[]; wait: boolean; command?: 'tcp' | 'http' },
): Promise<ConnectHandle> {
  const name = `connect-${++connects}`;
  const handle = Object.assign(
    new Daemon({
      name: `${name} (${o.identity.identityId} → ${o.gatewayId} → ${o.target})`,
      program: 'connect',
      stateDir: site.dir,
      logFile: join(site.dir, 'logs', `${name}.log`),
      args: [
        o.command ?? 'tcp',
        ...ca.pinned(),
        '--org',
        o.identity.org,
        '--client-id',
        o.identity.clientId,
        '--client-secret-file',
        o.identity.secretFile,
        '--gateway',
        o.gatewayId,
        '--target',
        o.target,
        '--listen',
        '127.0.0.1:0',
        '--json',
        ...o.args,
      ],
      ready: async (d) => listeningPort(d) !== undefined,
    }),
    { gatewayId: o.gatewayId, target: o.target },
  ) as ConnectHandle;
  // Read on each use: a restarted connect listens on a new port.
  Object.defineProperty(handle, 'port', { get: () => listeningPort(handle) ?? 0 });
  handle.events = () => handle.logLines().filter((l) => typeof l['event'] === 'string');
  site.all.push(handle);
  if (o.wait) await handle.start();
  else handle.spawn();
  return handle;
}

/** A one-shot command of a daemon's program (enroll), its output going to the same log; throws on failure. */
async function runOnce(d: Daemon, args: string[]): Promise<void> {
  const saved = d.args;
  d.args = args;
  try {
    d.spawn();
    const exit = await d.exited;
    if (exit.code !== 0) throw new Error(`${d.name} ${args[0]} exited ${exit.signal ?? exit.code}\n${d.tail()}`);
  } finally {
    d.args = saved;
  }
}

function listeningPort(d: Daemon): number | undefined {
  const line = d.logLines().find((l) => l['event'] === 'listening');
  return typeof line?.['port'] === 'number' ? line['port'] : undefined;
}
