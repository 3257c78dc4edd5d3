/**
 * Keeps one tunnel up to every assigned proxy at once (Teleport's agent pool, cloudflared's supervisor):
 * one supervisor per proxy, each reconnecting on its own with exponential backoff and full jitter, so a dead
 * proxy never delays the others. Renewal is make-before-break: a new tunnel with the new certificate comes up
 * first, then the old one drains.
 */
import { EventEmitter } from 'node:events';
import type { ClientChannel, TcpConnectionDetails } from '../sshwire/ssh2.js';
import {
  attemptAfterTunnel,
  type BackoffPolicy,
  classifyFailure,
  DEFAULT_BACKOFF,
  type FailureKind,
  retryDelay,
} from './backoff.js';
import { type ProxyEndpoint, TUNNEL_DEFAULTS, Tunnel, type TunnelCredentials } from './tunnel.js';

export type TunnelState = 'connecting' | 'up' | 'backoff' | 'stopped';

export interface ProxyStatus {
  proxyId: string;
  scope: ProxyEndpoint['scope'];
  state: TunnelState;
  /** Failed attempts since the last stable tunnel. */
  attempt: number;
  /** ms since the epoch of the last state change. */
  since: number;
  lastError?: string;
  activeStreams: number;
}

export interface PoolStatus {
  up: number;
  total: number;
  proxies: ProxyStatus[];
}

export interface PoolLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

export interface TunnelPoolOptions {
  gatewayId: string;
  proxies: readonly ProxyEndpoint[];
  /** Called at every connect, so a reload or a renewal is picked up by the next tunnel. */
  credentialsFor(proxy: ProxyEndpoint): TunnelCredentials;
  /** Every platform stream from every tunnel. */
  onChannel(channel: ClientChannel, info: TcpConnectionDetails, proxy: ProxyEndpoint): void;
  /** Asked before a channel from `proxy` is accepted; false rejects it at once. */
  admitChannel?(proxy: ProxyEndpoint): boolean;
  backoff?: BackoffPolicy;
  random?: () => number;
  keepaliveIntervalMs?: number;
  keepaliveCountMax?: number;
  readyTimeoutMs?: number;
  /** How long an old tunnel's streams may run on after a make-before-break swap. */
  drainTimeoutMs?: number;
  log?: PoolLog;
  /** Clock (ms since the epoch) for the tunnels' host certificate checks and the supervisors' state times and
   * up-times (a tunnel up for `stableMs` resets the backoff); default Date.now. */
  now?: () => number;
}

/** What a reload may change in a running pool. */
export interface TunnelSettings {
  backoff: BackoffPolicy;
  keepaliveIntervalMs: number;
  keepaliveCountMax: number;
}

export interface TunnelPoolEvents {
  change: [status: PoolStatus];
}

export class TunnelPool extends EventEmitter<TunnelPoolEvents> {
  readonly #opts: TunnelPoolOptions;
  readonly #supervisors = new Map<string, Supervisor>();
  #started = false;

  constructor(opts: TunnelPoolOptions) {
    super();
    this.#opts = opts;
    for (const p of opts.proxies) this.#supervisors.set(p.proxyId, new Supervisor(this, p, opts));
  }

