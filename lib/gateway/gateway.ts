/**
 * The gateway's parts wired together (what `infisical-gateway serve` runs): TunnelPool (tunnels), InnerServer
 * (streams), StreamRegistry (lifetime + audit), revocations, renewal and the revocation feed. No part here
 * decides security; each decision lives in its module (admission.ts, allowlist.ts, lib/pki, lib/sshcert).
 */
import { X509Certificate } from 'node:crypto';
import { lookup } from 'node:dns/promises';
import { FeedFollower, type FeedHealth, type FeedTiming, isSelfRefusal, selfRefusalReason } from '../enrolled/feed.js';
import { RenewalScheduler, type RenewalWindow } from '../enrolled/renewal.js';
import { rotationFollower } from '../enrolled/rotation.js';
import { GatewayError, unwrap } from '../errors/codes.js';
import { parseIdentity } from '../pki/identity.js';
import { loadPrivateKey } from '../pki/keys.js';
import type { FeedProxyList, RevocationEntry } from '../protocol/api.js';
import type { CaClient } from '../protocol/ca-client.js';
import type { Audit } from '../runtime/log.js';
import { parseCertificate, parsePublicKey, type SshCertificate } from '../sshcert/index.js';
import { type Allowlist, type AllowlistConfig, parseAllowlist, type Resolver } from './allowlist.js';
import type { BackoffPolicy } from './backoff.js';
import { renew } from './enroll.js';
import { InnerServer, type LimitRefusal, type Refusal } from './inner.js';
import type { ModeLimits, UpstreamTls } from './modes.js';
import { type PoolLog, type PoolStatus, TunnelPool } from './pool.js';
import { type Revocation, RevocationSet } from './revocations.js';
import type { GatewayState, GatewayStore } from './state.js';
import { type StreamRecord, StreamRegistry } from './streams.js';
import type { ProxyEndpoint, TunnelCredentials } from './tunnel.js';

/** The config a running gateway uses (from lib/gateway/config.ts keys; reloadable except where noted). */
export interface GatewaySettings {
  allowlist: AllowlistConfig;
  upstreamTls?: UpstreamTls;
  keepaliveIntervalMs: number;
  keepaliveCountMax: number;
  backoff: BackoffPolicy;
  maxStreams: number;
  handshakeTimeoutMs: number;
  /** Offer the held inner session (`tcp+go`, `ping+go`; config hold_inner_sessions); default true. */
  holdInnerSessions?: boolean;
  /** Channels per proxy waiting for their inner handshake (default 256); more are rejected at the open. */
  maxPendingChannels?: number;
  /** Sessions per proxy held for their GO (default 1024); past it, a session is not held. */
  maxHeldSessions?: number;
  limits?: Partial<ModeLimits>;
  /** Retry interval of the revocation feed while the CA cannot be reached (and the poll interval without
   * long-polling); 0: never read the feed. */
  revocationPollMs: number;
  /** Long-poll hold asked of the CA, seconds (0: plain polling). */
  feedWaitSec?: number;
  /** The feed counts as stale (readiness fails) after this long without a successful read. */
  feedStaleAfterMs?: number;
  renew: boolean;
}

export interface GatewayHooks {
  audit: Audit;
  log: PoolLog & { error(fields: object, message: string): void };
  store?: GatewayStore;
  /** For renewal and the revocation feed; absent in tests that run offline. */
  ca?: CaClient;
  resolver?: Resolver;
  now?: () => Date;
  random?: () => number;
  /** Every tunnel change (for READY/STATUS/metrics). */
  onTunnels?: (status: PoolStatus) => void;
  onStreamEnd?: (record: StreamRecord) => void;
  onRefused?: (refusal: Refusal) => void;
  /**
   * A channel open rejected by max_pending_channels, or a session not held by max_held_sessions (not audited:
   * nobody has authenticated yet).
   */
  onChannelRefused?: (r: LimitRefusal) => void;
  /** This gateway learned it is revoked (or its certificate superseded): tunnels are closed already. */
  onRevokedSelf?: (reason: string) => void;
  version?: string;
}

const defaultResolver: Resolver = async (host) =>
  (await lookup(host, { all: true, verbatim: true })).map((a) => a.address);

