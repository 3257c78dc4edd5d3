/**
 * A small deployment for end-to-end gateway tests, all in-process on 127.0.0.1: real proxies (lib/proxy),
 * a real Gateway (lib/gateway) whose state is built from test/helpers/world as enrollment would store it, and
 * the platform side from lib/client (grant from the World's CAs, dialViaProxy).
 */

import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { writeFileSync } from 'node:fs';
import net from 'node:net';
import { join } from 'node:path';
import { dialViaProxy } from '../../lib/client/dial.js';
import { type ClientGrant, type ProxyEndpoint as ClientProxy, obtainGrant } from '../../lib/client/grant.js';
import { Gateway, type GatewaySettings } from '../../lib/gateway/gateway.js';
import type { LimitRefusal, Refusal } from '../../lib/gateway/inner.js';
import { type GatewayState, GatewayStore } from '../../lib/gateway/state.js';
import type { StreamRecord } from '../../lib/gateway/streams.js';
import type { GrantMode, GrantTarget } from '../../lib/pki/grant.js';
import { DEFAULT_LIMITS, ProxyServer } from '../../lib/proxy/proxy.js';
import { FakeGrantSource } from '../client/fixtures.js';
import { freePort } from '../helpers/openssh.js';
import type { World } from '../helpers/world.js';
import { proxyCredentials } from '../proxy/harness.js';
import { echoServer } from './harness.js';

export const ORG = 'org-a';
export const GW = 'gw-e2e';

export interface RunningProxy {
  proxyId: string;
  server: ProxyServer;
  sshPort: number;
  tlsPort: number;
}

export async function startRealProxy(world: World, proxyId: string, ports = { ssh: 0, tls: 0 }): Promise<RunningProxy> {
  const server = await ProxyServer.start({
    credentials: proxyCredentials(world, 'instance', undefined, proxyId),
    limits: { ...DEFAULT_LIMITS },
    ssh: { host: '127.0.0.1', port: ports.ssh },
    tls: { host: '127.0.0.1', port: ports.tls },
    now: world.nowMs,
  });
  return { proxyId, server, sshPort: server.sshPort, tlsPort: server.tlsPort };
}

/** Stops a proxy like a crash would (every connection cut), keeping its ports for a restart. */
export async function killProxy(p: RunningProxy): Promise<void> {
  await p.server.stop();
}

/** The state `enroll` would have stored for this gateway, from the World's CAs. */
export function gatewayState(world: World, proxies: RunningProxy[], gatewayId = GW): GatewayState {
  const ssh = world.gatewaySsh({ orgId: ORG, gatewayId, scope: 'instance' });
  const inner = world.gatewayInnerTls({ orgId: ORG, gatewayId });
  return {
    orgId: ORG,
    gatewayId,
    gatewayUri: world.gatewayUri(ORG, gatewayId),
    caUrl: 'https://127.0.0.1:1',
    caFingerprint: `sha256:${'0'.repeat(64)}`,
    tlsKeyPem: inner.keyPem,
    tlsChainPem: inner.certPem,
    sshPrivateKey: ssh.privateKey,
    sshCertificates: [{ scope: 'instance', certificate: ssh.certificateLine }],
    sshHostCaKeys: [{ scope: 'instance', key: world.instance.sshServer.publicLine }],
    gatewayClientCaCerts: [world.org(ORG).gatewayClient.pem],
    proxies: proxies.map((p) => ({
      proxyId: p.proxyId,
      scope: 'instance' as const,
      hostname: '127.0.0.1',
      sshAddress: `127.0.0.1:${p.sshPort}`,
      tlsAddress: `127.0.0.1:${p.tlsPort}`,
    })),
    revocationFeedKey: '',
    notAfter: new Date(Date.now() + 3600_000).toISOString(),
  };
}

export function settings(ports: number[], over: Partial<GatewaySettings> = {}): GatewaySettings {
  return {
    allowlist: { cidrs: ['127.0.0.1/32'], hosts: ['localhost'], ports: ports.map(String), targets: [] },
    keepaliveIntervalMs: 2000,
    keepaliveCountMax: 2,
    backoff: { baseMs: 250, capMs: 2000, factor: 2, stableMs: 10_000 },
    maxStreams: 5000,
    handshakeTimeoutMs: 10_000,
    revocationPollMs: 0,
    renew: false,
    ...over,
  };
}

const quiet = { info() {}, warn() {}, error() {} };

/** `now`: the gateway's clock, default the World's (a gateway whose clock runs ahead, for expiry tests). */
export function startGateway(
  world: World,
  state: GatewayState,
  s: GatewaySettings,
  now: () => Date = world.now,
): { gateway: Gateway; records: StreamRecord[]; refusals: Refusal[]; limits: LimitRefusal[] } {
  const records: StreamRecord[] = [];
  const refusals: Refusal[] = [];
  const limits: LimitRefusal[] = [];
  const gateway = new Gateway(state, s, {
    audit: () => {},
    log: quiet,
    now,
    onStreamEnd: (r) => records.push(r),
    onRefused: (r) => refusals.push(r),
    onChannelRefused: (r) => limits.push(r),
  });
  gateway.start();
  return { gateway, records, refusals, limits };
}

