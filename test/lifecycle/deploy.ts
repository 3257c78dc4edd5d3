/**
 * A whole deployment for the "trust over time" suite (issue 11), every component a real process started
 * through its own CLI exactly as an operator would (the sequence of daemons/quickstart.ts; roles.ts has each
 * step). Each daemon has its own state directory under one mkdtemp folder, its own ops port, and its output
 * captured to <dir>/logs/<name>.log. The private target is a checksumming TCP echo server in the test process.
 *
 *   const d = await startDeployment({ proxies: 2, gateways: 2 });
 *   t.after(() => d.close());
 *   const c = await d.connect({ gateway: d.gateways[1] });
 *   assertByteExact(await d.transfer(c, 4 << 20));
 *   const { ms } = await d.revokeAndMeasure('gateway', 'gw-2', async () => (await d.gateways[1].tunnelsUp()) === 0);
 *
 * or withDeployment(options, async (d) => …), which closes it and prints every daemon's log tail on failure.
 */
import { mkdirSync, mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Daemon, pidAlive, timeUntil, type WaitOptions, waitFor } from './process.js';
import {
  type CaHandle,
  type ConnectHandle,
  createIdentity,
  type GatewayHandle,
  type Identity,
  initCa,
  ORG,
  type PolicyRule,
  type ProxyHandle,
  type Site,
  startConnect,
  startGateway,
  startProxy,
} from './roles.js';
import { assertByteExact, startTarget, type Target, type TransferResult, transfer } from './transfer.js';

