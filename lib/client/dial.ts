/**
 * One relayed stream through one proxy (lib/protocol/relay.ts):
 *   1. outer mTLS to the proxy, ALPN RELAY_ALPN; the proxy's server cert must chain to a proxy PKI server CA
 *      of the grant, carry the proxy's URI and the host name we dialled (checkPeer, THE verifier);
 *   2. the proxy's one status line: ok, or a refusal with a code (E_GATEWAY_OFFLINE, E_ROUTE_FORBIDDEN…);
 *   3. inner mTLS to the gateway over the same bytes, ALPN = mode; the gateway's cert must chain to the org
 *      gateway server CA and carry EXACTLY the gateway URI of the grant.
 * Every failure is a ConnectError naming the hop. Trying other proxies is the caller's business (connector.ts).
 */
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { checkPeer, mtlsClientOptions } from '../pki/tls.js';
import type { VerifiedPeer } from '../pki/verify.js';
import type { ErrorCode } from '../protocol/errors.js';
import { instanceProxyUri, orgProxyUri } from '../protocol/identity.js';
import { decodeStatus, MAX_STATUS_LINE, type ModeAlpn, RELAY_ALPN } from '../protocol/relay.js';
import { ConnectError, type Hop } from './errors.js';
import type { ClientGrant, ProxyEndpoint } from './grant.js';

export const DEFAULT_STEP_TIMEOUT_MS = 10_000;

export interface DialOptions {
  now?: () => Date;
  /** Bound on each step (proxy connect + handshake, status line, inner handshake). */
  stepTimeoutMs?: number;
}

export interface RelayedStream {
  /** The end-to-end stream to the gateway (inner TLS). Errors on it are raw; pass them through `innerError`. */
  socket: tls.TLSSocket;
  proxy: ProxyEndpoint;
  gateway: VerifiedPeer;
  /** Milliseconds spent in each step. */
  timings: { proxyMs: number; statusMs: number; gatewayMs: number };
}

/** Opens the outer session, reads the status line and runs the inner handshake. */
export async function dialViaProxy(
  grant: ClientGrant,
  proxy: ProxyEndpoint,
  mode: ModeAlpn,
  opts: DialOptions = {},
): Promise<RelayedStream> {
  const now = opts.now ?? (() => new Date());
  const timeout = opts.stepTimeoutMs ?? DEFAULT_STEP_TIMEOUT_MS;
  const fail = (code: ErrorCode, hop: Hop, detail: string, cause?: unknown) =>
    new ConnectError(code, hop, detail, { proxyId: proxy.proxyId, ...(cause === undefined ? {} : { cause }) });

  const t0 = performance.now();
  const outer = await connectOuter(grant, proxy, now, timeout, fail);
  const t1 = performance.now();
  let rest: Buffer;
  try {
    rest = await readStatus(outer, timeout, fail);
  } catch (err) {
    outer.destroy();
    throw err;
  }
  const t2 = performance.now();
  // From here the inner session reports failures (its close and error); the outer one must not crash us.
  outer.on('error', () => undefined);
  const inner = await connectInner(outer, rest, grant, mode, now, timeout, fail);
  const t3 = performance.now();
  return {
    socket: inner.socket,
    proxy,
    gateway: inner.peer,
    timings: { proxyMs: t1 - t0, statusMs: t2 - t1, gatewayMs: t3 - t2 },
  };
}

type Fail = (code: ErrorCode, hop: Hop, detail: string, cause?: unknown) => ConnectError;

