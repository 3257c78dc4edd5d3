/**
 * TLS material derived from a grant once and shared by every stream dialled with it: one SecureContext per
 * proxy scope for the outer session, one for the inner session, and the trust anchors parsed for the verifier.
 * Building a context parses the key and every CA (a few ms); before this, 1,000 streams on one grant built
 * 2,000 contexts. Keyed by the grant object (a WeakMap): a grant is never mutated, and its material goes when
 * the grant does.
 */
import { X509Certificate } from 'node:crypto';
import tls from 'node:tls';
import { checkPeer, mtlsClientOptions, type PeerExpectations } from '../pki/tls.js';
import { loadTrustAnchors, type TrustAnchors, type VerifiedPeer, verifyCertificateChain } from '../pki/verify.js';
import { certificateInputs } from '../pki/x509.js';
import type { Verdict } from '../protocol/errors.js';
import type { ClientGrant, ProxyScope } from './grant.js';

/** Anchors for the verifier (parsed once), and the same CAs for a cheap native issuer test. */
export interface Trust {
  anchors: TrustAnchors | readonly string[];
  issuers: readonly X509Certificate[];
}

export interface GrantTls {
  /** The outer (proxy) session's context for a scope; undefined when the grant has no chain for it. */
  outer(scope: ProxyScope): tls.SecureContext | undefined;
  /** The inner (gateway) session's context. */
  readonly inner: tls.SecureContext;
  readonly proxyTrust: Trust;
  readonly gatewayTrust: Trust;
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
  const context = (chain: string, anchors: readonly string[]) =>
    tls.createSecureContext(mtlsClientOptions({ key, chain, anchors, host: 'context', port: 0 }));
  const outer = new Map<ProxyScope, tls.SecureContext>();
  return {
    outer(scope) {
      const chain = grant.outerChain[scope];
      if (chain === undefined) return undefined;
      let c = outer.get(scope);
      if (!c) {
        c = context(chain, grant.proxyServerCas);
        outer.set(scope, c);
      }
      return c;
    },
    inner: context(grant.innerChain, grant.gatewayServerCas),
    proxyTrust: trust(grant.proxyServerCas),
    gatewayTrust: trust(grant.gatewayServerCas),
  };
}

/** Anchors that do not load stay PEM: the verifier then refuses with its own reason at the first check. */
function trust(pems: readonly string[]): Trust {
  const loaded = loadTrustAnchors([...pems]);
  let issuers: X509Certificate[] = [];
  try {
    issuers = certificateInputs([...pems], 64).map((der) => new X509Certificate(der));
  } catch {
    // no fast path; checkPeer decides
  }
  return { anchors: loaded.ok ? loaded.value : pems, issuers };
}

/**
 * checkPeer's verdict, computed on the peer's leaf alone when one of the anchors issued it: on a client socket
 * getPeerCertificate(true) costs ~0.4 ms (Node completes the chain from the context's store), the leaf alone
 * ~0.06 ms. A path found from the leaf alone is the path the whole chain gives (the verifier tries anchors
 * first), so an acceptance is the same; any refusal is decided again by checkPeer on the whole chain, so
 * refusals are the same too. (Not getPeerX509Certificate: on a client socket Node 20 removes the leaf from
 * OpenSSL's peer chain, and later reads of the chain come back empty.)
 */
export function verifyPeer(
  socket: tls.TLSSocket,
  trust: Trust,
  expectations: Omit<PeerExpectations, 'anchors'>,
  now: Date,
): Verdict<VerifiedPeer> {
  const full: PeerExpectations = { ...expectations, anchors: trust.anchors };
  const raw = socket.getProtocol() === 'TLSv1.3' ? socket.getPeerCertificate(false)?.raw : undefined;
  if (raw && issuedByAnchor(raw, trust.issuers)) {
    const quick = verifyCertificateChain({ ...full, chain: [raw], now });
    if (quick.ok) return quick;
  }
  return checkPeer(socket, full, now);
}

function issuedByAnchor(raw: Buffer, issuers: readonly X509Certificate[]): boolean {
  try {
    const leaf = new X509Certificate(raw);
    return issuers.some((ca) => leaf.checkIssued(ca));
  } catch {
    return false;
  }
}