  /** Starts every supervisor at once. */
  start(): void {
    if (this.#started) return;
    this.#started = true;
    for (const s of this.#supervisors.values()) s.start();
  }

  status(): PoolStatus {
    const proxies = [...this.#supervisors.values()].map((s) => s.status());
    return { up: proxies.filter((p) => p.state === 'up').length, total: proxies.length, proxies };
  }

  /** Resolves once at least one tunnel is up (or rejects after `timeoutMs`). */
  whenUp(timeoutMs: number, min = 1): Promise<PoolStatus> {
    return new Promise((resolve, reject) => {
      const check = (s: PoolStatus) => {
        if (s.up < min) return;
        cleanup();
        resolve(s);
      };
      const timer = setTimeout(() => {
        cleanup();
        reject(new Error(`fewer than ${min} tunnel(s) up after ${timeoutMs} ms`));
      }, timeoutMs);
      const cleanup = () => {
        clearTimeout(timer);
        this.off('change', check);
      };
      this.on('change', check);
      check(this.status());
    });
  }

  /** The tunnel settings in force: the next connect, reconnect delay and tunnel use these. */
  get settings(): TunnelSettings {
    const o = this.#opts;
    return {
      backoff: o.backoff ?? DEFAULT_BACKOFF,
      keepaliveIntervalMs: o.keepaliveIntervalMs ?? TUNNEL_DEFAULTS.keepaliveIntervalMs,
      keepaliveCountMax: o.keepaliveCountMax ?? TUNNEL_DEFAULTS.keepaliveCountMax,
    };
  }

  /**
   * Reload: new backoff and keepalive. The options object is shared with every supervisor, so the next delay
   * and the next tunnel use them; returns whether the keepalive changed (tunnels up hold the old one until they
   * are replaced: the caller brings new ones up make-before-break, `renew`).
   */
  configure(settings: TunnelSettings): boolean {
    const before = this.settings;
    this.#opts.backoff = settings.backoff;
    this.#opts.keepaliveIntervalMs = settings.keepaliveIntervalMs;
    this.#opts.keepaliveCountMax = settings.keepaliveCountMax;
    return (
      before.keepaliveIntervalMs !== settings.keepaliveIntervalMs ||
      before.keepaliveCountMax !== settings.keepaliveCountMax
    );
  }

  /** Reload: supervisors for new proxies start, those for removed proxies stop; the others keep their tunnel. */
  setProxies(proxies: readonly ProxyEndpoint[]): void {
    const wanted = new Map(proxies.map((p) => [p.proxyId, p]));
    for (const [id, s] of this.#supervisors) {
      const next = wanted.get(id);
      if (!next || !sameEndpoint(next, s.proxy)) {
        s.stop();
        this.#supervisors.delete(id);
      }
    }
    for (const [id, p] of wanted) {
      if (this.#supervisors.has(id)) continue;
      const s = new Supervisor(this, p, this.#opts);
      this.#supervisors.set(id, s);
      if (this.#started) s.start();
    }
    this.changed();
  }

  /**
   * Make-before-break on every proxy: open a new tunnel (fresh credentials from credentialsFor), swap it in,
   * drain the old one. A proxy whose new tunnel fails keeps its old one; the failures are returned.
   */
  async renew(): Promise<{ proxyId: string; error: string }[]> {
    const results = await Promise.all([...this.#supervisors.values()].map((s) => s.replace()));
    return results.filter((r): r is { proxyId: string; error: string } => r !== undefined);
  }

  /** Closes every tunnel now (streams on them end); supervisors stop retrying. */
  async close(): Promise<void> {
    await Promise.all([...this.#supervisors.values()].map((s) => s.stop()));
    this.#started = false;
  }

  /** Stops accepting new streams everywhere and waits (bounded) for open ones to end. */
  async drain(timeoutMs: number): Promise<void> {
    await Promise.all([...this.#supervisors.values()].map((s) => s.drain(timeoutMs)));
  }

  /** @internal supervisors report here */
  changed(): void {
    this.emit('change', this.status());
  }
}

function sameEndpoint(a: ProxyEndpoint, b: ProxyEndpoint): boolean {
  return a.sshAddress === b.sshAddress && a.hostname === b.hostname && a.scope === b.scope;
}

/** One proxy's loop: connect, serve until the tunnel dies, back off, again. */
class Supervisor {
  readonly proxy: ProxyEndpoint;
  readonly #pool: TunnelPool;
  readonly #opts: TunnelPoolOptions;
  #tunnel: Tunnel | undefined;
  #old = new Set<Tunnel>();
  #state: TunnelState = 'stopped';
  readonly #now: () => number;
  #attempt = 0;
  #since: number;
  #lastError: string | undefined;
  #timer: NodeJS.Timeout | undefined;
  #stopped = false;
  #connecting = false;

  constructor(pool: TunnelPool, proxy: ProxyEndpoint, opts: TunnelPoolOptions) {
    this.#pool = pool;
    this.proxy = proxy;
    this.#opts = opts;
    this.#now = opts.now ?? Date.now;
    this.#since = this.#now();
  }

  status(): ProxyStatus {
    let active = this.#tunnel?.activeChannels ?? 0;
    for (const t of this.#old) active += t.activeChannels;
    return {
      proxyId: this.proxy.proxyId,
      scope: this.proxy.scope,
      state: this.#state,
      attempt: this.#attempt,
      since: this.#since,
      ...(this.#lastError !== undefined ? { lastError: this.#lastError } : {}),
      activeStreams: active,
    };
  }

  start(): void {
    void this.#connect();
  }

  #setState(state: TunnelState): void {
    if (this.#state === state) return;
    this.#state = state;
    this.#since = this.#now();
    this.#pool.changed();
  }

  #open(): Promise<Tunnel> {
    const o = this.#opts;
    return Tunnel.open({
      gatewayId: o.gatewayId,
      proxy: this.proxy,
      credentials: o.credentialsFor(this.proxy),
      keepaliveIntervalMs: o.keepaliveIntervalMs ?? TUNNEL_DEFAULTS.keepaliveIntervalMs,
      keepaliveCountMax: o.keepaliveCountMax ?? TUNNEL_DEFAULTS.keepaliveCountMax,
      readyTimeoutMs: o.readyTimeoutMs ?? TUNNEL_DEFAULTS.readyTimeoutMs,
      now: this.#now,
      ...(o.admitChannel ? { admitChannel: () => o.admitChannel?.(this.proxy) ?? true } : {}),
    });
  }

  async #connect(): Promise<void> {
    if (this.#stopped || this.#connecting) return;
    this.#connecting = true;
    this.#setState('connecting');
    try {
      const tunnel = await this.#open();
      if (this.#stopped) {
        tunnel.close();
        return;
      }
      this.#adopt(tunnel);
      this.#lastError = undefined;
      this.#opts.log?.info({ proxyId: this.proxy.proxyId, attempt: this.#attempt }, 'tunnel up');
      this.#setState('up');
    } catch (err) {
      this.#lastError = (err as Error).message;
      this.#retry(classifyFailure(err));
    } finally {
      this.#connecting = false;
    }
  }

  #policy(): BackoffPolicy {
    return this.#opts.backoff ?? DEFAULT_BACKOFF;
  }

  #adopt(tunnel: Tunnel): void {
    this.#tunnel = tunnel;
    tunnel.on('channel', (channel, info) => {
      this.#opts.onChannel(channel, info, this.proxy);
      this.#pool.changed();
      channel.once('close', () => this.#pool.changed());
    });
    tunnel.once('close', (err) => {
      if (this.#tunnel !== tunnel) return; // an old, replaced tunnel: nothing to retry
      this.#tunnel = undefined;
      if (this.#stopped) return;
      const upFor = this.#now() - tunnel.openedAt;
      this.#lastError = err?.message ?? 'tunnel closed by the proxy';
      this.#opts.log?.warn({ proxyId: this.proxy.proxyId, upForMs: upFor, err: this.#lastError }, 'tunnel down');
      // A tunnel that lived counts as a success: the next attempt starts fast again.
      this.#attempt = attemptAfterTunnel(this.#attempt, upFor, this.#policy());
      this.#retry('unreachable');
    });
  }

  #retry(kind: FailureKind): void {
    if (this.#stopped) return;
    const delay = retryDelay(this.#attempt, kind, this.#opts.random ?? Math.random, this.#policy());
    this.#attempt++;
    this.#setState('backoff');
    this.#opts.log?.info(
      { proxyId: this.proxy.proxyId, attempt: this.#attempt, delayMs: delay, failure: kind, err: this.#lastError },
      kind === 'unreachable'
        ? 'proxy not reachable (refused or reset): retrying soon'
        : 'proxy refused the tunnel: backing off',
    );
    this.#timer = setTimeout(() => {
      this.#timer = undefined;
      void this.#connect();
    }, delay);
  }

  async replace(): Promise<{ proxyId: string; error: string } | undefined> {
    const old = this.#tunnel;
    if (!old || this.#stopped) return undefined; // not up: the next connect uses the new credentials anyway
    let fresh: Tunnel;
    try {
      fresh = await this.#open();
    } catch (err) {
      return { proxyId: this.proxy.proxyId, error: (err as Error).message };
    }
    if (this.#stopped) {
      fresh.close();
      return undefined;
    }
    this.#old.add(old);
    this.#adopt(fresh);
    this.#pool.changed();
    void old.drain(this.#opts.drainTimeoutMs ?? 30_000).finally(() => {
      this.#old.delete(old);
      this.#pool.changed();
    });
    return undefined;
  }

  async drain(timeoutMs: number): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    const all = [...this.#old, ...(this.#tunnel ? [this.#tunnel] : [])];
    await Promise.all(all.map((t) => t.drain(timeoutMs)));
    this.#setState('stopped');
  }

  async stop(): Promise<void> {
    this.#stopped = true;
    if (this.#timer) clearTimeout(this.#timer);
    const all = [...this.#old, ...(this.#tunnel ? [this.#tunnel] : [])];
    await Promise.all(
      all.map(
        (t) =>
          new Promise<void>((resolve) => {
            if (t.closed) return resolve();
            t.once('close', () => resolve());
            t.close();
          }),
      ),
    );
    this.#tunnel = undefined;
    this.#setState('stopped');
  }
}
