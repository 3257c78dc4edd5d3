/**
 * The TLS side of the proxy: platforms connect with their outer client cert; the proxy decides, writes ONE
 * status line (lib/protocol/relay) and splices the connection into a `forwarded-tcpip` channel of the gateway's
 * tunnel. After the line it never interprets a byte: the platform's inner mTLS runs end to end with the gateway.
 *
 * Sockets are accepted by our own net.Server and wrapped in TLS here (as the SSH side injects into ssh2): the
 * HandshakeGate bounds connections per listener and, until the route is admitted, per source, with a deadline
 * from accept to the admitted route (one clock for both listeners, in place of tls.Server's handshakeTimeout).
 *
 * Decisions, in order, each refusal answered with a status line and a close:
 *   ALPN = RELAY_ALPN · lib/pki checkPeer (proxy PKI client CA(s), clientAuth, route extension, revocation,
 *     validity with the `certSkewMs` allowance) · admitRoute (identity org = route org; an org proxy serves
 *     its org only) · stream revocations
 *   · TunnelTable.candidates (offline → E_GATEWAY_OFFLINE at once, per-gateway stream limit → E_LIMIT, the
 *     org's stream quota on an instance proxy → E_QUOTA_EXCEEDED)
 *   · the first candidate that opens a channel (the table spreads streams over healthy tunnels; a failed open
 *     moves on to the next) · the outer cert still live (outerCertLive) and not revoked, since the channel
 *     open takes time: only then `{"ok":true}`. The stream is cut when the cert ends (notAfter + skew).
 * A platform may resume its outer TLS 1.3 session (fewer signatures, no certificates sent): the decisions above
 * are the same, on the certificate the session carries.
 */
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { createSecureContext, type SecureContext, TLSSocket } from 'node:tls';
import { type ErrorCode, GatewayError } from '../errors/codes.js';
import { checkPeer, type MtlsCredentials, mtlsResumableServerOptions } from '../pki/tls.js';
import type { TrustAnchors } from '../pki/verify.js';
import { encodeStatus, RELAY_ALPN, type RelayStatus } from '../protocol/relay.js';
import { type Direction, type Splice, splice } from '../protocol/splice.js';
import { channelGone, endChannelWrites } from '../sshwire/ssh2.js';
import {
  admitRoute,
  DEFAULT_CERT_SKEW_MS,
  type LimitName,
  limitOf,
  outerCertLive,
  type ProxyScope,
  type RouteDecision,
} from './admission.js';
import { HandshakeGate, type HandshakeTicket, listenOn } from './handshake-gate.js';
import type { RevocationList } from './revocations.js';
import type { GatewayTunnel } from './ssh-listener.js';
import type { Tunnel, TunnelTable } from './tunnel-table.js';

export interface RelayLimits {
  /** From accept to an admitted route (TLS handshake + decision), and then the gateway's answer to the channel open. */
  handshakeTimeoutMs: number;
  /** A stream with no byte either way for this long is closed. */
  idleTimeoutMs: number;
  /** Concurrent platform connections (beyond: dropped at accept). */
  maxConnections: number;
  /** Connections from one source (IPv4 address, IPv6 /64) whose route is not admitted yet. */
  maxUnauthenticatedPerSource: number;
  /** Tunnels tried for one stream before answering E_GATEWAY_OFFLINE. */
  maxTunnelAttempts: number;
  /** Allowance past an outer cert's notAfter (default DEFAULT_CERT_SKEW_MS): accepted iff now <= notAfter + skew. */
  certSkewMs?: number;
}

const MAX_TIMER_MS = 2 ** 31 - 1;

/**
 * What a relayed stream's platform TLS socket may hold unwritten before the SSH channel feeding it is paused
 * (Node's default: 16 KiB, half an SSH packet). With 16 KiB the splice paused the channel at almost every
 * packet of a download (12,802 times in one 128 MiB × 3 run, bench/hop-waits), and on a busy machine each
 * pause became a wait for the next turn of the event loop. Raised per relayed stream only (a threshold, not
 * an allocation): bytes queue here only while the platform reads slower than the gateway sends, and the
 * channel still pauses past it. Measured in docs/performance.md (round 6).
 */
export const PLATFORM_WRITE_BUFFER = 1024 * 1024;

export interface ActiveStream {
  readonly id: number;
  readonly route: RouteDecision;
  readonly tunnelId: number;
  readonly openedAtMs: number;
  readonly splice: Splice;
  /**
   * Cuts the stream with a TCP reset towards the platform: a stream that could not finish (its tunnel died) must
   * not look like an orderly end of stream (a FIN), which a client could take for a complete reply.
   */
  readonly reset: (reason: string) => void;
}

