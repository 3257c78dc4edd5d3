/**
 * TLS material derived from a grant once and shared by every stream dialled with it: one SecureContext per
 * proxy scope for the outer session, one for the inner session, and the trust anchors parsed for the verifier.
 * Building a context parses the key and every CA (a few ms); before this, 1,000 streams on one grant built
 * 2,000 contexts. Keyed by the grant object (a WeakMap): a grant is never mutated, and its material goes when
 * the grant does.
 */
import tls from 'node:tls';
import { refuse, type Verdict } from '../errors/codes.js';
import { checkPeer, mtlsClientOptions, type PeerExpectations } from '../pki/tls.js';
import { loadTrustAnchors, type TrustAnchors, type VerifiedPeer, verifyCertificateChain } from '../pki/verify.js';
import type { ClientGrant, ProxyScope } from './grant.js';

/** Anchors for the verifier, parsed once (PEM when they do not parse: the verifier then says why). */
export interface Trust {
  anchors: TrustAnchors | readonly string[];
}

export interface GrantTls {
  /** The outer (proxy) session's context for a scope; undefined when the grant has no chain for it. */
  outer(scope: ProxyScope): tls.SecureContext | undefined;
  /** The inner (gateway) session's context. */
  readonly inner: tls.SecureContext;
  /**
   * The last inner session the gateway gave a ticket for, once its certificate was accepted, with that
   * certificate: the next inner handshake resumes it (fewer signatures, no certificates to send or parse; the
   * gateway still admits the grant on every stream, and verifyPeer judges the certificate again). Kept with the
   * grant, so no session outlives the grant it was made with.
   */
  innerSession: ResumableSession | undefined;
  /**
   * The gateway negotiated the held variant of the grant's mode (`tcp+go`, `ping+go`: lib/protocol/relay.ts) on
   * the last inner session of this grant: a relay opened ahead of need for it may run its inner handshake ahead
   * too (warm.ts), the mode starting (tcp: the target dialled) only at GO. Cleared when a gateway negotiates the
   * plain mode (an older one, or one whose operator turned hold_inner_sessions off).
   */
  innerGo: boolean;
  /**
   * The last outer session each proxy (by id) gave a ticket for, once its certificate was accepted, with that
   * certificate: the next outer handshake with that proxy resumes it. The proxy judges the outer certificate of
   * a resumed session as of a full one (lib/proxy/relay-listener.ts), and verifyPeer judges the proxy's again.
   */
  readonly outerSessions: Map<string, ResumableSession>;
  readonly proxyTrust: Trust;
  readonly gatewayTrust: Trust;
}

/** A TLS 1.3 session to resume (inner with the gateway, or outer with a proxy). */
export interface ResumableSession {
  ticket: Buffer;
  /** DER of the peer's certificate (the gateway's, or the proxy's) accepted in the session's full handshake. */
  peerLeaf: Buffer;
}

const derived = new WeakMap<ClientGrant, GrantTls>();

/** The grant's TLS material, built on first use. Throws when the grant's key or certificates do not load. */
export function grantTls(grant: ClientGrant): GrantTls {
  let g = derived.get(grant);
  if (!g) {
    g = build(grant);
    derived.set(grant, g);
  }
  return g;
}

function build(grant: ClientGrant): GrantTls {
  // One export of the key for all contexts (KeyObject → PEM is not free either).
  const key = grant.privateKey.export({ type: 'pkcs8', format: 'pem' }) as string;
  // No `ca`: OpenSSL's own check then fails (rejectUnauthorized is false; verifyPeer decides), and Node skips
  // the getPeerCertificate(true) + checkServerIdentity it runs after every handshake OpenSSL accepted (~1 ms).
  const context = (chain: string) => {
    const { ca: _ca, ...options } = mtlsClientOptions({ key, chain, anchors: [], host: 'context', port: 0 });
    return tls.createSecureContext(options);
  };
  const outer = new Map<ProxyScope, tls.SecureContext>();
  return {
    outer(scope) {
      const chain = grant.outerChain[scope];
      if (chain === undefined) return undefined;
      let c = outer.get(scope);
      if (!c) {
        c = context(chain);
        outer.set(scope, c);
      }
      return c;
    },
    inner: context(grant.innerChain),
    innerSession: undefined,
    innerGo: false,
    outerSessions: new Map(),
    proxyTrust: trust(grant.proxyServerCas),
    gatewayTrust: trust(grant.gatewayServerCas),
  };
}

function trust(pems: readonly string[]): Trust {
  const loaded = loadTrustAnchors([...pems]);
  return { anchors: loaded.ok ? loaded.value : pems };
}

/** checkPeer against the grant's parsed anchors, on the leaf alone first (lib/pki/tls decideLeafFirst). */
export function verifyPeer(
  socket: tls.TLSSocket,
  trust: Trust,
  expectations: Omit<PeerExpectations, 'anchors'>,
  now: Date,
  resumed?: ResumableSession,
): Verdict<VerifiedPeer> {
  const full: PeerExpectations = { ...expectations, anchors: trust.anchors };
  if (resumed && socket.isSessionReused() && !socket.getPeerCertificate(false)?.raw) {
    // A resumed TLS 1.3 session shows no peer certificate on the client side. The server proved it holds the
    // session's secret, known only to the peer whose certificate was accepted when the session was made:
    // that certificate is judged again, with today's clock and the grant's anchors.
    if (socket.getProtocol() !== 'TLSv1.3') return refuse('E_CERT_USAGE', `protocol ${socket.getProtocol()} refused`);
    return verifyCertificateChain({ ...full, chain: [resumed.peerLeaf], now });
  }
  return checkPeer(socket, full, now, { leafFirst: true });
}
