/**
 * What the abuse-limit tests (issue 14) do to real proxies and gateways: floods of raw TCP connections from one
 * source that never handshake (kept topped up), a TLS client that drips its ClientHello a byte at a time, a
 * login with a gateway's own SSH certificate (read from its state directory) that asks for nothing, outer
 * connections with a real grant that read the proxy's status line and then hold the stream without ever
 * starting the inner handshake, and the daemons' limit-refusal counters from /metrics.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import net from 'node:net';
import { join } from 'node:path';
import tls from 'node:tls';
import type { ClientGrant } from '../../lib/client/grant.js';
import { grantTls } from '../../lib/client/grant-tls.js';
import { unwrap } from '../../lib/errors/codes.js';
import { GatewayStore } from '../../lib/gateway/state.js';
import { decodeStatus, RELAY_ALPN, type RelayStatus } from '../../lib/protocol/relay.js';
import { parsePublicKey } from '../../lib/sshcert/index.js';
import { connectWithCertificate } from '../../lib/sshwire/client.js';
import type { Client } from '../../lib/sshwire/ssh2.js';
import { assertByteExact, type Deployment, type GatewayHandle, type ProxyHandle } from './deploy.js';

const MiB = 1024 * 1024;

export async function limitRefusals(d: ProxyHandle | GatewayHandle, labels: Record<string, string>): Promise<number> {
  const name =
    d.program === 'proxy' ? 'infisical_proxy_limit_refusals_total' : 'infisical_gateway_limit_refusals_total';
  return (await d.metric(name, labels)) ?? 0;
}

/**
 * Keeps `n` raw TCP connections from `source` open to `port` that never send a byte: each one the server closes
 * is replaced after `pauseMs`. Counts the closes it saw (the server's doing: the flooder closes none until stop).
 */
export function flood(port: number, source: string, n: number, pauseMs = 200) {
  const live = new Set<net.Socket>();
  let stopped = false;
  let serverClosed = 0;
  const open = (): void => {
    if (stopped) return;
    const s = net.connect({ host: '127.0.0.1', port, localAddress: source });
    s.on('error', () => {});
    s.resume();
    live.add(s);
    s.once('close', () => {
      live.delete(s);
      if (stopped) return;
      serverClosed++;
      setTimeout(open, pauseMs);
    });
  };
  for (let i = 0; i < n; i++) open();
  return {
    get open() {
      return [...live].filter((s) => !s.connecting && !s.destroyed).length;
    },
    get serverClosed() {
      return serverClosed;
    },
    stop() {
      stopped = true;
      for (const s of live) s.destroy();
    },
  };
}

/** The first flight a TLS client sends (its ClientHello), captured from a real tls.connect. */
export async function clientHello(): Promise<Buffer> {
  const server = net.createServer();
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as net.AddressInfo).port;
  const got = new Promise<Buffer>((resolve) =>
    server.once('connection', (s) =>
      s.once('data', (d: Buffer) => {
        s.destroy();
        resolve(d);
      }),
    ),
  );
  const c = tls.connect({ host: '127.0.0.1', port, ALPNProtocols: [RELAY_ALPN], rejectUnauthorized: false });
  c.on('error', () => {});
  const hello = await got;
  c.destroy();
  server.close();
  return hello;
}

/** A TLS client from `source` that sends its ClientHello one byte every `everyMs`: never idle, never done. */
export function drip(port: number, source: string, hello: Buffer, everyMs = 300) {
  const s = net.connect({ host: '127.0.0.1', port, localAddress: source });
  s.on('error', () => {});
  s.resume();
  let i = 0;
  const timer = setInterval(() => {
    if (i < hello.length && !s.destroyed) s.write(hello.subarray(i, ++i));
  }, everyMs);
  const closed = new Promise<void>((r) => s.once('close', () => r()));
  return {
    closed,
    get sent() {
      return i;
    },
    stop() {
      clearInterval(timer);
      s.destroy();
    },
  };
}

/** One TLS handshake from a client without a certificate; true if the handshake completed (before any refusal). */
function unauthenticatedHandshake(port: number, timeoutMs: number): Promise<boolean> {
  return new Promise((resolve) => {
    let secured = false;
    const s = tls.connect({
      host: '127.0.0.1',
      port,
      servername: 'localhost',
      rejectUnauthorized: false,
      ALPNProtocols: [RELAY_ALPN],
    });
    const timer = setTimeout(() => s.destroy(), timeoutMs);
    s.on('error', () => {});
    s.on('secureConnect', () => {
      secured = true;
      s.resume();
    });
    s.on('close', () => {
      clearTimeout(timer);
      resolve(secured);
    });
  });
}

