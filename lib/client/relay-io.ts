/**
 * The wire steps every relayed stream shares (dial.ts, inner-session.ts): a status line read bounded in size and
 * time (the proxy's on the outer session, the gateway's inside the inner one), socket and TLS errors mapped to
 * what they mean at each hop, proxy addresses, step bounds.
 */
import type tls from 'node:tls';
import type { ErrorCode } from '../errors/codes.js';
import { decodeStatus, MAX_STATUS_LINE, type StatusPeer } from '../protocol/relay.js';
import type { ConnectError, Hop } from './errors.js';

export type Fail = (code: ErrorCode, hop: Hop, detail: string, cause?: unknown) => ConnectError;

/**
 * Reads a status line (the proxy's on the outer session, the gateway's inside the inner one), bounded in size
 * and time. Resolves with nothing left unread: bytes after the line are pushed back into `socket`. Uses
 * 'readable' rather than 'data' so that the socket is handed back neither flowing nor paused: the caller's
 * first 'data' listener or pipe() starts it.
 */
export function readStatus(socket: tls.TLSSocket, from: StatusPeer, timeout: number, fail: Fail): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => done(fail('E_TIMEOUT', from, noLine(from, timeout))), timeout);
    const onReadable = () => {
      for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) {
        buf = Buffer.concat([buf, chunk]);
        const decoded = decodeStatus(buf.subarray(0, MAX_STATUS_LINE), from);
        if (!decoded) continue;
        if (decoded.status.ok) done(null, Buffer.concat([decoded.rest, buf.subarray(MAX_STATUS_LINE)]));
        else {
          const refused = fail(decoded.status.code, from, decoded.status.message);
          TOLD.add(refused);
          done(refused);
        }
        return;
      }
    };
    const onEnd = () => done(closedBeforeLine(from, fail));
    const onError = (err: Error) => done(transportError(err, from, fail));
    const done = (err: ConnectError | null, rest?: Buffer) => {
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
      if (err) return reject(err);
      resolve(rest ?? Buffer.alloc(0));
    };
    socket.on('readable', onReadable);
    // Its end already emitted (seen before anyone listened: a relay cut as its handshake ended): no 'end' and,
    // half-open, no 'close' will come; without this the line would be waited for until the bound.
    if (socket.readableEnded || socket.destroyed) return onEnd();
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', onError);
  });
}

function noLine(from: StatusPeer, timeout: number): string {
  return from === 'proxy'
    ? `no status line within ${timeout} ms`
    : `no status line from the gateway within ${timeout} ms (it may still be connecting to the target)`;
}

function closedBeforeLine(from: StatusPeer, fail: Fail): ConnectError {
  if (from === 'proxy')
    return fail('E_PROXY_UNREACHABLE', 'proxy', 'proxy closed the connection before its status line');
  // The gateway tells every refusal except one of our certificate (not its CA, no grant): see its audit log.
  return fail(
    'E_STREAM_CLOSED',
    'gateway',
    'the gateway closed the stream before its status line: it did not accept our inner certificate (its audit log has the code)',
  );
}

/** Refusals read from a status line (readStatus): the peer's own answer. */
const TOLD = new WeakSet<ConnectError>();

/** True when `err` is a refusal read from a status line: the peer's own answer, not a connection that went. */
export function toldByPeer(err: unknown): boolean {
  return TOLD.has(err as ConnectError);
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

export function within<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