export interface RelayEvents {
  /** `limit` names the abuse limit that refused, if one did (metrics count those apart, logs sample them). */
  refused(code: ErrorCode, reason: string, fields: Record<string, unknown>, limit?: LimitName): void;
  streamOpened(stream: ActiveStream): void;
  streamClosed(stream: ActiveStream, end: string, reason: string): void;
  bytes(direction: Direction, n: number): void;
}

export interface RelayListenerOptions {
  credentials: MtlsCredentials;
  /** Read per connection, so a reload applies to the next one. */
  trust: () => { scope: ProxyScope; anchors: TrustAnchors };
  table: TunnelTable<GatewayTunnel>;
  revocations: RevocationList;
  limits: RelayLimits;
  events: RelayEvents;
  now?: () => number;
  /** Sees every byte the relay reads or writes on a platform connection after the handshake (tests). */
  tap?: (direction: Direction, chunk: Buffer) => void;
}

export class RelayListener {
  readonly #o: RelayListenerOptions;
  readonly #now: () => number;
  readonly #net: NetServer;
  readonly #gate: HandshakeGate;
  /** Built once per credentials (construction, reload) and shared by every handshake. */
  #context: SecureContext;
  readonly #streams = new Map<number, ActiveStream>();
  /**
   * Streams already done whose platform socket still lingers (splice.ts LINGER_MS: the platform's late bytes read
   * and dropped, not answered with a reset): still ours, so that closeStreams and stop() reach them.
   */
  readonly #lingering = new Set<ActiveStream>();
  #nextStream = 1;
  readonly #sockets = new Set<Socket>();
  limits: RelayLimits;

