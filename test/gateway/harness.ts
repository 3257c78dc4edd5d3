/**
 * Gateway test harness: an InnerServer fed by plain TCP connections on 127.0.0.1 (each one stands for a
 * forwarded channel), platform-side dialers with inner client certs from test/helpers/world, and small
 * targets (echo TCP, HTTP).
 */
import { once } from 'node:events';
import http from 'node:http';
import net from 'node:net';
import tls from 'node:tls';
import { unwrap } from '../../lib/errors/codes.js';
import { parseAllowlist } from '../../lib/gateway/allowlist.js';
import { type InnerCredentials, InnerServer, type InnerServerOptions, type Refusal } from '../../lib/gateway/inner.js';
import { RevocationSet } from '../../lib/gateway/revocations.js';
import { type StreamRecord, StreamRegistry } from '../../lib/gateway/streams.js';
import { checkPeer, mtlsClientOptions } from '../../lib/pki/tls.js';
import { decodeStatus, type ModeAlpn, type RelayStatus } from '../../lib/protocol/relay.js';
import type { TlsCredentials, World } from '../helpers/world.js';

export interface Harness {
  inner: InnerServer;
  /** What the inner server was started with (a reload passing these again changes nothing). */
  credentials: InnerCredentials;
  registry: StreamRegistry;
  revoked: RevocationSet;
  refusals: Refusal[];
  records: StreamRecord[];
  /** Port of the "tunnel" listener: each connection is handed to inner.handle. */
  port: number;
  close(): Promise<void>;
}

/** Names the harness resolver knows besides localhost: an internal name the platform must never see resolved. */
export const HIDDEN_HOST = 'hidden.internal';
export const HIDDEN_ADDRESS = '10.9.9.9';

export async function startHarness(
  world: World,
  o: {
    orgId: string;
    gatewayId: string;
    ports: number[];
    /** Named targets ("name=host:port"). */
    targets?: string[];
    maxStreams?: number;
    over?: Partial<InnerServerOptions>;
  },
): Promise<Harness> {
  const server = world.gatewayInnerTls({ orgId: o.orgId, gatewayId: o.gatewayId });
  const refusals: Refusal[] = [];
  const records: StreamRecord[] = [];
  const revoked = new RevocationSet();
  const registry = new StreamRegistry({
    gatewayId: o.gatewayId,
    onEnd: (r) => records.push(r),
    now: world.nowMs,
    ...(o.maxStreams === undefined ? {} : { maxStreams: o.maxStreams }),
  });
  const credentials = {
    key: server.keyPem,
    chain: server.certPem,
    clientCaPems: [world.org(o.orgId).gatewayClient.pem],
  };
  const inner = new InnerServer({
    orgId: o.orgId,
    gatewayId: o.gatewayId,
    credentials,
    allowlist: unwrap(
      parseAllowlist({
        cidrs: ['127.0.0.0/8'],
        hosts: ['localhost', HIDDEN_HOST],
        ports: o.ports.map(String),
        targets: o.targets ?? [],
      }),
    ),
    resolver: async (host) => [host === HIDDEN_HOST ? HIDDEN_ADDRESS : '127.0.0.1'],
    revoked,
    registry,
    onRefused: (r) => refusals.push(r),
    health: () => ({ ok: true, gatewayId: o.gatewayId }),
    now: world.now,
    ...o.over,
  });
  const sockets = new Set<net.Socket>();
  const tunnel = net.createServer((sock) => {
    sockets.add(sock);
    sock.once('close', () => sockets.delete(sock));
    inner.handle(sock, { proxyId: 'test-proxy' });
  });
  tunnel.listen(0, '127.0.0.1');
  await once(tunnel, 'listening');
  return {
    inner,
    credentials,
    registry,
    revoked,
    refusals,
    records,
    port: (tunnel.address() as net.AddressInfo).port,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => tunnel.close(r));
    },
  };
}

/**
 * The platform's inner TLS session to the gateway, checking the gateway's URI like lib/client does; `mode` is
 * the ALPN offered, or several in the platform's order.
 */
export async function dialInner(
  world: World,
  port: number,
  client: TlsCredentials,
  mode: ModeAlpn | string | readonly string[],
  o: { orgId: string; gatewayId: string },
): Promise<tls.TLSSocket> {
  const base = mtlsClientOptions({
    key: client.keyPem,
    chain: client.certPem,
    anchors: [world.org(o.orgId).gatewayServer.pem],
    alpn: typeof mode === 'string' ? [mode] : [...mode],
    host: '127.0.0.1',
    port,
  });
  const socket = tls.connect(base);
  await once(socket, 'secureConnect');
  const v = checkPeer(
    socket,
    {
      anchors: [world.org(o.orgId).gatewayServer.pem],
      purpose: 'serverAuth',
      expectedUri: world.gatewayUri(o.orgId, o.gatewayId),
    },
    new Date(),
  );
  if (!v.ok) throw new Error(`gateway cert refused: ${v.reason}`);
  return socket;
}