export interface DeploymentOptions {
  /** Instance proxies (proxy-1, proxy-2, …; default 2). */
  proxies?: number;
  /** Org proxies of the deployment's org, after the instance ones (org-proxy-1, …; default 0). */
  orgProxies?: number;
  gateways?: number;
  /** Extra `serve` flags, e.g. ['--revocation-poll', '1s'] (each handle's `args` can also be edited before restart). */
  caArgs?: string[];
  /** The CA's `--store` (a postgres:// URL) for init, serve and every CLI call; default SQLite in its state dir. */
  caStore?: string;
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

export interface ConnectOptions {
  /** Default: the first gateway. */
  gateway?: GatewayHandle | string;
  /** "host:port" as the gateway sees it (a URL for http); default the echo target. */
  target?: string;
  /** `infisical-connect tcp` (default) or `http`. */
  command?: 'tcp' | 'http';
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
  /**
   * Creates an identity; with a rule, also a policy rule for it (gateways default ['*'], modes default ['tcp']).
   * In `org` (default the deployment's), which must exist (`ca.cli(['org', 'create', …])`).
   */
  identity(id: string, rule?: PolicyRule, org?: string): Promise<Identity>;
  /** Enrolls and starts one more instance proxy (proxy-N); running gateways learn of it only as the suite provides. */
  addProxy(extraArgs?: string[]): Promise<ProxyHandle>;
  /**
   * Enrolls and starts one more gateway (gw-N, or `o.id`) of `o.org` (default the deployment's); with `o.replica`,
   * as that replica of the gateway id (`enroll --replica`).
   */
  addGateway(extraArgs?: string[], o?: { org?: string; id?: string; replica?: string }): Promise<GatewayHandle>;
  /** Starts `infisical-connect tcp` (or `http`) on 127.0.0.1:0. */
  connect(o?: ConnectOptions): Promise<ConnectHandle>;
  /** A checksummed transfer of `bytes` random bytes through a connect listener to a target (default the echo one). */
  transfer(
    via: ConnectHandle | number,
    bytes: number,
    o?: { target?: Target; timeoutMs?: number },
  ): Promise<TransferResult>;
  /** `infisical-ca revoke <kind> <subject>` (--org defaults to the deployment's for a gateway or an identity). */
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

export async function startDeployment(o: DeploymentOptions = {}): Promise<Deployment> {
  const dir = mkdtempSync(join(tmpdir(), 'lifecycle-'));
  mkdirSync(join(dir, 'logs'));
  mkdirSync(join(dir, 'secrets'), { mode: 0o700 });
  const all: Daemon[] = [];
  const tails = (lines = 25) => all.map((d) => d.tail(lines)).join('\n');
  const site: Site = { dir, logLevel: o.logLevel ?? 'info', all, tails: () => tails() };
  const targets: Target[] = [];
  let closed = false;

  const close = async () => {
    if (closed) return;
    closed = true;
    // Platform side first, then the gateways, the proxies, the CA: the order an operator would stop them.
    for (const program of ['connect', 'gateway', 'proxy', 'ca'] as const) {
      await Promise.all(all.filter((d) => d.program === program).map((d) => d.stop(10_000)));
    }
    for (const t of targets) await t.close();
    if (!o.keep && !process.env['LIFECYCLE_KEEP']) rmSync(dir, { recursive: true, force: true });
  };

  try {
    const target = await startTarget('echo');
    targets.push(target);
    const ca = await initCa(site, o.caArgs ?? [], o.caStore);
    const app = await createIdentity(site, ca, 'app', {
      targets: [target.address, ...(o.policyTargets ?? [])],
      modes: ['tcp', 'http', 'ping'],
    });
    await ca.start();

    const proxies: ProxyHandle[] = [];
    const gateways: GatewayHandle[] = [];
    const addProxy = async (extra: string[] = o.proxyArgs ?? []) => {
      const p = await startProxy(site, ca, `proxy-${proxies.length + 1}`, extra);
      proxies.push(p);
      return p;
    };
    const gatewayOptions = (extra: string[], org?: string, replica?: string) => ({
      allowPorts: [target.port, ...(o.allowPorts ?? [])],
      extra,
      proxies: () => proxies.length,
      ...(org ? { org } : {}),
      ...(replica ? { replica } : {}),
    });
    const addGateway = async (
      extra: string[] = o.gatewayArgs ?? [],
      g0: { org?: string; id?: string; replica?: string } = {},
    ) => {
      const id = g0.id ?? `gw-${gateways.length + 1}`;
      const g = await startGateway(site, ca, id, gatewayOptions(extra, g0.org, g0.replica));
      gateways.push(g);
      return g;
    };
    // In parallel (enrollment and start-up are most of the time), in id order.
    const ids = (n: number, prefix: string) => Array.from({ length: n }, (_, i) => `${prefix}-${i + 1}`);
    proxies.push(
      ...(await Promise.all([
        ...ids(o.proxies ?? 2, 'proxy').map((id) => startProxy(site, ca, id, o.proxyArgs ?? [])),
        ...ids(o.orgProxies ?? 0, 'org-proxy').map((id) => startProxy(site, ca, id, o.proxyArgs ?? [], ORG)),
      ])),
    );
    gateways.push(
      ...(await Promise.all(
        ids(o.gateways ?? 2, 'gw').map((id) => startGateway(site, ca, id, gatewayOptions(o.gatewayArgs ?? []))),
      )),
    );
    if (o.waitTunnels ?? true) await Promise.all(gateways.map((g) => g.waitTunnels()));

    const revoke: Deployment['revoke'] = (kind, subject, r = {}) => {
      const org = r.org ?? (kind === 'gateway' || kind === 'identity' ? ORG : undefined);
      return ca.cli([
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
      identity: (id, rule, org) => createIdentity(site, ca, id, rule, org),
      addProxy,
      addGateway,
      connect: (c = {}) =>
        startConnect(site, ca, {
          gatewayId: typeof c.gateway === 'string' ? c.gateway : ((c.gateway ?? gateways[0])?.gatewayId ?? 'gw-1'),
          identity: c.identity ?? app,
          target: c.target ?? target.address,
          args: c.args ?? [],
          wait: c.wait ?? true,
          ...(c.command ? { command: c.command } : {}),
        }),
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

export type { CaHandle, ConnectHandle, GatewayHandle, Identity, PolicyRule, ProxyHandle, Target, TransferResult };
export { assertByteExact, Daemon, ORG, startTarget, timeUntil, transfer, waitFor };
