/**
 * Proxy test harness: a ProxyServer with World credentials on 127.0.0.1, a tiny gateway built directly on
 * lib/sshwire (logs in with its cert, asks for `tcpip-forward <gatewayId>`, hands each forwarded channel to a
 * handler), and a platform dialer that reads the status line.
 */
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { decodeStatus, RELAY_ALPN, type RelayStatus } from '../../lib/protocol/relay.js';
import {
  DEFAULT_LIMITS,
  type ProxyCredentials,
  type ProxyLimits,
  type ProxyLog,
  ProxyServer,
} from '../../lib/proxy/proxy.js';
import { connectWithCertificate } from '../../lib/sshwire/client.js';
import type { Client, ClientChannel } from '../../lib/sshwire/ssh2.js';
import type { Scope, SshCredentials, TlsCredentials, World } from '../helpers/world.js';

export function proxyCredentials(world: World, scope: Scope, orgId?: string, proxyId = 'p1'): ProxyCredentials {
  const at = { scope, proxyId, ...(orgId ? { orgId } : {}) };
  const tlsCreds = world.proxyTls(at);
  const host = world.proxySshHost(at);
  const trust = world.proxyTrust(scope, orgId);
  return {
    proxyUri: world.proxyUri(scope, proxyId, orgId),
    tlsKey: tlsCreds.key,
    tlsChain: tlsCreds.certPem,
    sshHostKey: host.privateKey,
    sshHostCertificate: host.certificate,
    sshUserCaKeys: trust.sshUserCaKeys,
    pkiClientCaPems: trust.pkiClientCaPems,
  };
}

export interface StartProxy {
  scope: Scope;
  orgId?: string;
  limits?: Partial<ProxyLimits>;
  tap?: (direction: 'up' | 'down', chunk: Buffer) => void;
  log?: ProxyLog;
}

export function startProxy(world: World, o: StartProxy): Promise<ProxyServer> {
  return ProxyServer.start({
    credentials: proxyCredentials(world, o.scope, o.orgId),
    limits: { ...DEFAULT_LIMITS, ...o.limits },
    ssh: { host: '127.0.0.1', port: 0 },
    tls: { host: '127.0.0.1', port: 0 },
    now: world.nowMs,
    ...(o.tap ? { tap: o.tap } : {}),
    ...(o.log ? { log: o.log } : {}),
  });
}

export interface TestGateway {
  client: Client;
  /** The port the proxy allocated for the forward. */
  port: number;
  close(): void;
}

export interface GatewaySpec {
  orgId: string;
  gatewayId: string;
  /** Which proxy kind's CAs the gateway uses (its SSH cert and the host CA it trusts). */
  scope: Scope;
  ssh?: SshCredentials;
  /** Log in as this user (default gatewayId). */
  username?: string;
  /** Ask to forward this name (default gatewayId); null: do not ask. */
  bindAddr?: string | null;
  onStream?: (channel: ClientChannel) => void;
  /** Awaited before the gateway accepts a forwarded channel (a slow gateway). */
  beforeAccept?: () => Promise<void>;
  /** Refuse forwarded channels while this says so (a replica going away between the pick and the open). */
  refuseChannels?: () => boolean;
}

/** Connects an in-process gateway; rejects as lib/sshwire does (E_SSH_AUTH) or with the forward's error. */
export async function connectGateway(world: World, proxy: ProxyServer, g: GatewaySpec): Promise<TestGateway> {
  const ssh = g.ssh ?? world.gatewaySsh({ orgId: g.orgId, gatewayId: g.gatewayId, scope: g.scope });
  const { client } = await connectWithCertificate({
    host: '127.0.0.1',
    port: proxy.sshPort,
    username: g.username ?? g.gatewayId,
    privateKey: ssh.privateKey,
    certificate: ssh.certificate,
    trustedHostCaKeys: [world.proxyCas(g.scope, g.orgId).sshServer.publicBlob],
    hostPrincipal: '127.0.0.1',
    readyTimeout: 10_000,
  });
  client.on('error', () => {});
  client.on('tcp connection', async (_info, accept, reject) => {
    if (g.refuseChannels?.()) return reject();
    await g.beforeAccept?.();
    const channel = accept();
    if (g.onStream) g.onStream(channel);
    else echo(channel);
  });
  const gw: TestGateway = { client, port: 0, close: () => client.end() };
  if (g.bindAddr === null) return gw;
  try {
    gw.port = await new Promise<number>((resolve, reject) =>
      client.forwardIn(g.bindAddr ?? g.gatewayId, 0, (err, port) => (err ? reject(err) : resolve(port))),
    );
  } catch (err) {
    client.end();
    throw err;
  }
  return gw;
}

export function echo(stream: Duplex): void {
  stream.on('error', () => {});
  stream.pipe(stream);
}