  constructor(options: RelayListenerOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.limits = options.limits;
    this.#context = contextOf(options.credentials);
    this.#gate = new HandshakeGate({
      limits: () => this.limits,
      onTimeout: (_ticket, remote) =>
        options.events.refused(
          'E_TIMEOUT',
          'TLS handshake and route decision too slow',
          { remote },
          'handshake_timeout',
        ),
    });
    this.#net = createServer({ allowHalfOpen: true }, (raw) => this.#accept(raw));
  }

  /** Platform connections open now (in handshake or carrying a stream). */
  get connections(): number {
    return this.#sockets.size;
  }

  /** Platform connections whose route is not admitted yet. */
  get unauthenticated(): number {
    return this.#gate.unauthenticated;
  }

  /** Sources with a platform connection whose route is not admitted yet. */
  get unauthenticatedSources(): number {
    return this.#gate.sources;
  }

  get streams(): ReadonlyMap<number, ActiveStream> {
    return this.#streams;
  }

  listen(port: number, host: string): Promise<number> {
    return listenOn(this.#net, port, host);
  }

  /** New key, chain and anchors for new handshakes; established streams are untouched. Throws if unusable. */
  setCredentials(credentials: MtlsCredentials): void {
    this.#context = contextOf(credentials);
  }

  setLimits(limits: RelayLimits): void {
    this.limits = limits;
  }

  /** Drops every platform connection now (shutdown). */
  destroyAll(): void {
    for (const s of this.#sockets) s.destroy();
  }

  stopAccepting(): Promise<void> {
    return new Promise((resolve) => this.#net.close(() => resolve()));
  }

  /**
   * Closes the streams `predicate` picks and returns how many were carried; `reset`: with a TCP reset towards the
   * platform (ActiveStream.reset). Those already done whose platform socket lingers are cut too (a revocation, a
   * shutdown), unless `lingering` is false (a tunnel that died: a stream done owes it nothing, and a reset would
   * make the platform drop the answer it has not read yet).
   */
  closeStreams(
    predicate: (s: ActiveStream) => boolean,
    reason: string,
    o: { reset?: boolean; lingering?: boolean } = {},
  ): number {
    const cut = (s: ActiveStream): void => (o.reset ? s.reset(reason) : s.splice.close(reason));
    let n = 0;
    for (const s of [...this.#streams.values()]) {
      if (!predicate(s)) continue;
      cut(s);
      n++;
    }
    if (o.lingering !== false) for (const s of [...this.#lingering]) if (predicate(s)) cut(s);
    return n;
  }

  /** Bytes held for all streams now (unread + unwritten, both sides). */
  bufferedBytes(): number {
    let n = 0;
    for (const s of this.#streams.values()) n += s.splice.buffered();
    return n;
  }

  #accept(raw: Socket): void {
    raw.on('error', () => {});
    raw.setNoDelay(true); // the status line must not wait for Nagle
    const entered = this.#gate.enter(raw);
    if (!entered.ok) {
      this.#o.events.refused(entered.code, entered.reason, { remote: raw.remoteAddress }, entered.limit);
      raw.destroy();
      return;
    }
    this.#sockets.add(raw);
    raw.once('close', () => this.#sockets.delete(raw));
    const ticket = entered.value;
    const socket = new TLSSocket(raw, {
      isServer: true,
      secureContext: this.#context,
      requestCert: true,
      rejectUnauthorized: false, // checkPeer decides, below
      ALPNProtocols: [RELAY_ALPN],
    });
    let secured = false;
    socket.on('error', (err: NodeJS.ErrnoException) => {
      if (secured || raw.destroyed) return; // after the handshake, or cut by the gate: reported already
      ticket.refused();
      this.#o.events.refused('E_ROUTE_FORBIDDEN', `TLS handshake failed: ${err.code ?? err.message}`, {
        remote: raw.remoteAddress,
      });
      socket.destroy();
    });
    socket.once('close', () => raw.destroy());
    socket.once('secure', () => {
      secured = true;
      void this.#onConnection(socket, ticket, raw);
    });
  }

  async #onConnection(socket: TLSSocket, ticket: HandshakeTicket, raw: Socket): Promise<void> {
    const remote = { address: socket.remoteAddress ?? '', port: socket.remotePort ?? 0 };
    const answer = (status: RelayStatus, limit?: LimitName): void => {
      const line = encodeStatus(status);
      this.#o.tap?.('down', line);
      if (!status.ok) {
        ticket.refused();
        const fields = { remote: remote.address, resumed: socket.isSessionReused() };
        this.#o.events.refused(status.code, status.message, fields, limit);
        socket.end(line);
        socket.setTimeout(this.limits.handshakeTimeoutMs, () => socket.destroy());
      } else {
        socket.write(line);
      }
    };
    const deny = (code: ErrorCode, message: string, limit?: LimitName): void =>
      answer({ ok: false, code, message }, limit);

    if (socket.alpnProtocol !== RELAY_ALPN) return deny('E_ROUTE_FORBIDDEN', `ALPN ${RELAY_ALPN} is required`);
    const { scope, anchors } = this.#o.trust();
    const now = this.#now();
    const skewMs = this.limits.certSkewMs ?? DEFAULT_CERT_SKEW_MS;
    const peer = checkPeer(
      socket,
      {
        anchors,
        purpose: 'clientAuth',
        skewSec: skewMs / 1000,
        requireRoute: true,
        isRevoked: (serialHex) => this.#o.revocations.certificateRevoked(serialHex) !== undefined,
      },
      new Date(now),
      // The leaf alone first (the same verdict): Node's whole-chain objects cost ~0.4 ms per stream here.
      { leafFirst: true },
    );
    if (!peer.ok) return deny(peer.code, peer.reason);
    const route = admitRoute(peer.value, scope);
    if (!route.ok) return deny(route.code, route.reason);
    if (this.#o.revocations.streamRevoked(route.value))
      return deny('E_CERT_REVOKED', 'identity or certificate revoked');
    // Admitted: the platform proved who it is; from here its source owes nothing, and the channel open has its
    // own bound (handshakeTimeoutMs per tunnel tried).
    ticket.authenticated();

    const candidates = this.#o.table.candidates(route.value.orgId, route.value.gatewayId, now);
    if (!candidates.ok) return deny(candidates.code, candidates.reason, limitOf(candidates));
    const opened = await this.#openChannel(candidates.value, remote);
    if (!opened) return deny('E_GATEWAY_OFFLINE', `no tunnel of gateway ${route.value.gatewayId} opened a channel`);
    const release = (): void => {
      opened.channel.destroy();
      this.#o.table.streamClosed(opened.tunnel.id);
    };
    if (socket.destroyed) return release();
    // Judged again now: the certificate may have expired, or been revoked (revoke() only reaches streams
    // already carried), while the gateway took its time to open the channel.
    const live = outerCertLive(route.value, this.#now(), skewMs);
    if (!live.ok) {
      release();
      return deny(live.code, live.reason);
    }
    if (this.#o.revocations.streamRevoked(route.value)) {
      release();
      return deny('E_CERT_REVOKED', 'identity or certificate revoked');
    }
    answer({ ok: true });
    this.#carry(socket, opened, route.value, live.value.endsAtMs, raw);
  }

  /** Tries the candidates best first; a stream slot is held while trying, so the per-gateway limit holds. */
  async #openChannel(
    candidates: Tunnel<GatewayTunnel>[],
    origin: { address: string; port: number },
  ): Promise<{ tunnel: Tunnel<GatewayTunnel>; channel: Awaited<ReturnType<GatewayTunnel['openStream']>> } | undefined> {
    for (const tunnel of candidates.slice(0, this.limits.maxTunnelAttempts)) {
      if (!this.#o.table.get(tunnel.id)) continue; // closed while we tried another
      this.#o.table.streamOpened(tunnel.id);
      try {
        const channel = await withTimeout(tunnel.handle.openStream(origin), this.limits.handshakeTimeoutMs, (late) =>
          late.destroy(),
        );
        // The tunnel may have died, or the gateway closed the channel, in the same read that confirmed the open:
        // then the platform must not be told ok (it would see a clean end, not a failure); try the next tunnel.
        if (!tunnel.handle.isOpen() || channelGone(channel)) {
          channel.destroy();
          throw new GatewayError('E_GATEWAY_OFFLINE', 'the channel closed as it opened');
        }
        this.#o.table.setHealthy(tunnel.id, true);
        return { tunnel, channel };
      } catch {
        this.#o.table.streamClosed(tunnel.id);
        this.#o.table.setHealthy(tunnel.id, false);
      }
    }
    return undefined;
  }

  #carry(
    socket: TLSSocket,
    opened: { tunnel: Tunnel<GatewayTunnel>; channel: Awaited<ReturnType<GatewayTunnel['openStream']>> },
    route: RouteDecision,
    endsAtMs: number,
    raw: Socket,
  ): void {
    const events = this.#o.events;
    const tap = this.#o.tap;
    const state = (socket as unknown as { _writableState?: { highWaterMark?: number } })._writableState;
    if (state && typeof state.highWaterMark === 'number') state.highWaterMark = PLATFORM_WRITE_BUFFER;
    const s = splice(socket, opened.channel, {
      idleTimeoutMs: this.limits.idleTimeoutMs,
      onBytes: (d, n) => events.bytes(d, n),
      ...(tap ? { tap } : {}),
      endUpstream: (_channel, flushed) => endChannelWrites(opened.channel, flushed),
      // The platform may still be sending when the gateway has answered and closed: no reset over its answer.
      linger: ['downstream'],
    });
    const stream: ActiveStream = {
      id: this.#nextStream++,
      route,
      tunnelId: opened.tunnel.id,
      openedAtMs: this.#now(),
      splice: s,
      reset: (reason) => {
        raw.resetAndDestroy();
        s.close(reason);
      },
    };
    this.#streams.set(stream.id, stream);
    events.streamOpened(stream);
    // The outer cert bounds the stream too: no access outlives the certificate it was opened with (plus the
    // same skew it was admitted with). Re-armed while the end lies beyond setTimeout's range.
    let expiry: NodeJS.Timeout | undefined;
    const armExpiry = (): void => {
      const left = endsAtMs - this.#now();
      if (left < 0) {
        s.close('client certificate expired');
        return;
      }
      expiry =
        left + 1 > MAX_TIMER_MS
          ? setTimeout(armExpiry, MAX_TIMER_MS)
          : setTimeout(() => s.close('client certificate expired'), left + 1);
      expiry.unref();
    };
    armExpiry();
    void s.done
      .then(({ end, reason }) => {
        clearTimeout(expiry);
        this.#streams.delete(stream.id);
        this.#lingering.add(stream);
        this.#o.table.streamClosed(opened.tunnel.id);
        events.streamClosed(stream, end, reason);
        return s.settled;
      })
      .then(() => this.#lingering.delete(stream));
  }
}

/** Rejects after `ms`; a value that arrives later is handed to `discard` (a channel nobody will use). */
function withTimeout<T>(p: Promise<T>, ms: number, discard: (late: T) => void): Promise<T> {
  return new Promise((resolve, reject) => {
    let timedOut = false;
    const t = setTimeout(() => {
      timedOut = true;
      reject(new GatewayError('E_TIMEOUT', 'gateway did not answer the channel open'));
    }, ms);
    p.then(
      (v) => {
        clearTimeout(t);
        if (timedOut) discard(v);
        else resolve(v);
      },
      (e) => {
        clearTimeout(t);
        reject(e);
      },
    );
  });
}

/**
 * How long an outer session ticket is accepted. A resumed session is judged exactly as a full one (checkPeer on
 * the certificate the session carries: chain, validity now, revocations; then the route), and a new context
 * (reload, renewal) has new ticket keys, so every ticket of the old one is refused.
 */
const OUTER_TICKET_LIFETIME_SEC = 300;

function contextOf(credentials: MtlsCredentials): SecureContext {
  return createSecureContext(
    mtlsResumableServerOptions({ ...credentials, alpn: [RELAY_ALPN] }, OUTER_TICKET_LIFETIME_SEC),
  );
}