async function connectOuter(
  grant: ClientGrant,
  proxy: ProxyEndpoint,
  now: () => Date,
  timeout: number,
  fail: Fail,
): Promise<tls.TLSSocket> {
  const chain = grant.outerChain[proxy.scope];
  if (!chain) throw fail('E_CERT_WRONG_TYPE', 'local', `no outer certificate for ${proxy.scope} proxies`);
  const addr = parseAddress(proxy.tlsAddress);
  if (!addr) throw fail('E_PROXY_UNREACHABLE', 'proxy', `bad proxy address ${JSON.stringify(proxy.tlsAddress)}`);
  const socket = tls.connect(
    mtlsClientOptions({
      key: grant.privateKey,
      chain,
      anchors: grant.proxyServerCas,
      alpn: [RELAY_ALPN],
      host: addr.host,
      port: addr.port,
      servername: proxy.hostname,
    }),
  );
  // Interactive protocols (psql, HTTP) write small records: do not let Nagle hold them for an ACK.
  socket.setNoDelay(true);
  try {
    await within(once(socket, 'secureConnect'), timeout, () =>
      fail('E_TIMEOUT', 'proxy', `no TLS session with ${proxy.tlsAddress} within ${timeout} ms`),
    );
  } catch (err) {
    socket.destroy();
    throw err instanceof ConnectError ? err : transportError(err, 'proxy', fail);
  }
  // The proxy's URI follows from the list the CA gave us: an org proxy of our org, or an instance proxy.
  const expectedUri =
    proxy.scope === 'instance'
      ? instanceProxyUri(grant.trustDomain, proxy.proxyId)
      : orgProxyUri(grant.trustDomain, grant.spec.orgId, proxy.proxyId);
  const v = checkPeer(
    socket,
    { anchors: grant.proxyServerCas, purpose: 'serverAuth', expectedHost: proxy.hostname, expectedUri },
    now(),
  );
  if (!v.ok) {
    socket.destroy();
    throw fail(v.code, 'proxy', `proxy server certificate: ${v.reason}`);
  }
  if (socket.alpnProtocol !== RELAY_ALPN) {
    socket.destroy();
    throw fail('E_ROUTE_FORBIDDEN', 'proxy', `proxy did not select ALPN ${RELAY_ALPN}`);
  }
  return socket;
}

/** Reads the proxy's status line; resolves with the bytes after it, rejects with the proxy's refusal. */
function readStatus(socket: tls.TLSSocket, timeout: number, fail: Fail): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => done(fail('E_TIMEOUT', 'proxy', `no status line within ${timeout} ms`)), timeout);
    const onData = (chunk: Buffer) => {
      buf = Buffer.concat([buf, chunk]);
      const decoded = decodeStatus(buf.subarray(0, MAX_STATUS_LINE));
      if (!decoded) return;
      if (decoded.status.ok) {
        done(null, Buffer.concat([decoded.rest, buf.subarray(MAX_STATUS_LINE)]));
      } else {
        done(fail(decoded.status.code, 'proxy', decoded.status.message));
      }
    };
    const onEnd = () =>
      done(fail('E_PROXY_UNREACHABLE', 'proxy', 'proxy closed the connection before its status line'));
    const onError = (err: Error) => done(transportError(err, 'proxy', fail));
    const done = (err: ConnectError | null, rest?: Buffer) => {
      clearTimeout(timer);
      socket.off('data', onData);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
      socket.pause();
      if (err) reject(err);
      else resolve(rest ?? Buffer.alloc(0));
    };
    socket.on('data', onData);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', onError);
  });
}

async function connectInner(
  outer: tls.TLSSocket,
  rest: Buffer,
  grant: ClientGrant,
  mode: ModeAlpn,
  now: () => Date,
  timeout: number,
  fail: Fail,
): Promise<{ socket: tls.TLSSocket; peer: VerifiedPeer }> {
  // The gateway speaks only after our ClientHello, so `rest` is normally empty; keep it if not.
  if (rest.length > 0) outer.unshift(rest);
  const base = mtlsClientOptions({
    key: grant.privateKey,
    chain: grant.innerChain,
    anchors: grant.gatewayServerCas,
    alpn: [mode],
    host: 'gateway',
    port: 0,
  });
  const { host: _h, port: _p, servername: _s, ...options } = base;
  const socket = tls.connect({ ...options, socket: outer as Duplex });
  socket.once('close', () => outer.destroy());
  try {
    await within(once(socket, 'secureConnect'), timeout, () =>
      fail('E_TIMEOUT', 'gateway', `no inner TLS session with the gateway within ${timeout} ms`),
    );
  } catch (err) {
    socket.destroy();
    throw err instanceof ConnectError ? err : transportError(err, 'gateway', fail);
  }
  // EXACT identity: a cert of another gateway, or of another org's CA, is refused here.
  const v = checkPeer(
    socket,
    { anchors: grant.gatewayServerCas, purpose: 'serverAuth', expectedUri: grant.gatewayUri },
    now(),
  );
  if (!v.ok) {
    socket.destroy();
    throw fail(v.code, 'gateway', `gateway certificate: ${v.reason}`);
  }
  if (socket.alpnProtocol !== mode) {
    socket.destroy();
    throw fail('E_TARGET_NOT_ALLOWED', 'gateway', `gateway did not accept mode ${mode}`);
  }
  return { socket, peer: v.value };
}

