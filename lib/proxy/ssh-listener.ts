/**
 * The SSH side of the proxy: gateways log in with their user certificate and hold `tcpip-forward` tunnels.
 *
 * Presents the host certificate (lib/sshwire), accepts only user certs that lib/sshcert verifies against the
 * trusted SSH client CA(s) with principal = user name, then `admitGateway` decides. It grants `tcpip-forward`
 * only for the gateway's own name and refuses everything else a client may ask: sessions (hence exec, shells,
 * agent and X11 forwarding, which all ride on a session), direct-tcpip, streamlocal, other global requests.
 *
 * Sockets are accepted by our own net.Server and injected into an ssh2 Server: that lets us bound connections
 * (per listener and, while unauthenticated, per source) and the time to authenticate before ssh2 sees a byte
 * (HandshakeGate), and lets a reload swap the host certificate for new connections (a new ssh2 Server) while
 * established tunnels keep running on the old one. A gateway that logs in must ask for its forward within
 * `forwardTimeoutMs`, and its org must be within its tunnel quota on an instance proxy (TunnelTable).
 */
import { createServer, type Server as NetServer, type Socket } from 'node:net';
import { type ErrorCode, GatewayError } from '../errors/codes.js';
import type { SshCertificate } from '../sshcert/index.js';
import { paceChannel } from '../sshwire/pacing.js';
import { createCertServer, verifyUserAuth } from '../sshwire/server.js';
import type { AuthContext, Connection, ServerChannel, Server as SshServer } from '../sshwire/ssh2.js';
import {
  admitForward,
  admitGateway,
  type GatewayLogin,
  type LimitName,
  limitOf,
  type ProxyScope,
} from './admission.js';
import { HandshakeGate, type HandshakeTicket, listenOn } from './handshake-gate.js';
import type { RevocationList } from './revocations.js';
import type { Tunnel, TunnelTable } from './tunnel-table.js';

export interface HostCredentials {
  /** OpenSSH private host key text. */
  hostKey: string;
  /** Host certificate: blob or OpenSSH text line. */
  hostCertificate: Buffer | string;
}

export interface SshLimits {
  /** From TCP accept to an authenticated session. */
  handshakeTimeoutMs: number;
  maxConnections: number;
  /** Connections from one source (IPv4 address, IPv6 /64) not yet authenticated. */
  maxUnauthenticatedPerSource: number;
  /** From authentication to the first granted `tcpip-forward`; a login that never forwards is closed then. */
  forwardTimeoutMs: number;
  /** Refused authentication attempts before the connection is dropped. */
  maxAuthAttempts: number;
}

/** What the listener reports; the proxy turns it into logs and metrics. */
export interface SshEvents {
  /** `limit` names the abuse limit that refused, if one did (metrics count those apart, logs sample them). */
  refused(code: ErrorCode, reason: string, fields: Record<string, unknown>, limit?: LimitName): void;
  tunnelUp(tunnel: Tunnel<GatewayTunnel>): void;
  tunnelDown(tunnel: Tunnel<GatewayTunnel>, reason: string): void;
  /** The gateway cancelled the forward (make-before-break): no new streams, open ones run on until closed. */
  tunnelDraining(tunnel: Tunnel<GatewayTunnel>): void;
}

export interface SshListenerOptions {
  host: HostCredentials;
  /** Read at every login, so a reload applies to the next one. */
  trust: () => { scope: ProxyScope; userCaKeys: Buffer[] };
  table: TunnelTable<GatewayTunnel>;
  revocations: RevocationList;
  limits: SshLimits;
  events: SshEvents;
  now?: () => number;
}

/** A tunnel's connection, as the relay uses it. */
export interface GatewayTunnel {
  readonly login: GatewayLogin;
  /** Opens a `forwarded-tcpip` channel to the gateway; `origin` is the platform's address (informational). */
  openStream(origin: { address: string; port: number }): Promise<ServerChannel>;
  close(reason: string): void;
  /** False once the SSH connection closed (its streams are being reset). */
  isOpen(): boolean;
}

const MAX_TIMER_MS = 2 ** 31 - 1;
/** Ports answered for `tcpip-forward` with port 0: a name, not a socket, so any number the client can echo. */
let nextVirtualPort = 20_000;

export class SshTunnelListener {
  readonly #o: SshListenerOptions;
  readonly #now: () => number;
  readonly #net: NetServer;
  #ssh: SshServer;
  readonly #gate: HandshakeGate;
  /** Sockets by remote "ip:port", to find a connection's socket and ticket from ssh2's ClientInfo. */
  readonly #sockets = new Map<string, { socket: Socket; ticket: HandshakeTicket }>();

