/**
 * The CA API over HTTPS (node:https). It speaks HTTP and never signs: each request is matched to a route
 * (routes.ts), its body read within a size bound, parsed and validated against the route's schema BEFORE
 * anything else, its caller authenticated, and the Authority called. Every refusal is `{code, message}` with the
 * status of its code. Slow or oversized input is cut off: header and request timeouts, a TLS handshake
 * timeout, a body limit, a connection cap in all and one per source address. TLS 1.3 only unless the operator
 * admits 1.2 (apiTlsPolicy).
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import type { SecureContextOptions } from 'node:tls';
import { type ErrorCode, GatewayError, refuse, type Verdict } from '../errors/codes.js';
import { HEADER_CERT, HEADER_SIGNATURE, MAX_BODY_BYTES } from '../protocol/api.js';
import type { Logger } from '../runtime/log.js';
import type { DaemonMetrics } from '../runtime/metrics.js';
import type { Authority, Caller, Peer, RequestInfo, SignedRequest } from './authority.js';
import { MAX_CONNECTIONS, MAX_CONNECTIONS_PER_SOURCE } from './config.js';
import { bearerToken, readBody, sendError, sendJson, statusFor } from './http-io.js';
import { type RouteInput, rotationAckOf, routeRequest } from './routes.js';
import { sourceKey } from './throttle.js';

export interface CaServerOptions {
  authority: Authority;
  host: string;
  /** 0 picks a free port. */
  port: number;
  tls: { certificateChainPem: string; privateKeyPem: string };
  /** Oldest TLS version accepted (config tls_min_version); default '1.3'. */
  tlsMinVersion?: ApiTlsVersion;
  logger?: Logger;
  metrics?: DaemonMetrics;
  maxBodyBytes?: number;
  /** Default 10 s. */
  headersTimeoutMs?: number;
  /** Whole request, default 30 s. */
  requestTimeoutMs?: number;
  /** TLS handshake, default 10 s. */
  handshakeTimeoutMs?: number;
  /** Connections at once, from everywhere (default MAX_CONNECTIONS); more are dropped at accept. */
  maxConnections?: number;
  /**
   * Connections at once from one source (an IPv4 address or an IPv6 /64; default MAX_CONNECTIONS_PER_SOURCE), so
   * one address holding connections open cannot take them all. More are closed at accept.
   */
  maxConnectionsPerSource?: number;
  /** Feed reads held at once (long-polls); more are refused with E_LIMIT. Default MAX_HELD_REQUESTS. */
  maxHeldRequests?: number;
}

export type ApiTlsVersion = '1.2' | '1.3';

/** TLS 1.3's suites, all AEAD; named explicitly because a `ciphers` string without them turns TLS 1.3 off. */
const TLS13_SUITES = ['TLS_AES_256_GCM_SHA384', 'TLS_CHACHA20_POLY1305_SHA256', 'TLS_AES_128_GCM_SHA256'];
/** TLS 1.2, when admitted: forward secrecy and AEAD only (no CBC, no SHA-1 MAC, no static RSA key exchange). */
const TLS12_AEAD_CIPHERS = [
  'ECDHE-ECDSA-AES256-GCM-SHA384',
  'ECDHE-RSA-AES256-GCM-SHA384',
  'ECDHE-ECDSA-CHACHA20-POLY1305',
  'ECDHE-RSA-CHACHA20-POLY1305',
  'ECDHE-ECDSA-AES128-GCM-SHA256',
  'ECDHE-RSA-AES128-GCM-SHA256',
];

/** The protocol versions and ciphers of the API listener, used at start and for every certificate swap. */
export function apiTlsPolicy(min: ApiTlsVersion): Pick<SecureContextOptions, 'minVersion' | 'ciphers'> {
  if (min === '1.3') return { minVersion: 'TLSv1.3' };
  return { minVersion: 'TLSv1.2', ciphers: [...TLS13_SUITES, ...TLS12_AEAD_CIPHERS].join(':') };
}

/** Held feed reads at once: each costs a socket and a listener, nothing else. */
export const MAX_HELD_REQUESTS = 10_000;
/** A held socket's idle bound beyond its wait: the answer is written well before it. */
const HELD_SOCKET_SLACK_MS = 15_000;

