/**
 * The CA API over HTTPS (node:https). It speaks HTTP and never signs: each request is matched to a route
 * (routes.ts), its body read within a size bound, parsed and validated against the route's schema BEFORE
 * anything else, its caller authenticated, and the Authority called. Every refusal is `{code, message}` with the
 * status of its code. Slow or oversized input is cut off: header and request timeouts, a TLS handshake
 * timeout, a body limit, a connection cap.
 */

import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer, type Server } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { HEADER_CERT, HEADER_SIGNATURE, MAX_BODY_BYTES, parseBody } from '../protocol/api.js';
import { type ErrorCode, refuse, type Verdict } from '../protocol/errors.js';
import type { Logger } from '../runtime/log.js';
import type { DaemonMetrics } from '../runtime/metrics.js';
import type { Authority, Caller, Peer, SignedRequest } from './authority.js';
import { bearerToken, readBody, sendError, sendJson, statusFor } from './http-io.js';
import { matchRoute, type RouteInput, rotationAckOf } from './routes.js';

export interface CaServerOptions {
  authority: Authority;
  host: string;
  /** 0 picks a free port. */
  port: number;
  tls: { certificateChainPem: string; privateKeyPem: string };
  logger?: Logger;
  metrics?: DaemonMetrics;
  maxBodyBytes?: number;
  /** Default 10 s. */
  headersTimeoutMs?: number;
  /** Whole request, default 30 s. */
  requestTimeoutMs?: number;
  /** TLS handshake, default 10 s. */
  handshakeTimeoutMs?: number;
  /** Default 512. */
  maxConnections?: number;
  /** Feed reads held at once (long-polls); more are refused with E_LIMIT. Default MAX_HELD_REQUESTS. */
  maxHeldRequests?: number;
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
  };
  let inFlight = 0;
  let draining = false;
  // Each held read's controller: aborted by its client going away, or all at once by drain().
  const held = new Set<AbortController>();
  const maxHeld = options.maxHeldRequests ?? MAX_HELD_REQUESTS;
  const socketTimeout = Math.max(options.requestTimeoutMs ?? 30_000, headersTimeout);

  const server: Server = createServer(
    {
      key: options.tls.privateKeyPem,
      cert: options.tls.certificateChainPem,
      minVersion: 'TLSv1.2',
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
        logger?.error({ err, route: routeName }, 'CA API handler failed');
        fail(res, 'E_INTERNAL', '');
      });
    },
  );
  server.maxConnections = options.maxConnections ?? 512;
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
    if (!target.startsWith('/') || target.length > 2048) return fail(res, 'E_NOT_FOUND', 'bad request target');
    const url = new URL(target, 'https://ca.invalid');
    const match = matchRoute(req.method ?? '', url.pathname);
    if (!match) return fail(res, 'E_NOT_FOUND', `no route ${url.pathname}`);
    if ('allowed' in match) {
      res.setHeader('allow', match.allowed.join(', '));
      metrics?.refusals.inc({ code: 'E_REQUEST_INVALID' });
      return sendJson(res, 405, { code: 'E_REQUEST_INVALID', message: `method ${req.method} not allowed` });
    }
    const { route, params } = match;
    named(route.name);

    // 1. The body: bounded, JSON, schema. Nothing else looks at the request before this passes.
    const read = await readBody(req, maxBody);
    if (!read.ok) return fail(res, read.code, read.reason, true);
    const raw = read.value;
    let body: unknown;
    if (route.body) {
      let json: unknown;
      try {
        json = JSON.parse(raw.toString('utf8'));
      } catch (err) {
        return fail(res, 'E_REQUEST_MALFORMED', (err as Error).message.slice(0, 200));
      }
      const valid = parseBody(route.body, json);
      if (!valid.ok) return fail(res, valid.code, valid.reason);
      body = valid.value;
    } else if (raw.length > 0) {
      return fail(res, 'E_REQUEST_INVALID', `${route.name} takes no body`);
    }

    // 2. The caller.
    const input: RouteInput = {
      params,
      query: url.searchParams,
      body,
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
    const hasBearer = req.headers.authorization !== undefined;
    if (route.auth === 'bearer' || ((route.auth === 'enroll' || route.auth === 'feed') && hasBearer)) {
      const caller = authenticateBearer(req);
      if (!caller.ok) return fail(res, caller.code, caller.reason);
      input.caller = caller.value;
    } else if (route.auth === 'signed') {
      const signed = signedRequest(req, raw);
      if (!signed.ok) return fail(res, signed.code, signed.reason);
      input.signed = signed.value;
    } else if (route.auth === 'feed') {
      const peer = authenticateSignedGet(req, target, url.searchParams);
      if (!peer.ok) return fail(res, peer.code, peer.reason);
      input.peer = peer.value;
      authority.noteSeen(peer.value, req.headers['user-agent'], rotationAckOf(url.searchParams));
    }

    // 3. The decision (a feed read may be held here: see hold above).
    let result: Verdict<unknown>;
    try {
      result = await route.handle(authority, input);
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

  function authenticateSignedGet(req: IncomingMessage, target: string, query: URLSearchParams): Verdict<Peer> {
    const signed = signedRequest(req, Buffer.from(target, 'utf8'));
    if (!signed.ok) return signed;
    const timestamp = query.get('timestamp') ?? '';
    const nonce = query.get('nonce') ?? '';
    if (!/^\d{1,12}$/.test(timestamp) || !/^[A-Za-z0-9_-]{16,128}$/.test(nonce)) {
      return refuse('E_REQUEST_INVALID', 'a signed GET carries timestamp= and nonce= in its query');
    }
    return authority.authenticatePeer(signed.value, { timestamp: Number(timestamp), nonce });
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
    setCredentials(tls) {
      server.setSecureContext({ key: tls.privateKeyPem, cert: tls.certificateChainPem, minVersion: 'TLSv1.2' });
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