  constructor(options: SshListenerOptions) {
    this.#o = options;
    this.#now = options.now ?? Date.now;
    this.#ssh = this.#makeServer(options.host);
    this.#gate = new HandshakeGate({
      limits: () => options.limits,
      onTimeout: (_ticket, remote) =>
        options.events.refused(
          'E_TIMEOUT',
          'SSH handshake and authentication too slow',
          { remote },
          'handshake_timeout',
        ),
    });
    this.#net = createServer((socket) => this.#accept(socket));
  }

  get connections(): number {
    return this.#gate.open;
  }

  /** Connections that have not authenticated yet. */
  get unauthenticated(): number {
    return this.#gate.unauthenticated;
  }

  /** Sources with a connection that has not authenticated yet. */
  get unauthenticatedSources(): number {
    return this.#gate.sources;
  }

  listen(port: number, host: string): Promise<number> {
    return listenOn(this.#net, port, host);
  }

  /** New host credentials for new connections; established tunnels keep theirs. Throws if unusable. */
  setHostCredentials(host: HostCredentials): void {
    this.#ssh = this.#makeServer(host);
  }

  /** Drops every connection now, authenticated or not (shutdown). */
  destroyAll(): void {
    for (const { socket } of this.#sockets.values()) socket.destroy();
  }

  /** Stops accepting; established tunnels stay until closed. */
  stopAccepting(): Promise<void> {
    return new Promise((resolve) => this.#net.close(() => resolve()));
  }

  #makeServer(host: HostCredentials): SshServer {
    const server = createCertServer({ hostKey: host.hostKey, hostCertificate: host.hostCertificate });
    server.on('connection', (conn, info) => this.#onConnection(conn, `${info.ip}:${info.port}`));
    server.on('error', () => {}); // per-connection errors arrive on the connections
    return server;
  }

  #accept(socket: Socket): void {
    socket.on('error', () => {});
    // Channel opens and status lines are small request/answer packets: Nagle + delayed ACK would add ~40 ms.
    socket.setNoDelay(true);
    const entered = this.#gate.enter(socket);
    if (!entered.ok) {
      this.#o.events.refused(entered.code, entered.reason, { remote: socket.remoteAddress }, entered.limit);
      socket.destroy();
      return;
    }
    const key = `${socket.remoteAddress}:${socket.remotePort}`;
    this.#sockets.set(key, { socket, ticket: entered.value });
    socket.once('close', () => this.#sockets.delete(key));
    this.#ssh.injectSocket(socket);
  }

  #onConnection(conn: Connection, remote: string): void {
    conn.on('error', () => {});
    let login: GatewayLogin | undefined;
    let attempts = 0;
    const refuse = (code: ErrorCode, reason: string, fields: Record<string, unknown> = {}, limit?: LimitName): void =>
      this.#o.events.refused(code, reason, { remote, ...(login ? { gateway: login.uri } : {}), ...fields }, limit);

    conn.on('authentication', (ctx: AuthContext) => {
      if (ctx.method === 'none') return ctx.reject(['publickey']);
      const verdict = this.#authenticate(ctx);
      if (!verdict.ok) {
        refuse(verdict.code, verdict.reason, { user: ctx.username.slice(0, 128), method: ctx.method });
        if (++attempts >= this.#o.limits.maxAuthAttempts) {
          conn.end();
          return;
        }
        return ctx.reject(['publickey']);
      }
      if (ctx.method === 'publickey' && ctx.signature !== undefined) login = verdict.value;
      ctx.accept();
    });

    conn.on('ready', () => {
      const entry = this.#sockets.get(remote);
      if (!login) {
        conn.end(); // ssh2 reached "ready" without our signed verdict: never serve that
        return;
      }
      entry?.ticket.authenticated();
      this.#serve(conn, login, refuse, entry?.socket);
    });
  }

  /** Certificate checks by lib/sshwire + lib/sshcert; what the cert may do here by admitGateway. */
  #authenticate(ctx: AuthContext) {
    const { scope, userCaKeys } = this.#o.trust();
    const isRevoked = (cert: SshCertificate): boolean => {
      const id = admitGateway(cert, ctx.username, scope);
      return id.ok && this.#o.revocations.tunnelRevoked(id.value) !== undefined;
    };
    const verified = verifyUserAuth(ctx, userCaKeys, this.#now(), { principal: ctx.username, isRevoked });
    if (!verified.ok) return verified;
    return admitGateway(verified.value, ctx.username, scope);
  }

  #serve(
    conn: Connection,
    login: GatewayLogin,
    refuse: (code: ErrorCode, reason: string, fields?: Record<string, unknown>, limit?: LimitName) => void,
    socket: Socket | undefined,
  ): void {
    const destroySocket = (): void => {
      socket?.destroy();
    };
    const tunnels = new Map<number, Tunnel<GatewayTunnel>>();
    // Forwards the gateway cancelled: out of the routing table, their streams still running on this connection.
    const draining = new Set<Tunnel<GatewayTunnel>>();
    let closed = false;
    const closeAll = (reason: string): void => {
      if (closed) return;
      closed = true;
      clearTimeout(expiry);
      clearTimeout(forwardDeadline);
      for (const t of [...tunnels.values(), ...draining]) {
        this.#o.table.remove(t.id);
        this.#o.events.tunnelDown(t, reason);
      }
      tunnels.clear();
      draining.clear();
      conn.end();
    };
    // The certificate's end is the tunnel's end (re-armed when it lies beyond setTimeout's range).
    let expiry: NodeJS.Timeout;
    const armExpiry = (): void => {
      const left = login.validBeforeMs - this.#now();
      if (left <= 0) {
        closeAll('certificate expired');
        return;
      }
      expiry = setTimeout(armExpiry, Math.min(left, MAX_TIMER_MS));
      expiry.unref();
    };
    // A login that holds no forward is a connection held for nothing: it must ask for one in time. Cleared by
    // the first forward granted; a connection whose forwards were all refused is closed here too.
    let forwardDeadline: NodeJS.Timeout | undefined;
    armExpiry();
    if (!closed) {
      forwardDeadline = setTimeout(() => {
        refuse('E_TIMEOUT', 'no tcpip-forward asked for in time after login', {}, 'forward_timeout');
        closeAll('no forward in time');
        // end() waits for the peer; one that stalls on purpose must not keep the socket.
        setTimeout(destroySocket, 1000).unref();
      }, this.#o.limits.forwardTimeoutMs);
    }
    conn.on('close', () => closeAll('connection closed'));

    const handle: Omit<GatewayTunnel, 'openStream'> = { login, close: closeAll, isOpen: () => !closed };
    conn.on('request', (accept, reject, name, info) => {
      if (name !== 'tcpip-forward' && name !== 'cancel-tcpip-forward') {
        refuse('E_ROUTE_FORBIDDEN', `global request ${name} refused`);
        return reject?.();
      }
      const bind = info as { bindAddr: string; bindPort: number };
      if (name === 'cancel-tcpip-forward') {
        const t = [...tunnels.values()].find(
          (x) => x.gateway.gatewayId === bind.bindAddr && x.boundPort === bind.bindPort,
        );
        if (!t) return reject?.();
        // Renewal cancels the old forward once the new tunnel is up: route nothing new here, but let the
        // streams it carries finish (they end with their channels, or with this connection).
        tunnels.delete(t.id);
        this.#o.table.remove(t.id);
        draining.add(t);
        this.#o.events.tunnelDraining(t);
        return accept?.();
      }
      const allowed = admitForward(login, bind.bindAddr, bind.bindPort);
      if (!allowed.ok) {
        refuse(allowed.code, allowed.reason);
        return reject?.();
      }
      if (tunnels.size > 0) {
        refuse('E_LIMIT', 'one forward per SSH connection');
        return reject?.();
      }
      const quota = this.#o.table.admitTunnel(login.orgId);
      if (!quota.ok) {
        refuse(quota.code, quota.reason, {}, limitOf(quota));
        return reject?.();
      }
      clearTimeout(forwardDeadline);
      const port = allowed.value.port || nextPort();
      const tunnel = this.#o.table.add(login, port, { ...handle, openStream: (o) => open(port, o) }, this.#now());
      tunnels.set(tunnel.id, tunnel);
      accept?.(port);
      this.#o.events.tunnelUp(tunnel);
    });

    const open = (port: number, origin: { address: string; port: number }): Promise<ServerChannel> =>
      new Promise((resolve, reject) => {
        if (closed) return reject(new GatewayError('E_GATEWAY_OFFLINE', 'tunnel closed'));
        conn.forwardOut(login.gatewayId, port, origin.address, origin.port, (err, channel) => {
          if (err) return reject(new GatewayError('E_GATEWAY_OFFLINE', `gateway refused the channel: ${err.message}`));
          // Streams share the connection in turn, and never queue so much that a keepalive reply waits behind it.
          if (socket) paceChannel(channel, socket);
          resolve(channel);
        });
      });

    // Nothing but forwards: each refusal is explicit (ssh2 would refuse some by default) and counted.
    conn.on('session', (_accept, reject) => {
      refuse('E_ROUTE_FORBIDDEN', 'session channels (shell, exec, agent, X11) are refused');
      reject();
    });
    conn.on('tcpip', (_accept, reject) => {
      refuse('E_ROUTE_FORBIDDEN', 'direct-tcpip channels are refused');
      reject();
    });
    conn.on('openssh.streamlocal', (_accept, reject) => {
      refuse('E_ROUTE_FORBIDDEN', 'streamlocal channels are refused');
      reject();
    });
  }
}

function nextPort(): number {
  nextVirtualPort = nextVirtualPort >= 65_000 ? 20_000 : nextVirtualPort + 1;
  return nextVirtualPort;
}