/**
 * The gateway's status line inside the inner session (lib/protocol/relay.ts): resolves with it, or with
 * `closed` when the session ended without one. Bytes after the line stay readable on the socket.
 */
export function readGatewayStatus(socket: tls.TLSSocket, timeoutMs = 10_000): Promise<RelayStatus | 'closed'> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => finish(new Error('no status line in time')), timeoutMs);
    const onReadable = () => {
      for (let c = socket.read() as Buffer | null; c !== null; c = socket.read() as Buffer | null) {
        buf = Buffer.concat([buf, c]);
        const d = decodeStatus(buf, 'gateway');
        if (!d) continue;
        finish(null, d.status);
        if (d.rest.length > 0) socket.unshift(d.rest);
        return;
      }
    };
    const onClose = () => finish(null, 'closed');
    const finish = (err: Error | null, status?: RelayStatus | 'closed') => {
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('end', onClose);
      socket.off('close', onClose);
      if (err) reject(err);
      else resolve(status!);
    };
    socket.on('error', () => undefined);
    socket.on('readable', onReadable);
    socket.once('end', onClose);
    socket.once('close', onClose);
  });
}

/** dialInner, then the status line, which must be ok: a stream ready for payload. */
export async function openStream(
  world: World,
  port: number,
  client: TlsCredentials,
  mode: ModeAlpn,
  o: { orgId: string; gatewayId: string },
): Promise<tls.TLSSocket> {
  const socket = await dialInner(world, port, client, mode, o);
  const status = await readGatewayStatus(socket);
  if (status === 'closed' || !status.ok) {
    socket.destroy();
    throw new Error(`gateway refused the stream: ${JSON.stringify(status)}`);
  }
  return socket;
}

/** Reads until the peer closes; resolves with what arrived (a refusal arrives as nothing and a close). */
export function readAll(socket: tls.TLSSocket, timeoutMs = 10_000): Promise<{ data: string; error?: string }> {
  return new Promise((resolve) => {
    let data = '';
    let error: string | undefined;
    const timer = setTimeout(() => {
      socket.destroy();
      resolve({ data, error: 'timeout' });
    }, timeoutMs);
    socket.on('data', (d: Buffer) => {
      data += d.toString();
    });
    socket.on('error', (e: NodeJS.ErrnoException) => {
      error = e.code ?? e.message;
    });
    socket.once('close', () => {
      clearTimeout(timer);
      resolve(error === undefined ? { data } : { data, error });
    });
  });
}

export async function echoServer(): Promise<{ port: number; connections: () => number; close(): Promise<void> }> {
  let count = 0;
  const sockets = new Set<net.Socket>();
  const srv = net.createServer((s) => {
    count++;
    sockets.add(s);
    s.once('close', () => sockets.delete(s));
    s.on('error', () => {});
    s.pipe(s);
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return {
    port: (srv.address() as net.AddressInfo).port,
    connections: () => count,
    close: async () => {
      for (const s of sockets) s.destroy();
      await new Promise((r) => srv.close(r));
    },
  };
}

export async function httpServer(): Promise<{ port: number; seen: http.IncomingMessage[]; close(): Promise<void> }> {
  const seen: http.IncomingMessage[] = [];
  const srv = http.createServer((req, res) => {
    seen.push(req);
    let body = '';
    req.on('data', (d: Buffer) => {
      body += d.toString();
    });
    req.on('end', () => {
      const text = JSON.stringify({ method: req.method, url: req.url, host: req.headers.host, body });
      res.writeHead(200, { 'content-type': 'application/json' });
      res.end(text);
    });
  });
  srv.listen(0, '127.0.0.1');
  await once(srv, 'listening');
  return {
    port: (srv.address() as net.AddressInfo).port,
    seen,
    close: async () => {
      srv.closeAllConnections();
      await new Promise((r) => srv.close(r));
    },
  };
}

export async function waitFor(cond: () => boolean, timeoutMs = 10_000, what = 'condition'): Promise<void> {
  const start = Date.now();
  while (!cond()) {
    if (Date.now() - start > timeoutMs) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 10));
  }
}
