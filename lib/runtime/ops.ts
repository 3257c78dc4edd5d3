/**
 * The ops HTTP endpoint: /livez (the process answers), /readyz (the daemon can do its job, from a supplied
 * readiness function), /metrics (Prometheus text). Loopback only unless explicitly allowed: it has no
 * authentication, and metrics reveal topology. Bounded: small headers, short timeouts, few connections.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import { isIPv4, isIPv6 } from 'node:net';
import { GatewayError } from '../errors/codes.js';
import { type HostPort, parseHostPort } from './config-schema.js';
import type { DaemonMetrics } from './metrics.js';

export interface Readiness {
  ready: boolean;
  /** Why not ready (or a short summary when ready), e.g. "no tunnel up". */
  reason?: string;
  /** The stable code of why not ready, when there is one (E_SUBJECT_REVOKED, E_FEED_STALE). */
  code?: string;
  /** Extra JSON-safe facts, e.g. { tunnelsUp: 0 }. */
  detail?: Record<string, unknown>;
}

export type ReadinessCheck = () => Readiness | Promise<Readiness>;

export interface OpsServerOptions {
  /** "127.0.0.1:9464", "[::1]:9464", or a parsed host and port (port 0 picks a free one). */
  listen: string | HostPort;
  metrics: DaemonMetrics;
  readiness: ReadinessCheck;
  /** Allow a non-loopback address (config ops_allow_remote). */
  allowNonLoopback?: boolean;
  /** A readiness check slower than this answers 503; default 2000. */
  readinessTimeoutMs?: number;
  /** Time to receive request headers; default 5000. */
  headersTimeoutMs?: number;
  /** Time to receive the whole request; default 10000. */
  requestTimeoutMs?: number;
  /** Largest request header block in bytes; default 8192 (answered with 431 beyond). */
  maxHeaderBytes?: number;
  /** Concurrent connections; default 32. */
  maxConnections?: number;
}

export interface OpsServer {
  /** The bound address (the real port when 0 was asked). */
  readonly address: HostPort;
  readonly url: string;
  close(): Promise<void>;
}

/** True for 127.0.0.0/8, ::1, an IPv4-mapped loopback, and the name "localhost". */
export function isLoopbackHost(host: string): boolean {
  if (host === 'localhost') return true;
  if (isIPv4(host)) return host.startsWith('127.');
  if (isIPv6(host)) {
    const lower = host.toLowerCase();
    return lower === '::1' || /^::ffff:127\.\d+\.\d+\.\d+$/.test(lower);
  }
  return false;
}

function reply(res: ServerResponse, status: number, body: string, contentType = 'application/json'): void {
  res.writeHead(status, {
    'content-type': contentType,
    'content-length': Buffer.byteLength(body),
    'cache-control': 'no-store',
  });
  res.end(res.req.method === 'HEAD' ? undefined : body);
}

async function checkReadiness(check: ReadinessCheck, timeoutMs: number): Promise<Readiness> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<Readiness>((resolve) => {
    timer = setTimeout(() => resolve({ ready: false, reason: 'readiness check timed out' }), timeoutMs);
  });
  try {
    return await Promise.race([Promise.resolve().then(check), timeout]);
  } catch (err) {
    return { ready: false, reason: `readiness check failed: ${(err as Error).message ?? String(err)}` };
  } finally {
    clearTimeout(timer);
  }
}

/** Starts the ops endpoint; refuses (E_CONFIG_INVALID) a non-loopback address unless allowed. */
export async function startOpsServer(options: OpsServerOptions): Promise<OpsServer> {
  const target = typeof options.listen === 'string' ? parseHostPort(options.listen) : options.listen;
  if (!target) throw new GatewayError('E_CONFIG_INVALID', `ops endpoint: "${String(options.listen)}" is not host:port`);
  if (!options.allowNonLoopback && !isLoopbackHost(target.host)) {
    throw new GatewayError(
      'E_CONFIG_INVALID',
      `ops endpoint: refusing to listen on ${target.host} (not loopback); set ops_allow_remote = true to allow it`,
    );
  }
  const readinessTimeoutMs = options.readinessTimeoutMs ?? 2000;
  const headersTimeout = options.headersTimeoutMs ?? 5000;
  const server = createServer(
    {
      maxHeaderSize: options.maxHeaderBytes ?? 8192,
      headersTimeout,
      requestTimeout: Math.max(options.requestTimeoutMs ?? 10_000, headersTimeout),
      keepAliveTimeout: 5000,
      // How often Node enforces the two timeouts above (its default, 30 s, would make them loose).
      connectionsCheckingInterval: Math.min(1000, headersTimeout),
    },
    (req, res) => void route(req, res),
  );
  server.maxConnections = options.maxConnections ?? 32;
  server.maxRequestsPerSocket = 100;
  // An idle or trickling socket is closed after this, whatever the request state.
  server.setTimeout(options.requestTimeoutMs ?? 10_000, (socket) => socket.destroy());

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    req.resume(); // a body is never needed; drain it so the socket can be reused
    if (req.method !== 'GET' && req.method !== 'HEAD') {
      res.setHeader('allow', 'GET, HEAD');
      reply(res, 405, '{"error":"method not allowed"}\n');
      return;
    }
    const path = (req.url ?? '/').split('?')[0];
    try {
      switch (path) {
        case '/livez':
          reply(res, 200, '{"status":"live"}\n');
          return;
        case '/readyz': {
          const readiness = await checkReadiness(options.readiness, readinessTimeoutMs);
          const body = {
            status: readiness.ready ? 'ready' : 'not ready',
            ...(readiness.code !== undefined ? { code: readiness.code } : {}),
            ...(readiness.reason !== undefined ? { reason: readiness.reason } : {}),
            ...(readiness.detail ? { detail: readiness.detail } : {}),
          };
          reply(res, readiness.ready ? 200 : 503, `${JSON.stringify(body)}\n`);
          return;
        }
        case '/metrics':
          reply(res, 200, await options.metrics.text(), options.metrics.contentType);
          return;
        default:
          reply(res, 404, '{"error":"not found"}\n');
      }
    } catch (err) {
      if (!res.headersSent) reply(res, 500, `${JSON.stringify({ error: (err as Error).message })}\n`);
      else res.destroy();
    }
  }

  await new Promise<void>((resolve, reject) => {
    const onError = (err: Error) =>
      reject(
        new GatewayError('E_CONFIG_INVALID', `ops endpoint: cannot listen on ${target.host}:${target.port}`, {
          cause: err,
        }),
      );
    server.once('error', onError);
    server.listen(target.port, target.host === 'localhost' ? '127.0.0.1' : target.host, () => {
      server.off('error', onError);
      resolve();
    });
  });
  const bound = server.address();
  if (!bound || typeof bound === 'string') throw new Error('ops endpoint: unexpected address');
  const address = { host: bound.address, port: bound.port };
  const hostText = bound.family === 'IPv6' ? `[${bound.address}]` : bound.address;
  return {
    address,
    url: `http://${hostText}:${bound.port}`,
    close: () =>
      new Promise<void>((resolve, reject) => {
        server.close((err) => (err ? reject(err) : resolve()));
        server.closeAllConnections();
      }),
  };
}