export interface Dialled {
  status: RelayStatus;
  socket: tls.TLSSocket;
}

/** Opens the outer mTLS session with `outer` and reads the status line; the rest stays unread in the socket. */
export async function dialProxy(
  world: World,
  proxy: ProxyServer,
  outer: TlsCredentials,
  o: {
    alpn?: string[] | null;
    scope?: Scope;
    orgId?: string;
    onSession?: (session: Buffer) => void;
    /** Keep the write side open after the proxy's end (a platform still sending after the answer). */
    allowHalfOpen?: boolean;
  } = {},
): Promise<Dialled> {
  const socket = tls.connect({
    ...(o.allowHalfOpen ? { allowHalfOpen: true } : {}),
    host: '127.0.0.1',
    port: proxy.tlsPort,
    key: outer.keyPem,
    cert: outer.certPem,
    ca: [world.proxyCas(o.scope ?? 'instance', o.orgId).pkiServer.pem],
    servername: 'localhost',
    minVersion: 'TLSv1.3',
    ...(o.alpn === null ? {} : { ALPNProtocols: o.alpn ?? [RELAY_ALPN] }),
  });
  socket.on('error', () => {});
  if (o.onSession) socket.on('session', o.onSession);
  await once(socket, 'secureConnect');
  return { status: await readStatus(socket), socket };
}

/**
 * Opens the outer mTLS session and reads EVERY byte the proxy sends until it closes (nothing is written):
 * for refusals, where the test must see that no success line ever came.
 */
export async function dialAll(
  world: World,
  proxy: ProxyServer,
  outer: TlsCredentials,
  o: { scope?: Scope; orgId?: string; session?: Buffer; onSecure?: (socket: tls.TLSSocket) => void } = {},
): Promise<Buffer> {
  const socket = tls.connect({
    host: '127.0.0.1',
    port: proxy.tlsPort,
    key: outer.keyPem,
    cert: outer.certPem,
    ca: [world.proxyCas(o.scope ?? 'instance', o.orgId).pkiServer.pem],
    servername: 'localhost',
    minVersion: 'TLSv1.3',
    ALPNProtocols: [RELAY_ALPN],
    ...(o.session ? { session: o.session } : {}),
  });
  const chunks: Buffer[] = [];
  socket.on('error', () => {});
  if (o.onSecure) socket.once('secureConnect', () => o.onSecure?.(socket));
  socket.on('data', (c: Buffer) => chunks.push(c));
  // A proxy that wrongly keeps the connection open still yields what it sent.
  const giveUp = setTimeout(() => socket.destroy(), 10_000);
  await closed(socket);
  clearTimeout(giveUp);
  return Buffer.concat(chunks);
}

/** Reads up to the status line, pushing back what follows it. */
export async function readStatus(socket: tls.TLSSocket): Promise<RelayStatus> {
  let buf = Buffer.alloc(0);
  for (;;) {
    const chunk = socket.read() as Buffer | null;
    if (chunk) {
      buf = Buffer.concat([buf, chunk]);
      const decoded = decodeStatus(buf);
      if (decoded) {
        if (decoded.rest.length) socket.unshift(decoded.rest);
        return decoded.status;
      }
      continue;
    }
    if (socket.readableEnded || socket.destroyed) {
      return { ok: false, code: 'E_ROUTE_FORBIDDEN', message: 'closed before a status line' };
    }
    await Promise.race([once(socket, 'readable'), once(socket, 'close')]);
  }
}

/** Writes `data` and collects `length` bytes back. */
export async function roundTrip(socket: Duplex, data: Buffer): Promise<Buffer> {
  const chunks: Buffer[] = [];
  let n = 0;
  const done = new Promise<void>((resolve, reject) => {
    const onData = (c: Buffer) => {
      chunks.push(c);
      n += c.length;
      if (n >= data.length) {
        socket.off('data', onData);
        resolve();
      }
    };
    socket.on('data', onData);
    socket.once('close', () => reject(new Error('closed')));
  });
  socket.write(data);
  await done;
  return Buffer.concat(chunks);
}

/** Polls `cond` until true (every 20 ms, up to `ms`): for effects that happen on another connection. */
export async function eventually(cond: () => boolean, ms = 10_000): Promise<void> {
  const deadline = Date.now() + ms;
  while (!cond()) {
    if (Date.now() > deadline) throw new Error('condition not met in time');
    await new Promise((r) => setTimeout(r, 20));
  }
}

export function closed(socket: Duplex): Promise<void> {
  if (socket.destroyed) return Promise.resolve();
  // Not events.once: it rejects on 'error', and a refused socket may well see one (EPIPE, reset) before closing.
  return new Promise((resolve) => socket.once('close', () => resolve()));
}
