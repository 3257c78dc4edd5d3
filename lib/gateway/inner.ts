/**
 * The end-to-end mTLS server the gateway runs on every forwarded channel (SPEC §4.4). The proxy only ever
 * sees this session's ciphertext. Per channel: TLS 1.3 handshake with our inner server cert, then the one
 * admission decision (admission.ts: THE verifier + grant + revocations), then the allowlist with one DNS
 * lookup, then the mode picked by ALPN. A refusal closes the session and leaves an audit record.
 */
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import { mtlsServerOptions, peerChain } from '../pki/tls.js';
import { loadTrustAnchors, type TrustAnchors } from '../pki/verify.js';
import { type ErrorCode, GatewayError, unwrap } from '../protocol/errors.js';
import { checkGrant, type GrantMode } from '../protocol/grant.js';
import { MODE_ALPNS } from '../protocol/relay.js';
import { admitStream } from './admission.js';
import { type Allowlist, type Resolver, resolveTarget } from './allowlist.js';
import {
  DEFAULT_MODE_LIMITS,
  type ModeLimits,
  serveHealth,
  serveHttp,
  servePing,
  serveTcp,
  type UpstreamTls,
} from './modes.js';
import type { RevocationSet } from './revocations.js';
import type { StreamRegistry } from './streams.js';

/** The gateway's inner TLS identity and what it trusts, as stored after enrollment. */
export interface InnerCredentials {
  /** PEM private key of the inner server cert. */
  key: string;
  /** PEM chain, leaf first (URI SAN = the gateway URI). */
  chain: string;
  /** PEM certificates of the org's gateway client CA(s). */
  clientCaPems: readonly string[];
}

/** A refused stream, for the audit trail and metrics. */
export interface Refusal {
  code: ErrorCode;
  reason: string;
  proxyId: string;
  actor?: string;
  grantId?: string;
  mode?: string;
}

export interface InnerServerOptions {
  orgId: string;
  gatewayId: string;
  credentials: InnerCredentials;
  allowlist: Allowlist;
  resolver: Resolver;
  revoked: RevocationSet;
  registry: StreamRegistry;
  onRefused: (r: Refusal) => void;
  /** The `health` mode's document. */
  health: () => object;
  now?: () => Date;
  handshakeTimeoutMs?: number;
  limits?: Partial<ModeLimits>;
  /** TLS to targets in http mode (config http_upstream_tls / http_upstream_ca). */
  upstreamTls?: UpstreamTls;
}

interface Loaded {
  context: tls.SecureContext;
  options: tls.TlsOptions;
  anchors: TrustAnchors;
}

export class InnerServer {
  readonly #opts: InnerServerOptions;
  #loaded: Loaded;
  #allowlist: Allowlist;
  #upstreamTls: UpstreamTls | undefined;
  readonly #limits: ModeLimits;

  constructor(opts: InnerServerOptions) {
    this.#opts = opts;
    this.#loaded = load(opts.credentials);
    this.#allowlist = opts.allowlist;
    this.#upstreamTls = opts.upstreamTls;
    this.#limits = { ...DEFAULT_MODE_LIMITS, ...opts.limits };
  }

  /**
   * SIGHUP / renewal: new streams use the new cert, anchors, allowlist; streams already running keep theirs.
   * Throws (keeping the old state) when the credentials do not load.
   */
  reload(update: {
    credentials?: InnerCredentials;
    allowlist?: Allowlist;
    upstreamTls?: UpstreamTls | undefined;
  }): void {
    const loaded = update.credentials ? load(update.credentials) : this.#loaded;
    this.#loaded = loaded;
    if (update.allowlist) this.#allowlist = update.allowlist;
    if ('upstreamTls' in update) this.#upstreamTls = update.upstreamTls;
  }

