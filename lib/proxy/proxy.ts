/**
 * The proxy: an SSH listener for gateway tunnels and a TLS listener for platform streams around one tunnel
 * table, one revocation list and one set of credentials. Instance and org proxies are the same code: the
 * proxy's identity URI decides its scope, and the enrollment's trust lists decide which CAs it believes.
 *
 * reload() swaps credentials, trust and limits for new connections without touching established tunnels or
 * streams; revoke() applies a revocation entry to the lists and closes what it hits.
 *
 * Abuse limits (docs/security.md): both listeners bound unauthenticated connections per source and in time
 * (HandshakeGate), a gateway login must forward in time, and an instance proxy holds each org to quotas of
 * tunnels and streams. Every refusal by a limit is counted by limit name; its log line is sampled, since a
 * flood would otherwise turn into a flood of log lines.
 */
import type { KeyObject } from 'node:crypto';
import { createSecureContext } from 'node:tls';
import { type ErrorCode, GatewayError } from '../errors/codes.js';
import { parseIdentity } from '../pki/identity.js';
import { mtlsServerOptions } from '../pki/tls.js';
import { loadTrustAnchors, type TrustAnchors } from '../pki/verify.js';
import type { Direction } from '../protocol/splice.js';
import type { DaemonMetrics } from '../runtime/metrics.js';
import type { Readiness } from '../runtime/ops.js';
import { sampledWarn } from '../runtime/sampled-log.js';
import { DEFAULT_CERT_SKEW_MS, type LimitName, type OrgQuotas, type ProxyScope } from './admission.js';
import { ProxyMetrics } from './metrics.js';
import { type RelayLimits, RelayListener } from './relay-listener.js';
import { type Revocation, RevocationList, streamHit, tunnelHit } from './revocations.js';
import { type GatewayTunnel, type SshLimits, SshTunnelListener } from './ssh-listener.js';
import { TunnelTable } from './tunnel-table.js';

export interface ProxyCredentials {
  /** This proxy's identity URI (instance or org proxy): decides scope, org and trust domain. */
  proxyUri: string;
  tlsKey: KeyObject | string;
  /** TLS server chain, PEM, leaf first. */
  tlsChain: string;
  /** OpenSSH private host key text and its host certificate (blob or text line). */
  sshHostKey: string;
  sshHostCertificate: Buffer | string;
  /** SSH client CA public key blobs whose gateway certs are accepted. */
  sshUserCaKeys: Buffer[];
  /** PEM of the proxy PKI client CA(s) whose platform certs are accepted. */
  pkiClientCaPems: string[];
}

export interface ProxyLimits extends SshLimits, RelayLimits, OrgQuotas {
  maxStreamsPerGateway: number;
}

/** The config defaults (lib/proxy/config.ts); docs/security.md says why each is what it is. */
export const DEFAULT_LIMITS: ProxyLimits = {
  handshakeTimeoutMs: 10_000,
  idleTimeoutMs: 15 * 60_000,
  maxConnections: 10_000,
  maxUnauthenticatedPerSource: 512,
  forwardTimeoutMs: 15_000,
  maxAuthAttempts: 6,
  maxTunnelAttempts: 3,
  maxStreamsPerGateway: 1_000,
  maxTunnelsPerOrg: 2_000,
  maxStreamsPerOrg: 2_500,
  certSkewMs: DEFAULT_CERT_SKEW_MS,
};

/** How often a limit's refusals are logged at most (one line per limit and listener, with the count since). */
const LIMIT_LOG_INTERVAL_MS = 10_000;

/** The pino subset the proxy logs with. */
export interface ProxyLog {
  info(fields: object, message: string): void;
  warn(fields: object, message: string): void;
}