/** TLS alerts, by the OpenSSL reason Node puts in err.code, as what they mean at each hop. */
const ALERTS: Record<string, { proxy: ErrorCode; gateway: ErrorCode }> = {
  CERTIFICATE_EXPIRED: { proxy: 'E_CERT_EXPIRED', gateway: 'E_GRANT_EXPIRED' },
  CERTIFICATE_REVOKED: { proxy: 'E_CERT_REVOKED', gateway: 'E_CERT_REVOKED' },
  UNKNOWN_CA: { proxy: 'E_CERT_UNTRUSTED', gateway: 'E_CERT_UNTRUSTED' },
  BAD_CERTIFICATE: { proxy: 'E_CERT_UNTRUSTED', gateway: 'E_CERT_UNTRUSTED' },
  CERTIFICATE_REQUIRED: { proxy: 'E_CERT_UNTRUSTED', gateway: 'E_GRANT_MISSING' },
  ACCESS_DENIED: { proxy: 'E_ROUTE_FORBIDDEN', gateway: 'E_TARGET_NOT_ALLOWED' },
  NO_APPLICATION_PROTOCOL: { proxy: 'E_ROUTE_FORBIDDEN', gateway: 'E_TARGET_NOT_ALLOWED' },
  PROTOCOL_VERSION: { proxy: 'E_CERT_WEAK_ALGORITHM', gateway: 'E_CERT_WEAK_ALGORITHM' },
  HANDSHAKE_FAILURE: { proxy: 'E_ROUTE_FORBIDDEN', gateway: 'E_CERT_UNTRUSTED' },
};

const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EPIPE']);

/** Maps a socket or TLS error at `hop` to a ConnectError. */
export function transportError(err: unknown, hop: Hop, fail: Fail): ConnectError {
  const e = err as NodeJS.ErrnoException;
  const code = e?.code ?? '';
  const alert = /ALERT_([A-Z_]+)$/.exec(code)?.[1];
  if (alert) {
    const mapped = ALERTS[alert];
    const side = hop === 'gateway' ? 'gateway' : 'proxy';
    return fail(
      mapped ? mapped[side] : 'E_CERT_UNTRUSTED',
      hop,
      `TLS alert ${alert.toLowerCase()} from the ${side}`,
      err,
    );
  }
  if (
    UNREACHABLE.has(code) ||
    code === 'ERR_SSL_WRONG_VERSION_NUMBER' ||
    /socket disconnected/i.test(e?.message ?? '')
  ) {
    const what = hop === 'gateway' ? 'the relayed connection closed during the gateway handshake' : 'proxy unreachable';
    return fail(
      hop === 'gateway' ? 'E_GATEWAY_OFFLINE' : 'E_PROXY_UNREACHABLE',
      hop,
      `${what}: ${e?.message ?? code}`,
      err,
    );
  }
  return fail('E_PROXY_UNREACHABLE', hop, e?.message ?? String(err), err);
}

/** `host:port` or `[v6]:port`. */
export function parseAddress(addr: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(addr);
  if (!m) return null;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return null;
  return { host: (m[1] ?? m[2])!, port };
}

function within<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
