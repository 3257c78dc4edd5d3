/**
 * The platform's way to a private target: a grant from the cache (or the CA), then proxies in turn until one
 * relays to the gateway. Failover only on failures that belong to one proxy (errors.ts `shouldTryNextProxy`);
 * a refusal by the CA, the route, the grant or the target ends the attempt at once, except that a grant
 * refused as expired or revoked is dropped from the cache and replaced once (`open`).
 */
import type { GrantMode, GrantTarget } from '../pki/grant.js';
import { goAlpnOf, type ModeAlpn } from '../protocol/relay.js';
import {
  completeStream,
  type DialOptions,
  dialViaProxy,
  holdInner,
  type OpenRelay,
  openRelay,
  type RelayedStream,
} from './dial.js';
import {
  atHop,
  ConnectError,
  refusedAfterRevocation,
  type StaleGrant,
  shouldTryNextProxy,
  staleGrant,
} from './errors.js';
import { type ClientGrant, type GrantSource, type GrantSpec, obtainGrant, type ProxyEndpoint } from './grant.js';
import { GrantCache, grantFreshness } from './grant-cache.js';
import { grantTls } from './grant-tls.js';
import { gatewayAnswered } from './inner-session.js';
import { DEFAULT_WARM_MAX_AGE_MS, WarmRelay } from './warm.js';

export type Progress =
  | { step: 'grant'; cached: boolean }
  | { step: 'granted'; grantId: string; expiresAtMs: number; proxies: number; ms: number }
  | { step: 'grant-dropped'; grantId: string; reason: StaleGrant; error: ConnectError }
  | { step: 'proxy'; proxyId: string; address: string }
  | { step: 'proxy-failed'; proxyId: string; error: ConnectError; next: boolean }
  | { step: 'connected'; proxyId: string; timings: RelayedStream['timings'] };

export type Dial = (
  grant: ClientGrant,
  proxy: ProxyEndpoint,
  mode: ModeAlpn,
  opts: DialOptions,
) => Promise<RelayedStream>;

/** Per stream: half-close and the user's first bytes for a forwarded connection (forward.ts), off otherwise. */
export type StreamOptions = Pick<DialOptions, 'allowHalfOpen' | 'firstBytes' | 'moreBytes'>;

export interface ConnectorOptions extends DialOptions {
  source: GrantSource;
  orgId: string;
  gatewayId: string;
  /** Requested grant lifetime (the CA may shorten it). */
  ttlSeconds?: number;
  /** Milliseconds since the epoch, for the grant cache (default Date.now). */
  nowMs?: () => number;
  refreshMarginMs?: number;
  onProgress?: (p: Progress) => void;
  /** Replaceable for tests; default dialViaProxy. */
  dial?: Dial;
  /**
   * Once a stream has opened, open the next relay ahead of need and hold it this long (warm.ts); 0: none.
   * Default DEFAULT_WARM_MAX_AGE_MS, or 0 when `dial` is replaced (the warm path dials with dial.ts itself).
   */
  warmRelayMs?: number;
  /** How long the next relay's open waits after a stream opened (warm.ts DEFAULT_WARM_REFILL_DELAY_MS; 0: none). */
  warmRefillDelayMs?: number;
}

export class GatewayConnector {
  readonly cache: GrantCache;
  readonly #opts: ConnectorOptions;
  readonly #dial: Dial;
  /** The proxy that worked last is tried first: fewer dead-proxy timeouts for the next stream. */
  #lastGood: string | undefined;
  readonly #warm: WarmRelay | undefined;

