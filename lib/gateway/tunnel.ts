/**
 * One SSH reverse tunnel to one proxy (SPEC §4.3): logs in with the gateway's user certificate, accepts the
 * proxy only through a host certificate from the right SSH server CA naming the proxy's host name, asks for a
 * `tcpip-forward` bound to the gatewayId, and hands every `forwarded-tcpip` channel to its owner.
 *
 * This class speaks the protocol only; keeping tunnels alive (retries, backoff, failover, renewal) is the
 * TunnelPool's job.
 */
import { EventEmitter } from 'node:events';
import { GatewayError } from '../errors/codes.js';
import type { ProxyScope } from '../protocol/api.js';
import { parseHostPort } from '../runtime/config-schema.js';
import type { SshCertificate } from '../sshcert/index.js';
import { connectWithCertificate } from '../sshwire/client.js';
import { clientSocket, paceChannel } from '../sshwire/pacing.js';
import type { Client, ClientChannel, TcpConnectionDetails } from '../sshwire/ssh2.js';
import { growWindowWhileRead } from '../sshwire/window.js';

export type { ProxyScope };

/** A proxy as the enrollment answer lists it. */
export interface ProxyEndpoint {
  proxyId: string;
  scope: ProxyScope;
  /** The name the proxy's host certificate must carry as a principal. */
  hostname: string;
  /** host:port of its SSH listener. */
  sshAddress: string;
}

/** What a tunnel needs to log in: chosen per proxy scope (instance proxies and org proxies use different CAs). */
export interface TunnelCredentials {
  /** OpenSSH private key text of the gateway's SSH key. */
  privateKey: string;
  /** The SSH user certificate for that key, signed by the proxy scope's SSH client CA. */
  certificate: Buffer | string;
  /** Public key blobs of the scope's SSH server CA(s). */
  trustedHostCaKeys: Buffer[];
  /** A host certificate this gateway knows to be revoked (its serial, or the proxy it names). */
  isHostRevoked?: (cert: SshCertificate) => boolean;
}

export interface TunnelOptions {
  gatewayId: string;
  proxy: ProxyEndpoint;
  credentials: TunnelCredentials;
  /** Keepalive ping period; with keepaliveCountMax 2, a silent proxy is dropped after 3 periods. */
  keepaliveIntervalMs: number;
  keepaliveCountMax: number;
  /** Time to connect, exchange keys, authenticate and get the forward. */
  readyTimeoutMs: number;
  /** Clock for the host certificate check and `openedAt` (ms since the epoch; default Date.now). */
  now?: () => number;
  /** Asked before each channel the proxy opens is accepted; false rejects it at once (channel open failure). */
  admitChannel?: () => boolean;
}

export const TUNNEL_DEFAULTS = { keepaliveIntervalMs: 10_000, keepaliveCountMax: 2, readyTimeoutMs: 15_000 } as const;

export interface TunnelEvents {
  /** A platform stream arrived on this tunnel. */
  channel: [channel: ClientChannel, info: TcpConnectionDetails];
  /** The SSH connection ended; `error` says why when it was not asked for. */
  close: [error: Error | undefined];
  /** EventEmitter's own: a listener is about to be added for `event` (the tunnel holds early channels for it). */
  newListener: [event: string | symbol];
}

export class Tunnel extends EventEmitter<TunnelEvents> {
  readonly proxy: ProxyEndpoint;
  readonly openedAt: number;
  readonly #client: Client;
  readonly #gatewayId: string;
  readonly #admitChannel: () => boolean;
  readonly #channels = new Set<ClientChannel>();
  #closed = false;
  #draining = false;
  #lastError: Error | undefined;
  /** The port the proxy bound our forward to (its choice, since we ask for 0). */
  #boundPort = 0;
  /**
   * Streams that arrived before anyone listened for them: the proxy routes new streams to a tunnel as soon as it
   * grants the forward (newest first), which is before open() resolves and the pool adopts the tunnel. Held
   * here and delivered to the first 'channel' listener, instead of being accepted and then left unanswered.
   */
  #early: [ClientChannel, TcpConnectionDetails][] = [];