  /** Serves one forwarded channel. */
  handle(channel: Duplex, meta: { proxyId: string }): void {
    const now = this.#opts.now ?? (() => new Date());
    const { context, anchors } = this.#loaded;
    const socket = new tls.TLSSocket(channel, {
      isServer: true,
      secureContext: context,
      requestCert: true,
      rejectUnauthorized: false, // THE verifier decides, below
      ALPNProtocols: [...MODE_ALPNS],
    });
    const cleanup = () => {
      socket.destroy();
      channel.destroy();
    };
    socket.once('close', () => channel.destroy());
    channel.once('close', () => socket.destroy());
    const refuse = (code: ErrorCode, reason: string, extra: Partial<Refusal> = {}) => {
      this.#opts.onRefused({ code, reason, proxyId: meta.proxyId, ...extra });
      cleanup();
    };
    socket.on('error', (err) => {
      if (!secured) refuse(...handshakeRefusal(err));
    });
    let secured = false;
    const timer = setTimeout(
      () => refuse('E_TIMEOUT', `no inner TLS handshake within ${this.#opts.handshakeTimeoutMs ?? 10_000} ms`),
      this.#opts.handshakeTimeoutMs ?? 10_000,
    );
    socket.once('close', () => clearTimeout(timer));
    socket.once('secure', () => {
      secured = true;
      clearTimeout(timer);
      if (socket.getProtocol() !== 'TLSv1.3') return refuse('E_CERT_WEAK_ALGORITHM', `${socket.getProtocol()} refused`);
      const ctx = { orgId: this.#opts.orgId, gatewayId: this.#opts.gatewayId, anchors, revoked: this.#opts.revoked };
      const admitted = admitStream(peerChain(socket), socket.alpnProtocol, { ...ctx, now: now() });
      if (!admitted.ok) return refuse(admitted.code, admitted.reason, { mode: String(socket.alpnProtocol) });
      const { grant, mode, peer } = admitted.value;
      const who = { actor: grant.actor, grantId: grant.grantId, mode };
      if (this.#opts.registry.full) return refuse('E_LIMIT', 'too many streams on this gateway', who);
      socket.pause(); // nothing is read until the mode is wired
      const handle = this.#opts.registry.add(
        { grant, serialHex: peer.serialHex, mode, proxyId: meta.proxyId },
        { destroy: cleanup },
      );
      if (mode === 'ping') return servePing(socket.resume(), handle, this.#limits);
      if (mode === 'health') return serveHealth(socket, handle, this.#opts.health());
      const allowlist = this.#allowlist;
      const upstreamTls = this.#upstreamTls;
      void resolveTarget(allowlist, grant.target, this.#opts.resolver).then((dial) => {
        if (!dial.ok) {
          this.#opts.onRefused({ code: dial.code, reason: dial.reason, proxyId: meta.proxyId, ...who });
          return handle.end(dial.code, dial.reason);
        }
        if (mode === 'tcp') return serveTcp(socket, handle, dial.value, this.#limits);
        serveHttp(socket, handle, dial.value, {
          limits: this.#limits,
          ...(upstreamTls ? { upstreamTls } : {}),
          checkRequested: (target) =>
            checkGrant(grant, {
              orgId: this.#opts.orgId,
              gatewayId: this.#opts.gatewayId,
              target,
              mode: mode as GrantMode,
              now: now(),
            }),
        });
        socket.resume();
      });
    });
  }
}

/** A failed handshake, as a refusal code: no common mode, too old a protocol, or anything else. */
function handshakeRefusal(err: Error): [ErrorCode, string] {
  const code = (err as NodeJS.ErrnoException).code ?? err.message;
  if (/APPLICATION_PROTOCOL/.test(code))
    return ['E_TARGET_NOT_ALLOWED', `no common mode (offer one of ${MODE_ALPNS.join(', ')})`];
  if (/VERSION|PROTOCOL/.test(code)) return ['E_CERT_WEAK_ALGORITHM', `inner TLS handshake failed: ${code}`];
  return ['E_CERT_UNTRUSTED', `inner TLS handshake failed: ${code}`];
}

function load(c: InnerCredentials): Loaded {
  if (c.clientCaPems.length === 0) throw new GatewayError('E_CONFIG_INVALID', 'no gateway client CA to trust');
  const options = mtlsServerOptions({
    key: c.key,
    chain: c.chain,
    anchors: [...c.clientCaPems],
    alpn: [...MODE_ALPNS],
  });
  const context = tls.createSecureContext(options);
  return { context, options, anchors: unwrap(loadTrustAnchors([...c.clientCaPems])) };
}