/** One real proxy and one gateway with its tunnel up, in front of an echo target: what most e2e files start. */
export interface EchoPair {
  echo: Awaited<ReturnType<typeof echoServer>>;
  proxy: RunningProxy;
  gateway: Gateway;
  records: StreamRecord[];
  refusals: Refusal[];
  limits: LimitRefusal[];
  /** A tcp grant to the echo target through this gateway (one proxy). */
  grant(mode?: GrantMode): Promise<ClientGrant>;
  close(): Promise<void>;
}

/** Starts an EchoPair (`over`: gateway settings beside the echo port's allowlist); close() stops all three. */
export async function startEchoPair(world: World, over: Partial<GatewaySettings> = {}): Promise<EchoPair> {
  const echo = await echoServer();
  const proxy = await startRealProxy(world, 'p1');
  const started = startGateway(world, gatewayState(world, [proxy]), settings([echo.port], over));
  await started.gateway.pool.whenUp(10_000);
  return {
    echo,
    proxy,
    ...started,
    grant: (mode = 'tcp') => platformGrant(world, [proxy], { host: '127.0.0.1', port: echo.port }, mode, GW),
    close: async () => {
      await started.gateway.close();
      await proxy.server.stop();
      await echo.close();
    },
  };
}

export function clientProxies(proxies: RunningProxy[]): ClientProxy[] {
  return proxies.map((p) => ({
    proxyId: p.proxyId,
    scope: 'instance',
    hostname: '127.0.0.1',
    hostnames: ['127.0.0.1'],
    tlsAddress: `127.0.0.1:${p.tlsPort}`,
  }));
}

let grants = 0;

export function platformGrant(
  world: World,
  proxies: RunningProxy[],
  target: GrantTarget,
  mode: GrantMode,
  gatewayId = GW,
  o: { lifetimeSec?: number } = {},
): Promise<ClientGrant> {
  // Unique ids across calls: a revoked grant must not shadow the next test's.
  const grantId = () => `grant-e2e-${++grants}`;
  const source = new FakeGrantSource({ world, proxies: () => clientProxies(proxies), grantId, ...o });
  return obtainGrant(source, { orgId: ORG, gatewayId, target, mode });
}

/**
 * The platform side's local forwarder: each local connection becomes one relayed stream (via the first proxy
 * that answers), piped both ways.
 */
export async function localForwarder(
  grant: ClientGrant,
  mode: GrantMode = 'tcp',
): Promise<{ port: number; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer(async (local) => {
    sockets.add(local);
    local.once('close', () => sockets.delete(local));
    local.pause();
    for (const proxy of grant.proxies) {
      try {
        const { socket } = await dialViaProxy(grant, proxy, mode);
        sockets.add(socket as unknown as net.Socket);
        local.pipe(socket).pipe(local);
        local.resume();
        socket.on('error', () => local.destroy());
        local.on('error', () => socket.destroy());
        socket.once('close', () => local.destroy());
        local.once('close', () => socket.destroy());
        return;
      } catch {
        // next proxy
      }
    }
    local.destroy();
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    port: (server.address() as net.AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => server.close(r));
    },
  };
}

/** A gateway daemon process (build/daemons/gateway.js `serve`) over a state database written as `enroll` would. */
export interface GatewayDaemon {
  child: ChildProcess;
  dbPath: string;
  confPath: string;
  opsPort: number;
  /** Everything it wrote to stdout and stderr so far. */
  output(): string;
  /** Rewrites its config file with these allowed ports (then SIGHUP it to apply). */
  allowPorts(ports: number[]): void;
}

export async function spawnGatewayDaemon(
  world: World,
  dir: string,
  proxies: RunningProxy[],
  ports: number[],
): Promise<GatewayDaemon> {
  const dbPath = join(dir, 'state', 'gateway.db');
  const store = GatewayStore.open(dbPath);
  store.saveEnrollment(gatewayState(world, proxies));
  store.close();
  const opsPort = await freePort();
  const confPath = join(dir, 'gateway.conf');
  const allowPorts = (allowed: number[]) =>
    writeFileSync(
      confPath,
      [
        `state_directory = ${dir}/state`,
        `ops_listen = 127.0.0.1:${opsPort}`,
        'allow_cidrs = 127.0.0.1/32',
        `allow_ports = ${allowed.join(', ')}`,
        'revocation_poll = 0',
        'renew = false',
        'drain_timeout = 5s',
        '',
      ].join('\n'),
    );
  allowPorts(ports);
  const daemon = new URL('../../daemons/gateway.js', import.meta.url).pathname;
  const child = spawn(process.execPath, [daemon, 'serve', '--config', confPath], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  const collect = (d: Buffer) => {
    out += d.toString();
  };
  child.stdout!.on('data', collect);
  child.stderr!.on('data', collect);
  return { child, dbPath, confPath, opsPort, output: () => out, allowPorts };
}