  private constructor(client: Client, opts: TunnelOptions) {
    super();
    this.#client = client;
    this.#gatewayId = opts.gatewayId;
    this.#admitChannel = opts.admitChannel ?? (() => true);
    this.proxy = opts.proxy;
    this.openedAt = (opts.now ?? Date.now)();
    client.on('error', (err) => {
      this.#lastError ??= err;
    });
    client.on('close', () => this.#onClose());
    client.on('tcp connection', (info, accept, reject) => {
      // Only our own forward: ssh2 already matches the bind address, this also refuses once draining.
      if (this.#draining || this.#closed || info.destIP !== this.#gatewayId) return reject();
      if (!this.#admitChannel()) return reject();
      const channel = accept();
      // Streams share the connection in turn, and never queue so much that a keepalive reply waits behind it.
      const socket = clientSocket(client);
      if (socket) paceChannel(channel, socket);
      // The proxy may run ahead of a gateway that reads the channel at full speed (the upload direction).
      growWindowWhileRead(channel);
      this.#channels.add(channel);
      channel.once('close', () => {
        this.#channels.delete(channel);
        if (this.#draining && this.#channels.size === 0) this.close();
      });
      if (this.listenerCount('channel') === 0) this.#early.push([channel, info]);
      else this.emit('channel', channel, info);
    });
    this.on('newListener', (event) => {
      if (event !== 'channel' || this.#early.length === 0) return;
      const early = this.#early.splice(0);
      // 'newListener' comes before the listener is added: deliver once it is.
      queueMicrotask(() => {
        for (const [channel, info] of early) if (!channel.destroyed) this.emit('channel', channel, info);
      });
    });
  }

  /**
   * Connects, authenticates and gets the forward. Rejects with a GatewayError: E_SSH_HOST_CERT (wrong CA,
   * expired, principal is not the proxy's host name), E_SSH_AUTH, E_TIMEOUT, E_GATEWAY_OFFLINE (forward refused).
   */
  static async open(opts: TunnelOptions): Promise<Tunnel> {
    const address = parseHostPort(opts.proxy.sshAddress);
    if (!address)
      throw new GatewayError(
        'E_CONFIG_INVALID',
        `proxy ${opts.proxy.proxyId}: bad sshAddress "${opts.proxy.sshAddress}"`,
      );
    const { client } = await connectWithCertificate({
      host: address.host,
      port: address.port,
      username: opts.gatewayId,
      privateKey: opts.credentials.privateKey,
      certificate: opts.credentials.certificate,
      trustedHostCaKeys: opts.credentials.trustedHostCaKeys,
      hostPrincipal: opts.proxy.hostname,
      ...(opts.credentials.isHostRevoked ? { isRevoked: opts.credentials.isHostRevoked } : {}),
      keepaliveInterval: opts.keepaliveIntervalMs,
      keepaliveCountMax: opts.keepaliveCountMax,
      readyTimeout: opts.readyTimeoutMs,
      ...(opts.now ? { now: opts.now } : {}),
    });
    // Small SSH messages (channel opens, window adjusts) must not wait for Nagle + delayed ACK (~40 ms).
    client.setNoDelay(true);
    const tunnel = new Tunnel(client, opts);
    try {
      await withTimeout(
        new Promise<void>((resolve, reject) => {
          client.forwardIn(opts.gatewayId, 0, (err, port) => {
            if (err) {
              const why = `proxy ${opts.proxy.proxyId} refused the forward for ${opts.gatewayId}`;
              return reject(new GatewayError('E_GATEWAY_OFFLINE', why, { cause: err }));
            }
            tunnel.#boundPort = port;
            resolve();
          });
        }),
        opts.readyTimeoutMs,
        `proxy ${opts.proxy.proxyId} did not answer the forward request`,
      );
    } catch (err) {
      tunnel.close();
      throw err;
    }
    return tunnel;
  }

  get closed(): boolean {
    return this.#closed;
  }

  get draining(): boolean {
    return this.#draining;
  }

  /** Streams currently open on this tunnel. */
  get activeChannels(): number {
    return this.#channels.size;
  }

  /**
   * Make-before-break's second half: ask the proxy to stop routing new streams here, let the open ones end,
   * then close. Streams still open after `timeoutMs` are cut.
   */
  drain(timeoutMs: number): Promise<void> {
    if (this.#closed) return Promise.resolve();
    this.#draining = true;
    return new Promise((resolve) => {
      const timer = setTimeout(() => this.close(), timeoutMs);
      timer.unref();
      this.once('close', () => {
        clearTimeout(timer);
        resolve();
      });
      try {
        this.#client.unforwardIn(this.#gatewayId, this.#boundPort, () => {});
      } catch {
        // not connected any more: 'close' follows
      }
      if (this.#channels.size === 0) this.close();
    });
  }

  /** Closes the connection and every stream on it. */
  close(): void {
    if (this.#closed) return;
    for (const ch of this.#channels) ch.destroy();
    this.#client.end();
    // end() waits for the peer; a dead peer must not keep us waiting.
    setTimeout(() => this.#client.destroy(), 1000).unref();
  }

  #onClose(): void {
    if (this.#closed) return;
    this.#closed = true;
    for (const ch of this.#channels) ch.destroy();
    this.#channels.clear();
    this.emit('close', this.#lastError);
  }
}

function withTimeout<T>(p: Promise<T>, ms: number, what: string): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const timeout = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(new GatewayError('E_TIMEOUT', what)), ms);
  });
  return Promise.race([p, timeout]).finally(() => clearTimeout(timer));
}