export interface CaServer {
  readonly port: number;
  readonly host: string;
  readonly url: string;
  /** Swaps the TLS certificate for new connections (SIGHUP); established ones keep theirs. */
  setCredentials(tls: { certificateChainPem: string; privateKeyPem: string }): void;
  /** Stops accepting, waits for in-flight requests until `deadlineMs` (absolute), then closes the rest. */
  drain(deadlineMs: number): Promise<void>;
  /** Requests being handled right now. */
  readonly inFlight: number;
  /** Feed reads being held (long-polls) right now. */
  readonly held: number;
  /** New connection caps (a reload); connections over them stay until they close. */
  setConnectionLimits(limits: { maxConnections: number; maxConnectionsPerSource: number }): void;
  /** The caps in force. */
  readonly connectionLimits: { maxConnections: number; maxConnectionsPerSource: number };
}

const MAX_HEADER_B64 = 16 * 1024;

export async function startCaServer(options: CaServerOptions): Promise<CaServer> {
  const { authority, logger } = options;
  const maxBody = options.maxBodyBytes ?? MAX_BODY_BYTES;
  const headersTimeout = options.headersTimeoutMs ?? 10_000;
  const metrics = options.metrics && {
    requests: options.metrics.counter(`${options.metrics.prefix}requests_total`, 'API requests by route and status', [
      'route',
      'status',
    ]),
    refusals: options.metrics.counter(`${options.metrics.prefix}refusals_total`, 'API refusals by code', ['code']),
    seconds: options.metrics.histogram(`${options.metrics.prefix}request_duration_seconds`, 'API latency', ['route']),
    dropped: options.metrics.counter(
      `${options.metrics.prefix}connections_refused_total`,
      'API connections closed at accept: over max_connections_per_source (limit="source") or max_connections ' +
        '(limit="total")',
      ['limit'],
    ),
  };
  let inFlight = 0;
  let draining = false;
  // Each held read's controller: aborted by its client going away, or all at once by drain().
  const held = new Set<AbortController>();
  const maxHeld = options.maxHeldRequests ?? MAX_HELD_REQUESTS;
  const socketTimeout = Math.max(options.requestTimeoutMs ?? 30_000, headersTimeout);
  const tlsPolicy = apiTlsPolicy(options.tlsMinVersion ?? '1.3');

  const server: Server = createServer(
    {
      key: options.tls.privateKeyPem,
      cert: options.tls.certificateChainPem,
      ...tlsPolicy,
      handshakeTimeout: options.handshakeTimeoutMs ?? 10_000,
      maxHeaderSize: 32 * 1024,
      headersTimeout,
      requestTimeout: Math.max(options.requestTimeoutMs ?? 30_000, headersTimeout),
      keepAliveTimeout: 5_000,
      connectionsCheckingInterval: 1_000,
    },
    (req, res) => {
      inFlight++;
      const started = process.hrtime.bigint();
      let routeName = 'unknown';
      res.once('close', () => {
        inFlight--;
        metrics?.requests.inc({ route: routeName, status: String(res.statusCode) });
        metrics?.seconds.observe({ route: routeName }, Number(process.hrtime.bigint() - started) / 1e9);
      });
      handle(req, res, (name) => {
        routeName = name;
      }).catch((err: unknown) => {
        // The store out of reach (PostgreSQL down) is the one failure a client may retry: 503 with its code.
        if (err instanceof GatewayError && err.code === 'E_STORE_UNAVAILABLE') {
          logger?.warn({ route: routeName, reason: err.message }, 'CA API request failed: the store cannot be reached');
          fail(res, 'E_STORE_UNAVAILABLE', '');
          return;
        }
        logger?.error({ err, route: routeName }, 'CA API handler failed');
        fail(res, 'E_INTERNAL', '');
      });
    },
  );
  server.maxConnections = options.maxConnections ?? MAX_CONNECTIONS;
  server.on('drop', () => metrics?.dropped.inc({ limit: 'total' }));
  // Per source, counted from the TCP accept (before TLS), so a handshake that never ends holds a place too.
  let maxPerSource = options.maxConnectionsPerSource ?? MAX_CONNECTIONS_PER_SOURCE;
  const bySource = new Map<string, number>();
  server.on('connection', (socket: Socket) => {
    const key = sourceKey(socket.remoteAddress ?? 'unknown');
    const open = bySource.get(key) ?? 0;
    if (open >= maxPerSource) {
      metrics?.dropped.inc({ limit: 'source' });
      socket.destroy();
      return;
    }
    bySource.set(key, open + 1);
    socket.once('close', () => {
      const left = (bySource.get(key) ?? 1) - 1;
      if (left > 0) bySource.set(key, left);
      else bySource.delete(key);
    });
  });
  // Idle or trickling sockets are dropped whatever the request state (slowloris).
  // A held read has its own, longer bound (hold() below); requestTimeout ends once the request is read, so it
  // does not cut a held read short.
  server.setTimeout(socketTimeout, (s: Socket) => s.destroy());
  server.on('tlsClientError', (err) => logger?.debug({ err: err.message }, 'TLS handshake failed'));

  function fail(res: ServerResponse, code: ErrorCode, reason: string, close = false): void {
    metrics?.refusals.inc({ code });
    sendError(res, code, reason, close);
  }

  async function handle(req: IncomingMessage, res: ServerResponse, named: (n: string) => void): Promise<void> {
    const target = req.url ?? '/';
    const match = routeRequest(req.method ?? '', target);
    if (!match.ok) {
      if (match.allowed) {
        res.setHeader('allow', match.allowed.join(', '));
        metrics?.refusals.inc({ code: match.code });
        return sendJson(res, 405, { code: match.code, message: match.reason });
      }
      return fail(res, match.code, match.reason);
    }
    const { route, params, url } = match;
    named(route.name);

    // 1. The body: bounded, JSON, schema. Nothing else looks at the request before this passes.
    const read = await readBody(req, maxBody);
    if (!read.ok) return fail(res, read.code, read.reason, true);
    const raw = read.value;
    const request = route.accept(raw);
    if (!request.ok) return fail(res, request.code, request.reason);

    // 2. The caller.
    const input: RouteInput = {
      params,
      query: url.searchParams,
      caller: null,
      peer: null,
      signed: null,
      info: { source: req.socket.remoteAddress ?? 'unknown' },
      hold: (waitMs) => {
        if (draining) return refuse('E_LIMIT', 'the CA is shutting down');
        if (held.size >= maxHeld) return refuse('E_LIMIT', `${maxHeld} feed reads are waiting already; retry`);
        holding = new AbortController();
        held.add(holding);
        const abort = holding.abort.bind(holding);
        res.once('close', abort);
        release = () => {
          res.off('close', abort);
          held.delete(holding!);
          req.socket.setTimeout(socketTimeout);
        };
        req.socket.setTimeout(waitMs + HELD_SOCKET_SLACK_MS);
        return { ok: true, value: holding.signal };
      },
    };
    let holding: AbortController | undefined;
    let release = () => {};
    // A caller that fails here is refused by the Authority's per-source limits (counted, never audited).
    const hasBearer = req.headers.authorization !== undefined;
    const unauthenticated = authority.unauthenticated;
    const source = input.info.source;
    if (route.auth === 'bearer' || ((route.auth === 'enroll' || route.auth === 'feed') && hasBearer)) {
      const caller = authenticateBearer(req);
      if (!caller.ok) {
        unauthenticated.refuse(null, route.name, source, caller.code, caller.reason);
        return fail(res, caller.code, caller.reason);
      }
      input.caller = caller.value;
    } else if (route.auth === 'signed' || route.auth === 'feed') {
      const admitted = unauthenticated.admit('signed', route.name, source);
      if (!admitted.ok) return fail(res, admitted.code, admitted.reason);
      const signed = signedRequest(req, route.auth === 'signed' ? raw : Buffer.from(target, 'utf8'));
      if (!signed.ok) {
        unauthenticated.refuse('signed', route.name, source, signed.code, signed.reason);
        return fail(res, signed.code, signed.reason);
      }
      if (route.auth === 'signed') input.signed = signed.value;
      else {
        const peer = authenticateSignedGet(signed.value, url.searchParams, input.info, route.name);
        if (!peer.ok) return fail(res, peer.code, peer.reason);
        input.peer = peer.value;
        authority.noteSeen(peer.value, req.headers['user-agent'], rotationAckOf(url.searchParams));
      }
    }

    // 3. The decision (a feed read may be held here: see hold above).
    let result: Verdict<unknown>;
    try {
      result = await request.value.handle(authority, input);
    } finally {
      release();
    }
    // A held read ends up to 30 s after it began: seen again, so rotation status can tell live from offline.
    if (input.peer && route.auth === 'feed') {
      authority.noteSeen(input.peer, req.headers['user-agent'], rotationAckOf(url.searchParams));
    }
    if (!result.ok) return fail(res, result.code, result.reason, draining);
    sendJson(res, route.status ?? 200, result.value, draining);
  }

  function authenticateBearer(req: IncomingMessage): Verdict<Caller> {
    const token = bearerToken(req);
    if (token === '') return refuse('E_AUTH_INVALID', 'Authorization header is not "Bearer <token>"');
    return authority.authenticate(token);
  }

  function authenticateSignedGet(
    signed: SignedRequest,
    query: URLSearchParams,
    info: RequestInfo,
    endpoint: string,
  ): Verdict<Peer> {
    const timestamp = query.get('timestamp') ?? '';
    const nonce = query.get('nonce') ?? '';
    if (!/^\d{1,12}$/.test(timestamp) || !/^[A-Za-z0-9_-]{16,128}$/.test(nonce)) {
      const reason = 'a signed GET carries timestamp= and nonce= in its query';
      return authority.unauthenticated.refuse('signed', endpoint, info.source, 'E_REQUEST_INVALID', reason);
    }
    return authority.authenticatePeer(signed, { timestamp: Number(timestamp), nonce }, info);
  }

  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(options.port, options.host, () => {
      server.off('error', reject);
      resolve();
    });
  });
  const address = server.address() as AddressInfo;
  const hostText = address.family === 'IPv6' ? `[${address.address}]` : address.address;

  return {
    port: address.port,
    host: address.address,
    url: `https://${hostText}:${address.port}`,
    get inFlight() {
      return inFlight;
    },
    get held() {
      return held.size;
    },
    get connectionLimits() {
      return { maxConnections: server.maxConnections, maxConnectionsPerSource: maxPerSource };
    },
    setConnectionLimits(limits) {
      server.maxConnections = limits.maxConnections;
      maxPerSource = limits.maxConnectionsPerSource;
    },
    setCredentials(tls) {
      server.setSecureContext({ key: tls.privateKeyPem, cert: tls.certificateChainPem, ...tlsPolicy });
    },
    async drain(deadlineMs) {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeIdleConnections();
      // Held reads answer now (with the current feed) instead of at the end of their wait; every answer from here
      // on closes its connection, so keep-alive does not hold the drain open.
      draining = true;
      for (const c of held) c.abort();
      const remaining = Math.max(0, deadlineMs - Date.now());
      let timer: NodeJS.Timeout | undefined;
      const deadline = new Promise<void>((resolve) => {
        timer = setTimeout(resolve, remaining);
      });
      await Promise.race([closed, deadline]);
      clearTimeout(timer);
      server.closeAllConnections();
      await closed;
    },
  };
}

/** The X-Infisical-Cert / X-Infisical-Signature pair, strictly decoded. */
function signedRequest(req: IncomingMessage, signed: Buffer): Verdict<SignedRequest> {
  const cert = req.headers[HEADER_CERT];
  const sig = req.headers[HEADER_SIGNATURE];
  if (typeof cert !== 'string' || typeof sig !== 'string') {
    return refuse('E_AUTH_REQUIRED', `${HEADER_CERT} and ${HEADER_SIGNATURE} are required`);
  }
  const certificate = strictBase64(cert);
  const signature = strictBase64(sig);
  if (!certificate || !signature) return refuse('E_AUTH_INVALID', 'certificate or signature header is not base64');
  return { ok: true, value: { certificate, signature, signed } };
}

function strictBase64(text: string): Buffer | undefined {
  const t = text.trim();
  if (t.length === 0 || t.length > MAX_HEADER_B64 || !/^[A-Za-z0-9+/]+={0,2}$/.test(t) || t.length % 4 !== 0) {
    return undefined;
  }
  return Buffer.from(t, 'base64');
}

export { statusFor };
