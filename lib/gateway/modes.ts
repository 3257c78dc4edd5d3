/**
 * What the gateway does with an admitted stream, by the ALPN mode (SPEC §4.4):
 *   tcp    dial the granted target and splice both ways (backpressure and half-close end to end);
 *   http   HTTP/1.1 reverse proxy to the granted target, optionally over TLS with a configured CA;
 *   ping   echo, bounded in bytes and idle time (reachability and latency checks);
 *   health the gateway's status as one JSON document.
 * Admission and the allowlist have already decided; these functions only move bytes and end the handle.
 */
import http from 'node:http';
import https from 'node:https';
import net from 'node:net';
import type { Duplex } from 'node:stream';
import type { Verdict } from '../errors/codes.js';
import type { GrantTarget } from '../pki/grant.js';
import { splice } from '../protocol/splice.js';
import type { DialTarget } from './allowlist.js';
import type { StreamHandle } from './streams.js';

export interface UpstreamTls {
  /** PEM CA bundle for the target's certificate; default the system store. */
  ca?: string;
}

export interface ModeLimits {
  connectTimeoutMs: number;
  /** Largest request header block (http). */
  maxHeaderBytes: number;
  /** Time to receive a request's headers (http). */
  headersTimeoutMs: number;
  /** Bytes echoed before a ping stream is ended. */
  maxPingBytes: number;
  /** A ping or http stream idle this long is ended. */
  idleTimeoutMs: number;
}

export const DEFAULT_MODE_LIMITS: ModeLimits = Object.freeze({
  connectTimeoutMs: 10_000,
  maxHeaderBytes: 16 * 1024,
  headersTimeoutMs: 30_000,
  maxPingBytes: 64 * 1024,
  idleTimeoutMs: 60_000,
});

function errCode(err: unknown): string {
  return (err as NodeJS.ErrnoException)?.code ?? (err as Error)?.message ?? String(err);
}

/** How serveTcp reports the target connection: `connected` before any byte flows, or `unreachable`. */
export interface TcpOutcome {
  connected(): void;
  /** `cause` is short and safe to show the platform: an errno code or 'timeout'. */
  unreachable(reason: string, cause: string): void;
}

/**
 * tcp: one connection to the target, bytes spliced both ways, each direction ending on its own (half-close),
 * until both have ended. Nothing is read from the platform until the target accepted the connection, so the
 * platform learns of the outcome first.
 */
export function serveTcp(
  socket: Duplex,
  handle: StreamHandle,
  dial: DialTarget,
  limits: ModeLimits,
  outcome: TcpOutcome,
): void {
  handle.setTarget(`${dial.host}:${dial.port}`);
  const upstream = net.connect({ host: dial.address, port: dial.port, allowHalfOpen: true });
  upstream.setNoDelay(true);
  let connected = false;
  const timer = setTimeout(() => {
    upstream.destroy();
    outcome.unreachable(
      `no connection to ${dial.address}:${dial.port} within ${limits.connectTimeoutMs} ms`,
      'timeout',
    );
  }, limits.connectTimeoutMs);
  upstream.on('error', (err) => {
    clearTimeout(timer);
    if (!connected) outcome.unreachable(`${dial.address}:${dial.port}: ${errCode(err)}`, errCode(err));
    else handle.end('E_TARGET_UNREACHABLE', `${dial.address}:${dial.port}: ${errCode(err)}`);
  });
  socket.on('error', () => handle.end('ok', 'platform side closed with an error'));
  socket.once('close', () => {
    clearTimeout(timer);
    if (!connected) {
      upstream.destroy();
      handle.end('ok', 'platform closed before the target answered');
    }
  });
  upstream.once('connect', () => {
    clearTimeout(timer);
    connected = true;
    outcome.connected();
    // Half-close both ways (lib/protocol/splice.ts): a platform that sends a request and then its FIN gets the
    // whole reply; the stream ends once both directions ended and were flushed.
    const s = splice(socket, upstream, {
      // The inner TLS session rides on the SSH channel, one write at a time (JSStreamSocket): gather the
      // target's bytes into one write per I/O phase, as infisical-connect does the other way.
      coalesce: ['down'],
      onBytes: (direction, n) => {
        if (direction === 'up') handle.bytesIn += n;
        else handle.bytesOut += n;
      },
    });
    socket.resume(); // held since admission: a 'data' listener does not start a paused stream
    // A target error has ended the handle already (E_TARGET_UNREACHABLE): the first outcome wins.
    void s.done.then(() => handle.end('ok'));
  });
}