export interface ProxyServerOptions {
  credentials: ProxyCredentials;
  limits?: Partial<ProxyLimits>;
  ssh: { host: string; port: number };
  tls: { host: string; port: number };
  metrics?: DaemonMetrics;
  log?: ProxyLog;
  now?: () => number;
  tap?: (direction: Direction, chunk: Buffer) => void;
  /** Revocations known before the first connection (from the state database). */
  revocations?: Iterable<Revocation>;
}

interface Trust {
  scope: ProxyScope;
  userCaKeys: Buffer[];
  anchors: TrustAnchors;
}

/** Pure: the scope of a proxy from its identity URI. */
export function scopeOf(proxyUri: string): ProxyScope {
  const id = parseIdentity(proxyUri);
  if (!id.ok) throw new GatewayError('E_CONFIG_INVALID', `proxy URI: ${id.reason}`);
  if (id.value.kind === 'instance-proxy') return { scope: 'instance', trustDomain: id.value.trustDomain };
  if (id.value.kind === 'org-proxy') return { scope: 'org', orgId: id.value.orgId, trustDomain: id.value.trustDomain };
  throw new GatewayError('E_CONFIG_INVALID', `${proxyUri} is not a proxy identity`);
}

function loadTrust(c: ProxyCredentials): Trust {
  if (c.sshUserCaKeys.length === 0) throw new GatewayError('E_CONFIG_INVALID', 'no trusted SSH client CA key');
  const anchors = loadTrustAnchors(c.pkiClientCaPems);
  if (!anchors.ok) throw new GatewayError('E_CONFIG_INVALID', `PKI client CAs: ${anchors.reason}`);
  return { scope: scopeOf(c.proxyUri), userCaKeys: c.sshUserCaKeys, anchors: anchors.value };
}

const mtls = (c: ProxyCredentials) => ({ key: c.tlsKey, chain: c.tlsChain, anchors: c.pkiClientCaPems });

export class ProxyServer {
  readonly table: TunnelTable<GatewayTunnel>;
  readonly revocations = new RevocationList();
  readonly ssh: SshTunnelListener;
  readonly relay: RelayListener;
  sshPort = 0;
  tlsPort = 0;
  #trust: Trust;
  readonly #limits: ProxyLimits;
  readonly #log: ProxyLog | undefined;
  readonly #metrics: ProxyMetrics | undefined;
  readonly #now: () => number;
  readonly #refusals = new Map<string, number>();