  constructor(opts: ConnectorOptions) {
    this.#opts = opts;
    this.#dial = opts.dial ?? dialViaProxy;
    const maxAgeMs = opts.warmRelayMs ?? (opts.dial === undefined ? DEFAULT_WARM_MAX_AGE_MS : 0);
    if (maxAgeMs > 0) {
      this.#warm = new WarmRelay({
        open: (grant, proxy, halfOpen) => this.#openAhead(grant, proxy, halfOpen),
        maxAgeMs,
        ...(opts.warmRefillDelayMs === undefined ? {} : { refillDelayMs: opts.warmRefillDelayMs }),
      });
    }
    this.cache = new GrantCache({
      obtain: (spec) => this.#obtain(spec),
      ...(opts.nowMs ? { now: opts.nowMs } : {}),
      ...(opts.refreshMarginMs === undefined ? {} : { refreshMarginMs: opts.refreshMarginMs }),
    });
  }

  spec(target: GrantTarget, mode: GrantMode): GrantSpec {
    const { orgId, gatewayId, ttlSeconds } = this.#opts;
    return { orgId, gatewayId, target, mode, ...(ttlSeconds === undefined ? {} : { ttlSeconds }) };
  }

  /** A grant for (target, mode), from the cache while fresh. CA refusals are ConnectErrors at hop "ca". */
  async grant(target: GrantTarget, mode: GrantMode): Promise<ClientGrant> {
    return this.cache.get(this.spec(target, mode));
  }

  /**
   * Opens one stream to the target through the gateway. When a hop says the grant is no good any more
   * (errors.ts `staleGrant`: the gateway judged it expired, or the gateway or a proxy says it was revoked), the
   * cached grant is dropped and one fresh grant tried before giving up. Streams failing together on one grant
   * share one CA request (the cache's single flight). If the CA refuses the fresh grant after a revocation, the
   * error is the CA's, saying so (errors.ts `refusedAfterRevocation`).
   */
  async open(target: GrantTarget, mode: ModeAlpn, stream: StreamOptions = {}): Promise<RelayedStream> {
    const first = await this.grant(target, mode);
    try {
      return await this.openWith(first, mode, stream);
    } catch (err) {
      const stale = err instanceof ConnectError ? staleGrant(err) : undefined;
      if (!stale) throw err;
      this.#drop(first, stale.reason, stale.refusal);
      let fresh: ClientGrant;
      try {
        fresh = await this.grant(target, mode);
      } catch (caErr) {
        if (stale.reason !== 'revoked' || !(caErr instanceof ConnectError) || caErr.hop !== 'ca') throw caErr;
        throw refusedAfterRevocation(first.grantId, stale.refusal, caErr);
      }
      try {
        return await this.openWith(fresh, mode, stream);
      } catch (again) {
        // Refused as stale again: not kept either, so the next stream asks the CA anew.
        const staleAgain = again instanceof ConnectError ? staleGrant(again) : undefined;
        if (staleAgain) this.#drop(fresh, staleAgain.reason, staleAgain.refusal);
        throw again;
      }
    }
  }

  /**
   * A refusal that came on a stream already open (in http mode the gateway answers as HTTP: forward.ts): the
   * request is answered already, but a grant refused as expired or revoked is dropped so that the next stream
   * gets a fresh one.
   */
  refusedOn(stream: RelayedStream, error: ConnectError): void {
    const stale = staleGrant(error);
    if (stale) this.#drop(stream.grant, stale.reason, stale.refusal);
  }

  /** Drops a refused grant from the cache; reported once per grant, however many streams failed on it. */
  #drop(grant: ClientGrant, reason: StaleGrant, error: ConnectError): void {
    if (!this.cache.invalidate(grant)) return;
    this.#opts.onProgress?.({ step: 'grant-dropped', grantId: grant.grantId, reason, error });
  }

  /**
   * A stream's first bytes came back: the next relay, held back so as not to compete with them for the CPU
   * (warm.ts), is opened now.
   */
  answered(): void {
    this.#warm?.start();
  }

  /** Ends the relay held ahead of need (shutdown); streams open later are dialled in full. */
  close(): void {
    this.#warm?.close();
  }

  /**
   * The relay opened ahead of need, when one is held for this grant (warm.ts), else the grant's proxies in turn
   * (the last good one first).
   */
  async openWith(grant: ClientGrant, mode: ModeAlpn, stream: StreamOptions = {}): Promise<RelayedStream> {
    const dialOpts: DialOptions = { ...this.#opts, ...stream };
    const halfOpen = dialOpts.allowHalfOpen ?? false;
    const warm = await this.#warm?.take(grant, halfOpen);
    if (warm) {
      this.#opts.onProgress?.({ step: 'proxy', proxyId: warm.proxy.proxyId, address: warm.proxy.tlsAddress });
      try {
        const opened = { ...(await completeStream(warm, mode, dialOpts)), warm: true };
        this.#connected(opened, halfOpen);
        return opened;
      } catch (err) {
        // What the gateway said is the answer; a relay that went while it waited (it failed before the inner
        // handshake completed) is dialled again below.
        if (!(err instanceof ConnectError) || !RELAY_GONE.has(err.code) || gatewayAnswered(err)) throw err;
      }
    }
    return this.#dialProxies(grant, mode, dialOpts, halfOpen);
  }

  /**
   * A relay ahead of need (warm.ts); for a tcp or ping grant whose gateway negotiated `<mode>+go` on its last
   * stream, with its inner session held ahead too (dial.ts holdInner: the gateway starts the mode, tcp's
   * target dial, only at GO, and judges the grant again then).
   */
  async #openAhead(grant: ClientGrant, proxy: ProxyEndpoint, halfOpen: boolean): Promise<OpenRelay> {
    const opts = { ...this.#opts, allowHalfOpen: halfOpen };
    const relay = await openRelay(grant, proxy, opts);
    const mode = grant.spec.mode;
    if (!goAlpnOf(mode) || !grantTls(grant).innerGo) return relay;
    return holdInner(relay, mode, opts);
  }

  #connected(opened: RelayedStream, halfOpen: boolean): void {
    this.#lastGood = opened.proxy.proxyId;
    this.#opts.onProgress?.({ step: 'connected', proxyId: opened.proxy.proxyId, timings: opened.timings });
    // The next stream's outer handshake and channel open, done now (warm.ts); not for a grant about to be
    // refreshed, whose relay would go unused.
    const nowMs = (this.#opts.nowMs ?? Date.now)();
    if (grantFreshness(opened.grant, nowMs, this.#opts.refreshMarginMs).ok) {
      this.#warm?.refill(opened.grant, opened.proxy, halfOpen);
    }
  }

  async #dialProxies(
    grant: ClientGrant,
    mode: ModeAlpn,
    dialOpts: DialOptions,
    halfOpen: boolean,
  ): Promise<RelayedStream> {
    const attempts: ConnectError[] = [];
    const proxies = orderProxies(grant.proxies, this.#lastGood);
    for (const [i, proxy] of proxies.entries()) {
      this.#opts.onProgress?.({ step: 'proxy', proxyId: proxy.proxyId, address: proxy.tlsAddress });
      try {
        const opened = await this.#dial(grant, proxy, mode, dialOpts);
        this.#connected(opened, halfOpen);
        return opened;
      } catch (err) {
        const e = atHop(err, 'proxy', proxy.proxyId);
        const next = shouldTryNextProxy(e) && i < proxies.length - 1;
        this.#opts.onProgress?.({ step: 'proxy-failed', proxyId: proxy.proxyId, error: e, next });
        attempts.push(e);
        if (!shouldTryNextProxy(e)) throw withAttempts(e, attempts);
      }
    }
    const last = attempts[attempts.length - 1]!;
    throw withAttempts(
      last,
      attempts,
      `${attempts.length === 1 ? 'the only proxy' : `all ${attempts.length} proxies`} failed; last (${last.proxyId}): ${last.detail}`,
    );
  }

  async #obtain(spec: GrantSpec): Promise<ClientGrant> {
    const t0 = performance.now();
    this.#opts.onProgress?.({ step: 'grant', cached: false });
    let grant: ClientGrant;
    try {
      grant = await obtainGrant(this.#opts.source, spec);
    } catch (err) {
      throw atHop(err, 'ca');
    }
    this.#opts.onProgress?.({
      step: 'granted',
      grantId: grant.grantId,
      expiresAtMs: grant.expiresAtMs,
      proxies: grant.proxies.length,
      ms: performance.now() - t0,
    });
    return grant;
  }
}

/**
 * How a relay held ahead of need fails when it went while it waited (the proxy or the gateway closed it, it
 * stalled): the stream is then dialled in full, and a refusal there is reported as usual.
 */
const RELAY_GONE = new Set<string>(['E_GATEWAY_OFFLINE', 'E_STREAM_CLOSED', 'E_TIMEOUT', 'E_PROXY_UNREACHABLE']);

/** The CA's order, except that the last proxy that worked goes first. */
export function orderProxies(proxies: readonly ProxyEndpoint[], preferred: string | undefined): ProxyEndpoint[] {
  const first = proxies.filter((p) => p.proxyId === preferred);
  return [...first, ...proxies.filter((p) => p.proxyId !== preferred)];
}

function withAttempts(e: ConnectError, attempts: ConnectError[], detail?: string): ConnectError {
  if (attempts.length <= 1 && detail === undefined) return e;
  return new ConnectError(e.code, e.hop, detail ?? e.detail, {
    ...(e.proxyId === undefined ? {} : { proxyId: e.proxyId }),
    ...(e.gatewayId === undefined ? {} : { gatewayId: e.gatewayId }),
    attempts,
    cause: e,
  });
}