/**
 * `n` TLS handshakes without a client certificate against `port`, `inFlight` at a time, each held until the
 * server closes it (or `timeoutMs`); returns how many completed their handshake.
 */
export async function unauthenticatedHandshakes(port: number, n: number, inFlight: number, timeoutMs = 5000) {
  let started = 0;
  let secured = 0;
  await Promise.all(
    Array.from({ length: inFlight }, async () => {
      while (started < n) {
        started++;
        if (await unauthenticatedHandshake(port, timeoutMs)) secured++;
      }
    }),
  );
  return secured;
}

/** The gateway's own SSH login material, read from its state directory (as the running serve uses it). */
export function gatewaySsh(g: GatewayHandle) {
  const store = GatewayStore.open(join(g.stateDir, 'gateway.db'));
  try {
    const s = store.load();
    const cert = s.sshCertificates.find((c) => c.scope === 'instance');
    assert.ok(cert, `${g.name} holds an instance-scope SSH certificate`);
    return {
      gatewayId: s.gatewayId,
      privateKey: s.sshPrivateKey,
      certificate: cert.certificate,
      hostCas: s.sshHostCaKeys.filter((k) => k.scope === 'instance').map((k) => unwrap(parsePublicKey(k.key))),
    };
  } finally {
    store.close();
  }
}

/** Logs in to a proxy's SSH listener as gateway `g` (its certificate); asks for nothing. */
export async function loginAs(g: GatewayHandle, p: ProxyHandle): Promise<{ client: Client; closed: Promise<void> }> {
  const ssh = gatewaySsh(g);
  const { client } = await connectWithCertificate({
    host: '127.0.0.1',
    port: p.sshPort,
    username: ssh.gatewayId,
    privateKey: ssh.privateKey,
    certificate: ssh.certificate,
    trustedHostCaKeys: ssh.hostCas,
    hostPrincipal: '127.0.0.1',
    readyTimeout: 20_000,
  });
  client.on('error', () => {});
  const closed = new Promise<void>((r) => client.once('close', () => r()));
  return { client, closed };
}

export function forward(client: Client, name: string): Promise<Error | undefined> {
  return new Promise((resolve) => client.forwardIn(name, 0, (err) => resolve(err ?? undefined)));
}

export async function transferOk(d: Deployment, o: Parameters<Deployment['connect']>[0] = {}): Promise<void> {
  const c = await d.connect(o);
  try {
    assertByteExact(await d.transfer(c, 2 * MiB, { timeoutMs: 60_000 }));
  } finally {
    await c.stop();
  }
}

export interface HeldOuter {
  status: RelayStatus;
  socket: tls.TLSSocket;
}

/**
 * One outer connection to a proxy's TLS port with the grant's instance outer certificate: reads the status
 * line, then holds the stream open without a byte more (no inner handshake ever starts). A refusal's socket is
 * closed by the proxy.
 */
export async function holdOuter(port: number, grant: ClientGrant, timeoutMs = 20_000): Promise<HeldOuter> {
  const secureContext = grantTls(grant).outer('instance');
  const socket = tls.connect({
    ...(secureContext ? { secureContext } : {}),
    host: '127.0.0.1',
    port,
    ALPNProtocols: [RELAY_ALPN],
    rejectUnauthorized: false,
    checkServerIdentity: () => undefined,
  });
  socket.on('error', () => {});
  let buf = Buffer.alloc(0);
  const status = await new Promise<RelayStatus>((resolve) => {
    const timer = setTimeout(
      () => done({ ok: false, code: 'E_TIMEOUT', message: 'no status line in time' }),
      timeoutMs,
    );
    const done = (s: RelayStatus) => {
      clearTimeout(timer);
      socket.off('data', onData);
      resolve(s);
    };
    const onData = (d: Buffer) => {
      buf = Buffer.concat([buf, d]);
      const decoded = decodeStatus(buf);
      if (decoded) done(decoded.status);
    };
    socket.on('data', onData);
    socket.once('close', () =>
      done({ ok: false, code: 'E_PROXY_UNREACHABLE', message: 'closed before a status line' }),
    );
  });
  return { status, socket };
}