const HOP_BY_HOP = new Set([
  'connection',
  'keep-alive',
  'proxy-authenticate',
  'proxy-authorization',
  'proxy-connection',
  'te',
  'trailer',
  'transfer-encoding',
  'upgrade',
]);

function forwardHeaders(headers: http.IncomingHttpHeaders): http.OutgoingHttpHeaders {
  const out: http.OutgoingHttpHeaders = {};
  const listed = new Set(
    String(headers['connection'] ?? '')
      .split(',')
      .map((h) => h.trim().toLowerCase()),
  );
  for (const [k, v] of Object.entries(headers)) {
    if (v !== undefined && !HOP_BY_HOP.has(k) && !listed.has(k)) out[k] = v;
  }
  return out;
}

/** The target named by an absolute-form request (`GET http://host:port/path`), if any. */
export function absoluteTarget(url: string): { target: GrantTarget; path: string } | undefined {
  if (!/^https?:\/\//i.test(url)) return undefined;
  let u: URL;
  try {
    u = new URL(url);
  } catch {
    return { target: { host: 'invalid', port: 1 }, path: '/' };
  }
  const port = u.port ? Number(u.port) : u.protocol === 'https:' ? 443 : 80;
  return { target: { host: u.hostname.replace(/^\[|\]$/g, ''), port }, path: `${u.pathname}${u.search}` };
}

export interface HttpModeOptions {
  limits: ModeLimits;
  /** TLS to the target when set. */
  upstreamTls?: UpstreamTls;
  /** Re-checks the grant for a target named inside a request (checkGrant: E_GRANT_TARGET on mismatch). */
  checkRequested: (target: GrantTarget) => Verdict<unknown>;
}

/** http: an HTTP/1.1 server on the inner TLS stream, each request forwarded to the granted target. */
export function serveHttp(socket: Duplex, handle: StreamHandle, dial: DialTarget, opts: HttpModeOptions): void {
  handle.setTarget(`${opts.upstreamTls ? 'https' : 'http'}://${dial.host}:${dial.port}`);
  const hostHeader = dial.port === (opts.upstreamTls ? 443 : 80) ? dial.host : `${dial.host}:${dial.port}`;
  const server = http.createServer(
    {
      maxHeaderSize: opts.limits.maxHeaderBytes,
      headersTimeout: opts.limits.headersTimeoutMs,
      requestTimeout: 0, // bodies may stream for as long as the grant lasts
      keepAliveTimeout: opts.limits.idleTimeoutMs,
    },
    (req, res) => {
      let path = req.url ?? '/';
      const absolute = absoluteTarget(path);
      if (absolute) {
        const v = opts.checkRequested(absolute.target);
        if (!v.ok) {
          reply(res, 403, { code: v.code, message: v.reason });
          return;
        }
        path = absolute.path;
      }
      req.on('data', (d: Buffer) => {
        handle.bytesIn += d.length;
      });
      const headers = forwardHeaders(req.headers);
      headers['host'] = hostHeader;
      const common = {
        host: dial.address,
        port: dial.port,
        method: req.method,
        path,
        headers,
        agent: false as const,
        timeout: opts.limits.connectTimeoutMs,
      };
      const upstream = opts.upstreamTls
        ? https.request({
            ...common,
            ...(net.isIP(dial.host) === 0 ? { servername: dial.host } : {}),
            ...(opts.upstreamTls.ca ? { ca: opts.upstreamTls.ca } : {}),
            minVersion: 'TLSv1.2',
          })
        : http.request(common);
      upstream.on('timeout', () => upstream.destroy(new Error('ETIMEDOUT')));
      upstream.on('response', (up) => {
        up.on('data', (d: Buffer) => {
          handle.bytesOut += d.length;
        });
        res.writeHead(up.statusCode ?? 502, up.statusMessage, forwardHeaders(up.headers));
        up.pipe(res);
      });
      upstream.on('error', (err) => {
        // The code only: the message must not name the address the target's name resolved to.
        if (!res.headersSent) reply(res, 502, { code: 'E_TARGET_UNREACHABLE', message: errCode(err) });
        else res.destroy();
      });
      req.pipe(upstream);
    },
  );
  server.on('clientError', (_err, sock) => sock.destroy());
  socket.once('close', () => handle.end('ok'));
  server.emit('connection', socket);
}

function reply(res: http.ServerResponse, status: number, body: { code: string; message: string }): void {
  const text = `${JSON.stringify(body)}\n`;
  res.writeHead(status, {
    'content-type': 'application/json',
    'content-length': Buffer.byteLength(text),
    'x-infisical-error': body.code,
  });
  res.end(text);
}

/** The HTTP status a refusal is answered with in http mode (lib/protocol/relay.ts). */
export function httpStatusFor(code: string): number {
  if (code === 'E_TARGET_UNREACHABLE') return 502;
  if (code === 'E_LIMIT') return 503;
  return 403;
}

/**
 * http mode, refused stream: every request (bounded like serveHttp's) is answered with the refusal, and the
 * connection closes after the first answer. Nothing is forwarded.
 */
export function serveHttpRefusal(socket: Duplex, refusal: { code: string; message: string }, limits: ModeLimits): void {
  const server = http.createServer(
    { maxHeaderSize: limits.maxHeaderBytes, headersTimeout: limits.headersTimeoutMs, requestTimeout: 0 },
    (req, res) => {
      req.resume();
      res.shouldKeepAlive = false;
      reply(res, httpStatusFor(refusal.code), refusal);
    },
  );
  server.on('clientError', (_err, sock) => sock.destroy());
  server.emit('connection', socket);
  socket.resume();
}

/** ping: echo until `maxPingBytes` have come back or the stream idles. */
export function servePing(socket: Duplex, handle: StreamHandle, limits: ModeLimits): void {
  handle.setTarget('ping');
  let idle = setTimeout(() => handle.end('E_TIMEOUT', 'ping stream idle'), limits.idleTimeoutMs);
  socket.on('data', (d: Buffer) => {
    clearTimeout(idle);
    handle.bytesIn += d.length;
    const room = limits.maxPingBytes - handle.bytesOut;
    const chunk = d.length > room ? d.subarray(0, Math.max(0, room)) : d;
    handle.bytesOut += chunk.length;
    if (chunk.length) socket.write(chunk);
    if (handle.bytesOut >= limits.maxPingBytes) {
      socket.end();
      return;
    }
    idle = setTimeout(() => handle.end('E_TIMEOUT', 'ping stream idle'), limits.idleTimeoutMs);
  });
  socket.on('error', () => handle.end('ok'));
  socket.once('end', () => socket.end());
  socket.once('close', () => {
    clearTimeout(idle);
    handle.end(handle.bytesIn > limits.maxPingBytes ? 'E_LIMIT' : 'ok');
  });
}

/** health: one JSON document, then the stream ends. */
export function serveHealth(socket: Duplex, handle: StreamHandle, status: object): void {
  handle.setTarget('health');
  const body = Buffer.from(`${JSON.stringify(status)}\n`);
  handle.bytesOut += body.length;
  socket.on('error', () => handle.end('ok'));
  socket.once('close', () => handle.end('ok'));
  socket.resume();
  socket.end(body);
}