export class Gateway {
  #state: GatewayState;
  #settings: GatewaySettings;
  readonly #hooks: GatewayHooks;
  readonly revoked: RevocationSet;
  readonly registry: StreamRegistry;
  readonly inner: InnerServer;
  readonly pool: TunnelPool;
  #sshCreds: Map<string, TunnelCredentials>;
  readonly renewal: RenewalScheduler;
  readonly feed: FeedFollower | undefined;
  #revokedSelf: string | undefined;

  constructor(state: GatewayState, settings: GatewaySettings, hooks: GatewayHooks) {
    this.#state = state;
    this.#settings = settings;
    this.#hooks = hooks;
    this.revoked = new RevocationSet(hooks.store?.revocations() ?? []);
    this.#sshCreds = sshCredentials(state, this.revoked);
    const now = hooks.now ?? (() => new Date());
    this.registry = new StreamRegistry({
      gatewayId: state.gatewayId,
      maxStreams: settings.maxStreams,
      now: () => now().getTime(),
      onEnd: (r) => this.#streamEnded(r),
    });
    this.inner = new InnerServer({
      orgId: state.orgId,
      gatewayId: state.gatewayId,
      credentials: innerCredentials(state),
      allowlist: allowlistOf(settings),
      resolver: hooks.resolver ?? defaultResolver,
      revoked: this.revoked,
      registry: this.registry,
      onRefused: (r) => this.#refused(r),
      health: () => this.health(),
      now,
      handshakeTimeoutMs: settings.handshakeTimeoutMs,
      ...(settings.holdInnerSessions !== undefined ? { holdSessions: settings.holdInnerSessions } : {}),
      ...(settings.maxPendingChannels !== undefined ? { maxPendingChannels: settings.maxPendingChannels } : {}),
      ...(settings.maxHeldSessions !== undefined ? { maxHeldSessions: settings.maxHeldSessions } : {}),
      ...(hooks.onChannelRefused ? { onChannelRefused: hooks.onChannelRefused } : {}),
      ...(settings.limits ? { limits: settings.limits } : {}),
      ...(settings.upstreamTls ? { upstreamTls: settings.upstreamTls } : {}),
    });
    this.pool = new TunnelPool({
      gatewayId: state.gatewayId,
      proxies: this.#activeProxies(),
      credentialsFor: (p) => this.#credentialsFor(p),
      onChannel: (channel, _info, proxy) => this.inner.handle(channel, { proxyId: proxy.proxyId }),
      admitChannel: (proxy) => this.inner.admitChannel(proxy.proxyId),
      backoff: settings.backoff,
      keepaliveIntervalMs: settings.keepaliveIntervalMs,
      keepaliveCountMax: settings.keepaliveCountMax,
      log: hooks.log,
      ...(hooks.random ? { random: hooks.random } : {}),
      now: () => now().getTime(),
    });
    this.pool.on('change', (s) => hooks.onTunnels?.(s));
    this.renewal = new RenewalScheduler({
      windows: () => certWindows(this.#state),
      renew: () => this.#renew(),
      isFinal: isSelfRefusal,
      onFinal: (err) => this.#enterRevoked(selfRefusalReason(err as GatewayError)),
      now: () => now().getTime(),
      ...(hooks.random ? { random: hooks.random } : {}),
      log: hooks.log,
    });
    this.feed = hooks.ca && settings.revocationPollMs > 0 ? this.#follower(hooks.ca, settings, now) : undefined;
  }

  #follower(ca: CaClient, settings: GatewaySettings, now: () => Date): FeedFollower {
    const store = this.#hooks.store;
    let seq = 0;
    let version: string | undefined;
    return new FeedFollower({
      client: ca,
      current: () => ({
        certificate: this.#state.tlsChainPem,
        privateKey: loadPrivateKey(this.#state.tlsKeyPem),
        feedKey: this.#state.revocationFeedKey,
      }),
      position: {
        seq: () => store?.feedSeq() ?? seq,
        setSeq: (n) => {
          seq = n;
          store?.setFeedSeq(n);
        },
      },
      apply: (entries) => this.#applyFeed(entries),
      proxies: {
        version: () => version,
        apply: (list) => {
          version = list.version;
          this.#applyProxyList(list);
        },
      },
      rotation: rotationFollower({
        store,
        renewNow: () => this.renewNow(),
        pinApiRoot: (fp) => {
          ca.addPin(fp);
          store?.addCaPin(fp);
        },
        log: this.#hooks.log,
      }),
      onRevokedSelf: (err) => this.#enterRevoked(selfRefusalReason(err)),
      ...feedTiming(settings),
      now: () => now().getTime(),
      log: this.#hooks.log,
    });
  }

  get state(): GatewayState {
    return this.#state;
  }

  /** The settings of the last successful start or reload (the parts read their own back: pool, inner, feed). */
  get settings(): GatewaySettings {
    return this.#settings;
  }

  start(): void {
    const missed = this.#hooks.store?.rotationMissed();
    if (missed !== undefined) throw new GatewayError('E_ROTATION_MISSED', missed);
    if (this.revoked.has('gateway', this.#state.gatewayId, this.#state.orgId)) {
      throw new GatewayError('E_SUBJECT_REVOKED', `gateway ${this.#state.gatewayId} has been revoked`);
    }
    this.pool.start();
    if (this.#settings.renew && this.#hooks.ca) this.renewal.start();
    this.feed?.start();
  }

  /** Why this gateway stopped serving (revoked, superseded), or undefined while it serves. */
  get revokedReason(): string | undefined {
    return this.#revokedSelf;
  }

  feedHealth(): FeedHealth | undefined {
    return this.feed?.health();
  }

  /** The `health` mode's document and the ops endpoint's detail. */
  health(): Record<string, unknown> {
    const t = this.pool.status();
    return {
      ok: t.up > 0,
      gatewayId: this.#state.gatewayId,
      orgId: this.#state.orgId,
      version: this.#hooks.version ?? 'dev',
      tunnels: { up: t.up, total: t.total },
      streams: this.registry.size,
      proxies: t.proxies.map((p) => ({ proxyId: p.proxyId, state: p.state, streams: p.activeStreams })),
    };
  }

  /**
   * SIGHUP: new settings and/or state (re-read from SQLite). Everything is built before anything is swapped;
   * established streams keep running. New SSH certificates are brought up make-before-break.
   */
  async reload(update: { settings?: GatewaySettings; state?: GatewayState }): Promise<void> {
    const settings = update.settings ?? this.#settings;
    const state = update.state ?? this.#state;
    if (state.gatewayId !== this.#state.gatewayId || state.orgId !== this.#state.orgId) {
      throw new GatewayError('E_CONFIG_INVALID', 'the state database now holds another gateway; restart instead');
    }
    const allowlist = allowlistOf(settings);
    const creds = innerCredentials(state);
    const ssh = sshCredentials(state, this.revoked);
    this.inner.reload({
      credentials: creds,
      allowlist,
      upstreamTls: settings.upstreamTls,
      handshakeTimeoutMs: settings.handshakeTimeoutMs,
      holdSessions: settings.holdInnerSessions ?? true,
      ...(settings.maxPendingChannels !== undefined ? { maxPendingChannels: settings.maxPendingChannels } : {}),
      ...(settings.maxHeldSessions !== undefined ? { maxHeldSessions: settings.maxHeldSessions } : {}),
      ...(settings.limits ? { limits: settings.limits } : {}),
    });
    const sshChanged = JSON.stringify(state.sshCertificates) !== JSON.stringify(this.#state.sshCertificates);
    this.#state = state;
    this.#settings = settings;
    this.#sshCreds = ssh;
    this.registry.maxStreams = settings.maxStreams;
    const keepaliveChanged = this.pool.configure({
      backoff: settings.backoff,
      keepaliveIntervalMs: settings.keepaliveIntervalMs,
      keepaliveCountMax: settings.keepaliveCountMax,
    });
    this.feed?.configure(feedTiming(settings));
    if (this.#revokedSelf) return;
    if (this.feed) {
      if (settings.revocationPollMs > 0) this.feed.start();
      else await this.feed.stop();
    } else if (settings.revocationPollMs > 0 && this.#hooks.ca) {
      this.#hooks.log.warn(
        { key: 'revocation_poll' },
        'revocation_poll changed, takes effect at restart (the feed was off at start)',
      );
    }
    if (settings.renew && this.#hooks.ca) this.renewal.start();
    else this.renewal.stop();
    this.pool.setProxies(this.#activeProxies());
    if (sshChanged || keepaliveChanged) {
      const failures = await this.pool.renew();
      for (const f of failures) this.#hooks.log.warn({ proxyId: f.proxyId, err: f.error }, 'make-before-break failed');
    }
  }

  /** Revocation entry point (operator or the CA's feed): remembered, and live streams it covers end now. */
  revoke(r: Revocation & { seq?: number }): number {
    this.#hooks.store?.addRevocation(r);
    if (!this.revoked.add(r)) return 0;
    const ended = this.registry.revoke(r);
    this.#hooks.audit('gateway.revocation', {
      kind: r.kind,
      subject: r.subject,
      orgId: r.orgId ?? null,
      streamsEnded: ended,
    });
    if (r.kind === 'gateway' && r.subject === this.#state.gatewayId && (!r.orgId || r.orgId === this.#state.orgId)) {
      this.#enterRevoked(`gateway ${r.subject} was revoked`);
    } else if (r.kind === 'gateway' && r.subject === this.#state.gatewayUri) {
      this.#enterRevoked(`gateway ${r.subject} was revoked`);
    }
    if (r.kind === 'proxy' && !this.#revokedSelf) this.pool.setProxies(this.#activeProxies());
    return ended;
  }

  get revokedSelf(): boolean {
    return this.#revokedSelf !== undefined;
  }

  /** Renews now (also what the scheduler calls); persists, then reloads make-before-break. */
  renewNow(): Promise<void> {
    return this.renewal.renewNow();
  }

  async #renew(): Promise<void> {
    if (!this.#hooks.ca) throw new GatewayError('E_CONFIG_INVALID', 'no CA client configured for renewal');
    const store = this.#hooks.store;
    // `renew` run beside serve may have renewed already: renew from what is stored, never from a stale copy.
    const current = store?.isEnrolled() ? store.load() : this.#state;
    const next = await renew(this.#hooks.ca, current);
    store?.saveEnrollment(next);
    this.#hooks.audit('gateway.renewed', { notAfter: next.notAfter });
    await this.reload({ state: next });
  }

  /** Reads the signed revocation feed once, without waiting (tests, operators). */
  async pollRevocations(): Promise<number> {
    return this.feed ? this.feed.readOnce() : 0;
  }

  #applyFeed(entries: readonly RevocationEntry[]): void {
    for (const e of entries) this.revoke({ kind: e.kind, subject: e.subject, orgId: e.orgId, seq: e.seq });
  }

  /** A new proxy list from the CA (signed, in the feed): stored, then the pool follows it. */
  #applyProxyList(list: FeedProxyList): void {
    const proxies = list.list.map((p) => ({
      proxyId: p.proxyId,
      scope: p.scope,
      hostname: p.hostname,
      sshAddress: p.sshAddress,
      tlsAddress: p.tlsAddress,
    }));
    this.#hooks.store?.saveProxies(proxies);
    this.#state = { ...this.#state, proxies };
    this.#hooks.log.info(
      { proxies: proxies.map((p) => p.proxyId), version: list.version },
      'proxy list from the CA applied',
    );
    if (!this.#revokedSelf) this.pool.setProxies(this.#activeProxies());
  }

  /**
   * The proxies to keep tunnels to: the stored list less every revoked proxy. The one place the pool's list is
   * made, so a reload or a restart can never bring back a proxy the gateway knows to be revoked.
   */
  #activeProxies(): ProxyEndpoint[] {
    return endpoints(this.#state).filter(
      (p) => !this.revoked.has('proxy', p.proxyId, p.scope === 'org' ? this.#state.orgId : null),
    );
  }

  /**
   * This gateway is revoked (or its certificates superseded): it closes every tunnel and stops renewing and
   * reading the feed, but keeps running so that readiness and STATUS= say why (a restart would exit).
   */
  #enterRevoked(reason: string): void {
    if (this.#revokedSelf) return;
    this.#revokedSelf = reason;
    // Remembered, so a restart exits (EXIT_REVOKED) instead of serving again, naming a missed rotation as such.
    this.#hooks.store?.addRevocation({ kind: 'gateway', subject: this.#state.gatewayId, orgId: this.#state.orgId });
    if (reason.startsWith('E_ROTATION_MISSED')) this.#hooks.store?.setRotationMissed(reason);
    this.#hooks.log.error(
      { gatewayId: this.#state.gatewayId, reason },
      'this gateway is revoked: closing every tunnel',
    );
    this.renewal.stop();
    void this.feed?.stop();
    this.registry.endAll('E_SUBJECT_REVOKED', reason);
    void this.pool.close();
    this.#hooks.onRevokedSelf?.(reason);
  }

  /** SIGTERM: stop taking streams, let open ones finish until the deadline, then cut them. */
  async drain(timeoutMs: number): Promise<void> {
    this.#stopTimers();
    await Promise.race([this.pool.drain(timeoutMs), this.registry.idle(timeoutMs)]);
    this.registry.endAll('E_TIMEOUT', 'gateway shutting down');
    await this.pool.close();
  }

  async close(): Promise<void> {
    this.#stopTimers();
    this.registry.endAll('E_TIMEOUT', 'gateway closed');
    await this.pool.close();
  }

  #stopTimers(): void {
    this.renewal.stop();
    void this.feed?.stop();
  }

  #credentialsFor(proxy: ProxyEndpoint): TunnelCredentials {
    const c = this.#sshCreds.get(proxy.scope);
    if (!c) throw new GatewayError('E_SSH_AUTH', `no SSH certificate for ${proxy.scope} proxies; re-enroll`);
    return c;
  }

  #streamEnded(r: StreamRecord): void {
    try {
      this.#hooks.audit('gateway.stream', { ...r });
    } catch {
      // the sink failure is already logged; a finished stream cannot be refused any more
    }
    this.#hooks.onStreamEnd?.(r);
  }

  #refused(r: Refusal): void {
    try {
      this.#hooks.audit('gateway.stream.refused', { ...r });
    } catch {
      // logged by the audit helper
    }
    this.#hooks.onRefused?.(r);
  }
}

