/**
 * The platform's way to a private target: a grant from the cache (or the CA), then proxies in turn until one
 * relays to the gateway. Failover only on failures that belong to one proxy (errors.ts `shouldTryNextProxy`);
 * a refusal by the CA, the route, the grant or the target ends the attempt at once.
 */
import type { GrantMode, GrantTarget } from '../protocol/grant.js';
import type { ModeAlpn } from '../protocol/relay.js';
import { type DialOptions, dialViaProxy, type RelayedStream } from './dial.js';
import { atHop, ConnectError, shouldTryNextProxy } from './errors.js';
import { type ClientGrant, type GrantSource, type GrantSpec, obtainGrant, type ProxyEndpoint } from './grant.js';
import { GrantCache } from './grant-cache.js';

export type Progress =
  | { step: 'grant'; cached: boolean }
  | { step: 'granted'; grantId: string; expiresAtMs: number; proxies: number; ms: number }
  | { step: 'proxy'; proxyId: string; address: string }
  | { step: 'proxy-failed'; proxyId: string; error: ConnectError; next: boolean }
  | { step: 'connected'; proxyId: string; timings: RelayedStream['timings'] };

export type Dial = (
  grant: ClientGrant,
  proxy: ProxyEndpoint,
  mode: ModeAlpn,
  opts: DialOptions,
) => Promise<RelayedStream>;

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
}

export class GatewayConnector {
  readonly cache: GrantCache;
  readonly #opts: ConnectorOptions;
  readonly #dial: Dial;
  /** The proxy that worked last is tried first: fewer dead-proxy timeouts for the next stream. */
  #lastGood: string | undefined;

  constructor(opts: ConnectorOptions) {
    this.#opts = opts;
    this.#dial = opts.dial ?? dialViaProxy;
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
   * Opens one stream to the target through the gateway. If the gateway says the grant expired (its status line
   * E_GRANT_EXPIRED: a cached grant that the far side's clock judged differently), one fresh grant is tried
   * before giving up.
   */
  async open(target: GrantTarget, mode: ModeAlpn): Promise<RelayedStream> {
    const first = await this.grant(target, mode);
    try {
      return await this.openWith(first, mode);
    } catch (err) {
      if (!(err instanceof ConnectError) || err.hop !== 'gateway' || err.code !== 'E_GRANT_EXPIRED') throw err;
      this.cache.invalidate(first);
      return this.openWith(await this.grant(target, mode), mode);
    }
  }

  /** Tries the grant's proxies in turn (the last good one first). */
  async openWith(grant: ClientGrant, mode: ModeAlpn): Promise<RelayedStream> {
    const attempts: ConnectError[] = [];
    const proxies = orderProxies(grant.proxies, this.#lastGood);
    for (const [i, proxy] of proxies.entries()) {
      this.#opts.onProgress?.({ step: 'proxy', proxyId: proxy.proxyId, address: proxy.tlsAddress });
      try {
        const stream = await this.#dial(grant, proxy, mode, this.#opts);
        this.#lastGood = proxy.proxyId;
        this.#opts.onProgress?.({ step: 'connected', proxyId: proxy.proxyId, timings: stream.timings });
        return stream;
      } catch (err) {
        const e = atHop(err, 'proxy', proxy.proxyId);
        const next = shouldTryNextProxy(e) && i < proxies.length - 1;
        this.#opts.onProgress?.({ step: 'proxy-failed', proxyId: proxy.proxyId, error: e, next });
        attempts.push(e);
        if (!shouldTryNextProxy(e)) throw withAttempts(e, attempts);
      }
    }
    const last = attempts[attempts.length - 1]!;
    throw withAttempts(last, attempts, `all ${attempts.length} proxies failed; last (${last.proxyId}): ${last.detail}`);
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
