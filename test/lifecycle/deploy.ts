/**
 * A whole deployment for the "trust over time" suite (issue 11), every component a real process started
 * through its own CLI exactly as an operator would (the sequence of daemons/quickstart.ts): `infisical-ca
 * init` / org / identity / policy / `serve`; `infisical-proxy enroll` + `serve` per proxy; `infisical-ca
 * token` + `infisical-gateway enroll` + `serve` per gateway (tunnels to every proxy); `infisical-connect tcp`
 * on demand. Each daemon has its own state directory under one mkdtemp folder, its own ops port, and its
 * log captured to <dir>/logs/<name>.log. The private target is a checksumming TCP server in the test process.
 *
 *   await withDeployment({ proxies: 2, gateways: 2 }, async (d) => { ... });   // closes, prints log tails on failure
 */
import { chmodSync, mkdirSync, mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { type CliResult, cli } from '../ca/daemon-helpers.js';
import { freePort } from '../helpers/openssh.js';
import { Daemon, pidAlive, timeUntil, type WaitOptions, waitFor } from './process.js';
import { assertByteExact, startTarget, type Target, type TransferResult, transfer } from './transfer.js';

export const ORG = 'lab';

export interface DeploymentOptions {
  proxies?: number;
  gateways?: number;
  /** Extra `serve` flags, e.g. ['--revocation-poll', '1s'] (each handle's `args` can also be edited before restart). */
  caArgs?: string[];
  proxyArgs?: string[];
  gatewayArgs?: string[];
  /** Gateway allowlist ports besides the echo target's (all on 127.0.0.1/32). */
  allowPorts?: number[];
  /** Policy targets for identity "app" besides the echo target (all gateways, modes tcp/http/ping). */
  policyTargets?: string[];
  /** Wait at start until every gateway has a tunnel to every proxy (default true). */
  waitTunnels?: boolean;
  logLevel?: string;
  /** Keep the folder after close() (or set LIFECYCLE_KEEP=1). */
  keep?: boolean;
}

export interface Identity {
  identityId: string;
  clientId: string;
  /** A 0600 file holding its client secret (for --client-secret-file). */
  secretFile: string;
}

export interface CaHandle extends Daemon {
  url: string;
  fingerprint: string;
  adminClientId: string;
  adminClientSecret: string;
  adminSecretFile: string;
  /** Runs the admin CLI on the CA's state (`infisical-ca <args> --state-dir … --json`); parsed JSON, throws on non-zero exit. */
  cli(args: string[]): Promise<Record<string, unknown>>;
  /** Same, never throwing: exit code and raw output (for refusals). */
  cliResult(args: string[]): Promise<CliResult>;
}

export interface ProxyHandle extends Daemon {
  proxyId: string;
  sshPort: number;
  tlsPort: number;
}

export interface GatewayHandle extends Daemon {
  gatewayId: string;
  /** Tunnels up now, from /readyz detail.tunnelsUp (0 when not answering). */
  tunnelsUp(): Promise<number>;
  /** Waits until /readyz reports exactly `n` tunnels up (default: every proxy). */
  waitTunnels(n?: number, timeoutMs?: number): Promise<void>;
}

export interface ConnectHandle extends Daemon {
  /** The local port it listens on (from its "listening" event). */
  port: number;
  gatewayId: string;
  target: string;
  /** Its --json event lines (listening, stream events, error, stopped). */
  events(): Record<string, unknown>[];
}

export interface ConnectOptions {
  /** Default: the first gateway. */
  gateway?: GatewayHandle | string;
  /** "host:port" as the gateway sees it; default the echo target. */
  target?: string;
  /** Default: identity "app". */
  identity?: Identity;
  /** Extra flags, e.g. ['--ttl', '20']. */
  args?: string[];
  /** Wait for its "listening" line (default true); false returns at once (e.g. to see it refused). */
  wait?: boolean;
}

export interface Deployment {
  dir: string;
  org: string;
  ca: CaHandle;
  proxies: ProxyHandle[];
  gateways: GatewayHandle[];
  /** The private echo target every gateway allows and identity "app" may reach. */
  target: Target;
  /** A machine identity with a policy rule for the target through every gateway. */
  app: Identity;
  /** Creates an identity; with `targets`, also a policy rule (gateways default ['*'], modes default ['tcp']). */
  identity(id: string, rule?: { targets: string[]; gateways?: string[]; modes?: string[] }): Promise<Identity>;
  /** Starts `infisical-connect tcp` on 127.0.0.1:0. */
  connect(o?: ConnectOptions): Promise<ConnectHandle>;
  /** A checksummed transfer of `bytes` random bytes through a connect listener to a target (default the echo one). */
  transfer(
    via: ConnectHandle | number,
    bytes: number,
    o?: { target?: Target; timeoutMs?: number },
  ): Promise<TransferResult>;
  /** `infisical-ca revoke <kind> <subject>` (org defaults to the deployment's for gateway/identity/grant/certificate). */
  revoke(kind: RevokeKind, subject: string, o?: { org?: string; reason?: string }): Promise<Record<string, unknown>>;
  /** Revokes, then measures the ms from the CLI's return until `effect` holds (it must within `timeoutMs`). */
  revokeAndMeasure<T>(
    kind: RevokeKind,
    subject: string,
    effect: () => T | Promise<T>,
    o?: Partial<WaitOptions> & { org?: string; reason?: string },
  ): Promise<{ ms: number; revoked: Record<string, unknown>; value: T }>;
  /** Every daemon handle (CA, proxies, gateways, connects). */
  daemons(): Daemon[];
  /** Every pid ever spawned here still alive (empty after close()). */
  alivePids(): number[];
  /** The last log lines of every daemon, for failure messages. */
  tails(lines?: number): string;
  /** Stops everything (SIGTERM, SIGKILL after 10 s), closes targets, removes the folder. Safe to call twice. */
  close(): Promise<void>;
}

export type RevokeKind = 'gateway' | 'proxy' | 'identity' | 'grant' | 'certificate';

function writeSecret(file: string, secret: string): string {
  writeFileSync(file, `${secret}\n`, { mode: 0o600 });
  chmodSync(file, 0o600);
  return file;
}

export async function startDeployment(o: DeploymentOptions = {}): Promise<Deployment> {
  const dir = mkdtempSync(join(tmpdir(), 'lifecycle-'));
  mkdirSync(join(dir, 'logs'));
  mkdirSync(join(dir, 'secrets'), { mode: 0o700 });
  const all: Daemon[] = [];
  const targets: Target[] = [];
  const logLevel = o.logLevel ?? 'info';
  let closed = false;

  const close = async () => {
    if (closed) return;
    closed = true;
    // Platform side first, then the gateways, the proxies, the CA: the order an operator would stop them.
    const order = ['connect', 'gateway', 'proxy', 'ca'] as const;
    for (const program of order) {
      await Promise.all(all.filter((d) => d.program === program).map((d) => d.stop(10_000)));
    }
    for (const t of targets) await t.close();
    if (!o.keep && !process.env['LIFECYCLE_KEEP']) rmSync(dir, { recursive: true, force: true });
  };
  const tails = (lines = 25) => all.map((d) => d.tail(lines)).join('\n');

  try {
    const target = await startTarget('echo');
    targets.push(target);

    // --- the CA: init, org, identity, policy (on its state, before serve, as the quickstart does)
    const caDir = join(dir, 'ca');
    const caCliResult = (args: string[]) => cli([...args, '--state-dir', caDir, '--json']);
    const caCli = async (args: string[]): Promise<Record<string, unknown>> => {
      const r = await caCliResult(args);
      if (r.code !== 0) throw new Error(`infisical-ca ${args.join(' ')} exited ${r.code}: ${r.stdout}${r.stderr}`);
      return JSON.parse(r.stdout) as Record<string, unknown>;
    };
    const init = await caCli(['init', '--api-name', '127.0.0.1', '--api-name', 'localhost']);
    await caCli(['org', 'create', ORG]);

    const identity: Deployment['identity'] = async (id, rule) => {
      const created = await caCli(['identity', 'create', ORG, id]);
      const secretFile = writeSecret(join(dir, 'secrets', `${id}.secret`), String(created['clientSecret']));
      if (rule) {
        await caCli([
          'policy',
          'add',
          ORG,
          '--subject',
          `identity:${id}`,
          ...(rule.gateways ?? ['*']).flatMap((g) => ['--gateway', g]),
          ...rule.targets.flatMap((t) => ['--target', t]),
          ...(rule.modes ?? ['tcp']).flatMap((m) => ['--mode', m]),
        ]);
      }
      return { identityId: id, clientId: String(created['clientId']), secretFile };
    };
    const app = await identity('app', {
      targets: [target.address, ...(o.policyTargets ?? [])],
      modes: ['tcp', 'http', 'ping'],
    });

    const [caPort, caOps] = [await freePort(), await freePort()];
    const adminClientSecret = String(init['adminClientSecret']);
    const ca = Object.assign(
      new Daemon({
        name: 'ca',
        program: 'ca',
        stateDir: caDir,
        logFile: join(dir, 'logs', 'ca.log'),
        opsPort: caOps,
        args: [
          'serve',
          '--state-dir',
          caDir,
          '--listen',
          `127.0.0.1:${caPort}`,
          '--ops-listen',
          `127.0.0.1:${caOps}`,
          '--log-level',
          logLevel,
          ...(o.caArgs ?? []),
        ],
      }),
      {
        url: `https://127.0.0.1:${caPort}`,
        fingerprint: String(init['apiFingerprint']),
        adminClientId: String(init['adminClientId']),
        adminClientSecret,
        adminSecretFile: writeSecret(join(dir, 'secrets', 'admin.secret'), adminClientSecret),
        cli: caCli,
        cliResult: caCliResult,
      },
    ) as CaHandle;
    all.push(ca);
    await ca.start();
    const pinned = ['--ca', ca.url, '--ca-fingerprint', ca.fingerprint];

    // --- instance proxies: enrolled with the admin credential, then served
    const proxies = await Promise.all(
      Array.from({ length: o.proxies ?? 2 }, async (_, i) => {
        const proxyId = `proxy-${i + 1}`;
        const [sshPort, tlsPort, opsPort] = [await freePort(), await freePort(), await freePort()];
        const stateDir = join(dir, proxyId);
        const p = Object.assign(
          new Daemon({
            name: `proxy ${proxyId}`,
            program: 'proxy',
            stateDir,
            opsPort,
            logFile: join(dir, 'logs', `${proxyId}.log`),
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
              logLevel,
              ...(o.proxyArgs ?? []),
            ],
          }),
          { proxyId, sshPort, tlsPort },
        ) as ProxyHandle;
        all.push(p);
        await runOnce(p, [
          'enroll',
          '--state-dir',
          stateDir,
          ...pinned,
          '--admin-client-id',
          ca.adminClientId,
          '--client-secret-file',
          ca.adminSecretFile,
          '--scope',
          'instance',
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
      }),
    );

    // --- gateways: a one-time token each, enroll (learns every proxy), serve
    const gateways = await Promise.all(
      Array.from({ length: o.gateways ?? 2 }, async (_, i) => {
        const gatewayId = `gw-${i + 1}`;
        const stateDir = join(dir, gatewayId);
        const opsPort = await freePort();
        const g = Object.assign(
          new Daemon({
            name: `gateway ${gatewayId}`,
            program: 'gateway',
            stateDir,
            opsPort,
            logFile: join(dir, 'logs', `${gatewayId}.log`),
            args: [
              'serve',
              '--state-dir',
              stateDir,
              '--ops-listen',
              `127.0.0.1:${opsPort}`,
              '--allow-cidr',
              '127.0.0.1/32',
              ...[target.port, ...(o.allowPorts ?? [])].flatMap((port) => ['--allow-port', String(port)]),
              '--log-level',
              logLevel,
              ...(o.gatewayArgs ?? []),
            ],
          }),
          { gatewayId },
        ) as GatewayHandle;
        g.tunnelsUp = async () => {
          const r = await g.readyz().catch(() => undefined);
          const detail = r?.json?.['detail'] as { tunnelsUp?: number } | undefined;
          return detail?.tunnelsUp ?? 0;
        };
        g.waitTunnels = async (n = proxies.length, timeoutMs = 30_000) => {
          await waitFor(async () => (await g.tunnelsUp()) === n, {
            timeoutMs,
            what: `${g.name} to report ${n} tunnels up`,
            detail: async () => `(it reports ${await g.tunnelsUp()})\n${tails()}`,
          });
        };
        all.push(g);
        const token = await caCli(['token', '--org', ORG, '--kind', 'gateway', '--subject', gatewayId]);
        await runOnce(g, [
          'enroll',
          '--state-dir',
          stateDir,
          ...pinned,
          '--token',
          String(token['token']),
          '--org',
          ORG,
          '--gateway-id',
          gatewayId,
          '--json',
        ]);
        await g.start();
        return g;
      }),
    );
    if (o.waitTunnels ?? true) await Promise.all(gateways.map((g) => g.waitTunnels()));

    let connects = 0;
    const connect = async (c: ConnectOptions = {}): Promise<ConnectHandle> => {
      const gatewayId = typeof c.gateway === 'string' ? c.gateway : ((c.gateway ?? gateways[0])?.gatewayId ?? 'gw-1');
      const who = c.identity ?? app;
      const targetAddress = c.target ?? target.address;
      const name = `connect-${++connects}`;
      const handle = Object.assign(
        new Daemon({
          name: `connect ${name} (${who.identityId} → ${gatewayId} → ${targetAddress})`,
          program: 'connect',
          stateDir: dir,
          logFile: join(dir, 'logs', `${name}.log`),
          args: [
            'tcp',
            ...pinned,
            '--org',
            ORG,
            '--client-id',
            who.clientId,
            '--client-secret-file',
            who.secretFile,
            '--gateway',
            gatewayId,
            '--target',
            targetAddress,
            '--listen',
            '127.0.0.1:0',
            '--json',
            ...(c.args ?? []),
          ],
          ready: async (d) => listeningPort(d) !== undefined,
        }),
        { port: 0, gatewayId, target: targetAddress },
      ) as ConnectHandle;
      handle.events = () => handle.logLines().filter((l) => typeof l['event'] === 'string');
      all.push(handle);
      if (c.wait ?? true) {
        await handle.start();
        handle.port = listeningPort(handle)!;
      } else {
        handle.spawn();
      }
      return handle;
    };

    const revoke: Deployment['revoke'] = (kind, subject, r = {}) => {
      const org = r.org ?? (kind === 'proxy' ? undefined : ORG);
      return caCli([
        'revoke',
        kind,
        subject,
        ...(org ? ['--org', org] : []),
        ...(r.reason ? ['--reason', r.reason] : []),
      ]);
    };

    return {
      dir,
      org: ORG,
      ca,
      proxies,
      gateways,
      target,
      app,
      identity,
      connect,
      transfer: (via, bytes, t = {}) =>
        transfer({
          port: typeof via === 'number' ? via : via.port,
          target: t.target ?? target,
          bytes,
          ...(t.timeoutMs !== undefined ? { timeoutMs: t.timeoutMs } : {}),
        }),
      revoke,
      revokeAndMeasure: async (kind, subject, effect, m = {}) => {
        const revoked = await revoke(kind, subject, m);
        const { value, ms } = await timeUntil(effect, {
          ...m,
          what: m.what ?? `the revocation of ${kind} ${subject} to take effect`,
          detail: m.detail ?? (() => tails()),
        });
        return { ms, revoked, value };
      },
      daemons: () => [...all],
      alivePids: () => all.flatMap((d) => d.pids).filter(pidAlive),
      tails,
      close,
    };
  } catch (err) {
    const text = tails();
    await close();
    (err as Error).message += `\n${text}`;
    throw err;
  }
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

/**
 * Runs `fn` on a fresh deployment and always closes it; on failure, prints every daemon's log tail first.
 * (With node:test, `t.after(() => d.close())` works too when the test needs the deployment across steps.)
 */
export async function withDeployment<T>(o: DeploymentOptions, fn: (d: Deployment) => Promise<T>): Promise<T> {
  const d = await startDeployment(o);
  try {
    return await fn(d);
  } catch (err) {
    process.stderr.write(`\n${d.tails()}\n`);
    throw err;
  } finally {
    await d.close();
  }
}

export { assertByteExact, startTarget, type Target, type TransferResult, timeUntil, transfer, waitFor };