function feedTiming(s: GatewaySettings): FeedTiming {
  return { waitSec: s.feedWaitSec ?? 25, retryMs: s.revocationPollMs, staleAfterMs: s.feedStaleAfterMs ?? 300_000 };
}

export function allowlistOf(settings: GatewaySettings): Allowlist {
  return unwrap(parseAllowlist(settings.allowlist));
}

function innerCredentials(s: GatewayState) {
  return { key: s.tlsKeyPem, chain: s.tlsChainPem, clientCaPems: s.gatewayClientCaCerts };
}

function endpoints(s: GatewayState): ProxyEndpoint[] {
  return s.proxies.map((p) => ({ proxyId: p.proxyId, scope: p.scope, hostname: p.hostname, sshAddress: p.sshAddress }));
}

/** One credential set per proxy scope: that scope's SSH user cert and SSH server CA keys. */
function sshCredentials(s: GatewayState, revoked: RevocationSet): Map<string, TunnelCredentials> {
  const out = new Map<string, TunnelCredentials>();
  // A proxy the feed named (by id, or its host certificate's serial: a retired or copied one) is refused at
  // the handshake too, whatever address it answers on.
  const isHostRevoked = (cert: SshCertificate): boolean => {
    if (revoked.has('certificate', cert.serial.toString(16))) return true;
    const id = parseIdentity(cert.keyId);
    if (!id.ok || (id.value.kind !== 'instance-proxy' && id.value.kind !== 'org-proxy')) return false;
    return (
      revoked.has('proxy', cert.keyId) || revoked.has('proxy', id.value.id, 'orgId' in id.value ? id.value.orgId : null)
    );
  };
  for (const c of s.sshCertificates) {
    const hostCas = s.sshHostCaKeys.filter((k) => k.scope === c.scope).map((k) => unwrap(parsePublicKey(k.key)));
    out.set(c.scope, {
      privateKey: s.sshPrivateKey,
      certificate: c.certificate,
      trustedHostCaKeys: hostCas,
      isHostRevoked,
    });
  }
  return out;
}

/** Validity windows of every cert the gateway holds (TLS leaf, each SSH cert). */
export function certWindows(s: GatewayState): RenewalWindow[] {
  const out: RenewalWindow[] = [];
  const leaf = new X509Certificate(s.tlsChainPem);
  out.push({ notBefore: new Date(leaf.validFrom), notAfter: new Date(leaf.validTo) });
  for (const c of s.sshCertificates) {
    const cert = parseCertificate(c.certificate);
    if (!cert.ok) continue;
    out.push({
      notBefore: new Date(Number(cert.value.validAfter) * 1000),
      notAfter: new Date(Number(cert.value.validBefore) * 1000),
    });
  }
  return out;
}