  private constructor(o: ProxyServerOptions) {
    this.#now = o.now ?? Date.now;
    this.#log = o.log;
    this.#limits = { ...DEFAULT_LIMITS, ...o.limits };
    this.#trust = loadTrust(o.credentials);
    this.table = new TunnelTable({
      maxStreamsPerGateway: this.#limits.maxStreamsPerGateway,
      ...this.#orgQuotas(),
    });
    this.#metrics = o.metrics ? new ProxyMetrics(o.metrics, () => this.stats()) : undefined;
    const logSampled = sampledWarn(this.#log, LIMIT_LOG_INTERVAL_MS, this.#now);
    const refused =
      (listener: 'ssh' | 'tls') =>
      (code: ErrorCode, reason: string, fields: object, limit?: LimitName): void => {
        for (const k of [`${listener}:${code}`, ...(limit ? [`${listener}:${limit}`] : [])]) {
          this.#refusals.set(k, (this.#refusals.get(k) ?? 0) + 1);
        }
        this.#metrics?.refusal(listener, code);
        if (!limit) {
          this.#log?.warn({ listener, code, reason, ...fields }, 'refused');
          return;
        }
        this.#metrics?.limitRefusal(listener, limit);
        logSampled(`${listener}:${limit}`, { listener, code, limit, reason, ...fields }, 'refused by a limit');
      };
    this.ssh = new SshTunnelListener({
      host: { hostKey: o.credentials.sshHostKey, hostCertificate: o.credentials.sshHostCertificate },
      trust: () => this.#trust,
      table: this.table,
      revocations: this.revocations,
      limits: this.#limits,
      now: this.#now,
      events: {
        refused: refused('ssh'),
        tunnelUp: (t) => {
          this.#metrics?.tunnelOpened();
          this.#log?.info(
            { tunnel: t.id, gateway: t.gateway.uri, replica: t.gateway.replica ?? null, port: t.boundPort },
            'tunnel up',
          );
        },
        tunnelDown: (t, reason) => {
          // Streams ride on the tunnel's channels; close them now rather than wait for ssh2 to notice.
          // Reset, not ended: the gateway side is gone, the platform must see its stream fail, not complete.
          // A stream done already (its platform socket lingering) rides on nothing: left alone.
          this.relay.closeStreams((s) => s.tunnelId === t.id, `tunnel closed: ${reason}`, {
            reset: true,
            lingering: false,
          });
          this.#log?.info(
            { tunnel: t.id, gateway: t.gateway.uri, replica: t.gateway.replica ?? null, reason },
            'tunnel down',
          );
        },
        tunnelDraining: (t) => {
          this.#log?.info(
            { tunnel: t.id, gateway: t.gateway.uri, replica: t.gateway.replica ?? null },
            'tunnel draining: forward cancelled',
          );
        },
      },
    });
    this.relay = new RelayListener({
      credentials: mtls(o.credentials),
      trust: () => this.#trust,
      table: this.table,
      revocations: this.revocations,
      limits: this.#limits,
      now: this.#now,
      ...(o.tap ? { tap: o.tap } : {}),
      events: {
        refused: refused('tls'),
        bytes: (d, n) => this.#metrics?.bytes(d, n),
        streamOpened: (s) => {
          this.#metrics?.streamOpened();
          this.#log?.info(
            {
              audit: true,
              event: 'stream.opened',
              stream: s.id,
              identity: s.route.identityUri,
              org: s.route.orgId,
              gateway: s.route.gatewayId,
              tunnel: s.tunnelId,
            },
            'stream opened',
          );
        },
        streamClosed: (s, end, reason) =>
          this.#log?.info(
            {
              audit: true,
              event: 'stream.closed',
              stream: s.id,
              identity: s.route.identityUri,
              gateway: s.route.gatewayId,
              end,
              reason,
              bytesUp: s.splice.bytes.up,
              bytesDown: s.splice.bytes.down,
              durationMs: this.#now() - s.openedAtMs,
            },
            'stream closed',
          ),
      },
    });
  }

  static async start(o: ProxyServerOptions): Promise<ProxyServer> {
    const proxy = new ProxyServer(o);
    for (const r of o.revocations ?? []) proxy.revocations.add(r);
    proxy.sshPort = await proxy.ssh.listen(o.ssh.port, o.ssh.host);
    proxy.tlsPort = await proxy.relay.listen(o.tls.port, o.tls.host);
    return proxy;
  }

  /** The limits both listeners and the tunnel table hold now (a reload updates them in place). */
  get limits(): Readonly<ProxyLimits> {
    return this.#limits;
  }

  get scope(): ProxyScope {
    return this.#trust.scope;
  }

  /** Per-org quotas apply on an instance proxy only: an org proxy serves its own org. */
  #orgQuotas(): { orgQuotas?: OrgQuotas } {
    if (this.#trust.scope.scope !== 'instance') return {};
    return {
      orgQuotas: { maxTunnelsPerOrg: this.#limits.maxTunnelsPerOrg, maxStreamsPerOrg: this.#limits.maxStreamsPerOrg },
    };
  }

  /**
   * New credentials, trust and limits for new connections. Everything is checked before anything is swapped,
   * so a bad reload throws and leaves the running state as it was. Established tunnels and streams stay.
   */
  reload(credentials: ProxyCredentials, limits?: Partial<ProxyLimits>): void {
    const trust = loadTrust(credentials);
    const tlsOptions = mtlsServerOptions(mtls(credentials));
    createSecureContext(tlsOptions); // throws on a key that does not match its cert
    this.ssh.setHostCredentials({ hostKey: credentials.sshHostKey, hostCertificate: credentials.sshHostCertificate });
    this.relay.setCredentials(mtls(credentials));
    this.#trust = trust;
    if (limits) {
      // One limits object is shared with both listeners: updating it in place reaches them.
      Object.assign(this.#limits, limits);
      this.relay.setLimits(this.#limits);
      this.table.maxStreamsPerGateway = this.#limits.maxStreamsPerGateway;
      this.table.orgQuotas = this.#orgQuotas().orgQuotas;
    }
  }

  /**
   * Applies a revocation: future logins and streams are refused; live tunnels and streams it hits close, and a
   * platform socket of a stream it hits that still lingers after the stream was done is destroyed.
   */
  revoke(entry: Revocation): { tunnels: number; streams: number } {
    this.revocations.add(entry);
    this.#metrics?.revocation(entry.kind);
    const tunnels = this.table.filter((t) => tunnelHit(entry, t.gateway));
    for (const t of tunnels) t.handle.close(`revoked (${entry.kind})`);
    const streams = this.relay.closeStreams((s) => streamHit(entry, s.route), `revoked (${entry.kind})`);
    if (tunnels.length || streams) {
      this.#log?.info({ revocation: entry, tunnels: tunnels.length, streams }, 'revocation closed connections');
    }
    return { tunnels: tunnels.length, streams };
  }

  stats() {
    return {
      tunnels: this.table.size,
      gateways: this.table.gatewayCount,
      streams: this.relay.streams.size,
      bufferedBytes: this.relay.bufferedBytes(),
      sshConnections: this.ssh.connections,
      sshUnauthenticated: this.ssh.unauthenticated,
      tlsConnections: this.relay.connections,
      tlsUnauthenticated: this.relay.unauthenticated,
      sshUnauthenticatedSources: this.ssh.unauthenticatedSources,
      tlsUnauthenticatedSources: this.relay.unauthenticatedSources,
    };
  }

  /** Refusals counted so far, by "listener:code" and "listener:limit" (tests; metrics carry the same). */
  refusals(): ReadonlyMap<string, number> {
    return this.#refusals;
  }

  /** A proxy is ready once both listeners are bound; tunnels come and go. */
  readiness(): Readiness {
    const s = this.stats();
    return {
      ready: this.sshPort > 0 && this.tlsPort > 0,
      reason: `${s.tunnels} tunnels, ${s.streams} streams`,
      detail: { tunnels: s.tunnels, gateways: s.gateways, streams: s.streams },
    };
  }

  status(): string {
    const s = this.stats();
    return `serving: ${s.gateways} gateways, ${s.tunnels} tunnels, ${s.streams} streams`;
  }

  /** Stops accepting, lets streams finish until `signal` aborts, then closes everything. */
  async drain(signal: AbortSignal): Promise<void> {
    // net.Server.close resolves only once every connection is gone: start it, do not wait for it yet.
    const closing = Promise.all([this.ssh.stopAccepting(), this.relay.stopAccepting()]);
    while (this.relay.streams.size > 0 && !signal.aborted) {
      await new Promise((r) => setTimeout(r, 100));
    }
    this.close();
    this.ssh.destroyAll();
    this.relay.destroyAll();
    await closing;
  }

  /**
   * Closes every stream and tunnel now, a platform socket still lingering after its stream was done included
   * (listeners must be stopped separately or by drain).
   */
  close(): void {
    this.relay.closeStreams(() => true, 'proxy stopping');
    for (const t of this.table.all()) t.handle.close('proxy stopping');
  }

  /** Stops at once: listeners closed, every connection dropped (tests, second SIGTERM). */
  async stop(): Promise<void> {
    const closing = Promise.all([this.ssh.stopAccepting(), this.relay.stopAccepting()]);
    this.close();
    this.ssh.destroyAll();
    this.relay.destroyAll();
    await closing;
  }
}
