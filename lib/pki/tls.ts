/**
 * mTLS glue for Node's `tls`: options for listeners and dialers, and `checkPeer`, the one path from a TLS socket
 * to THE verifier (verify.ts). OpenSSL's own chain check is switched off (rejectUnauthorized: false) so that the
 * decision, its clock and its error code are ours; the handshake still proves the peer holds the cert's key.
 * A socket is therefore untrusted until checkPeer accepts it: use `onVerifiedConnection` / `connectVerified`,
 * or call checkPeer yourself in 'secureConnection' / 'secureConnect' before reading or writing a byte.
 */
import { constants, type KeyObject } from 'node:crypto';
import { once } from 'node:events';
import tls from 'node:tls';
import { type ErrorCode, GatewayError, refuse, type Verdict } from '../errors/codes.js';
import { type VerifiedPeer, type VerifyOptions, verifyCertificateChain } from './verify.js';

export interface MtlsCredentials {
  /** Our private key. */
  key: KeyObject | string;
  /** Our certificate chain as PEM, leaf first (a bundle or a list). */
  chain: string | readonly string[];
  /** PEM certificates of the CAs the peer's chain must end at (also advertised to clients). */
  anchors: string | readonly string[];
  /** ALPN protocols, in preference order. */
  alpn?: readonly string[];
}

/** Everything the verifier needs except the chain and the clock, which come from the socket and the caller. */
export type PeerExpectations = Omit<VerifyOptions, 'chain' | 'now'>;

const MAX_PEER_CHAIN = 8;

function common(c: MtlsCredentials) {
  const key = typeof c.key === 'string' ? c.key : (c.key.export({ type: 'pkcs8', format: 'pem' }) as string);
  const opts: tls.SecureContextOptions & { ALPNProtocols?: string[] } = {
    key,
    cert: typeof c.chain === 'string' ? c.chain : c.chain.join(''),
    ca: typeof c.anchors === 'string' ? c.anchors : [...c.anchors],
    minVersion: 'TLSv1.3',
  };
  if (c.alpn?.length) opts.ALPNProtocols = [...c.alpn];
  return opts;
}

/**
 * Options for `tls.createServer`: TLS 1.3 only, client certificate requested. SSL_OP_NO_TICKET: under TLS 1.3 it
 * asks for stateful tickets, which Node never looks up, so a resumption attempt always gets a full handshake and
 * every connection has its certificates judged again with the current clock.
 */
export function mtlsServerOptions(c: MtlsCredentials): tls.TlsOptions {
  return {
    ...common(c),
    requestCert: true,
    rejectUnauthorized: false,
    // No resumption: every connection gets a full handshake, so checkPeer always sees the whole chain and
    // judges it with today's clock and revocation list.
    secureOptions: constants.SSL_OP_NO_TICKET,
  };
}

/**
 * mtlsServerOptions with TLS 1.3 resumption by stateless tickets, for a listener that judges the peer on EVERY
 * connection, resumed or not, with the certificate the session carries (a resumed session presents the same
 * leaf; its chain is found again from the anchors): resumption saves the handshake's signatures and
 * certificate messages, never a decision. Tickets are sealed with keys of this context only (a reload makes
 * new ones, and old tickets then get a full handshake) and are accepted for `ticketLifetimeSec` at most. A
 * session id context is required: with a client certificate requested, OpenSSL refuses to resume without one
 * (an internal error alert).
 */
export function mtlsResumableServerOptions(c: MtlsCredentials, ticketLifetimeSec: number): tls.TlsOptions {
  const { secureOptions: _noTicket, ...options } = mtlsServerOptions(c);
  return { ...options, sessionIdContext: 'infisical-mtls', sessionTimeout: ticketLifetimeSec };
}

/** Options for `tls.connect`. `servername` is sent as SNI; identity is checked by checkPeer, not by Node. */
export function mtlsClientOptions(
  c: MtlsCredentials & { host: string; port: number; servername?: string },
): tls.ConnectionOptions {
  const opts: tls.ConnectionOptions = {
    ...common(c),
    host: c.host,
    port: c.port,
    rejectUnauthorized: false,
    checkServerIdentity: () => undefined,
  };
  // SNI must be a host name, never an IP literal (RFC 6066).
  const sni = c.servername ?? c.host;
  if (!/^[0-9.]+$/.test(sni) && !sni.includes(':')) opts.servername = sni;
  return opts;
}

/**
 * The peer's certificates as DER, leaf first, following Node's issuer links (bounded). The one place a chain is
 * read off a socket: THE verifier's listeners and the CA client's pin check both use it.
 */
export function peerChain(socket: tls.TLSSocket): Buffer[] {
  const out: Buffer[] = [];
  let cert = socket.getPeerCertificate(true) as tls.DetailedPeerCertificate | Record<string, never>;
  while (cert && 'raw' in cert && cert.raw && out.length < MAX_PEER_CHAIN) {
    if (out.some((b) => b.equals(cert.raw))) break; // a self-signed root links to itself
    out.push(cert.raw);
    cert = cert.issuerCertificate;
  }
  return out;
}

/**
 * A decision on the peer's certificates, made first on the peer's leaf alone: building Node's chain objects
 * (getPeerCertificate(true), ~0.4 ms on a client socket against ~0.06 ms for the leaf) was the costliest step of
 * a stream's setup. A path found from the leaf alone is the path the whole chain gives (THE verifier tries the
 * anchors first), so an acceptance is the same; any refusal is decided again on the whole chain the peer sent,
 * so refusals are the same too. (Not getPeerX509Certificate: in Node 20, after it, getPeerCertificate(true) loses
 * the certificates the peer sent.)
 */
export function decideLeafFirst<T>(
  socket: tls.TLSSocket,
  decide: (chain: readonly Buffer[]) => Verdict<T>,
): Verdict<T> {
  const leaf = socket.getPeerCertificate(false)?.raw;
  if (leaf) {
    const quick = decide([leaf]);
    if (quick.ok) return quick;
  }
  return decide(peerChain(socket));
}

/**
 * Verifies the peer of an established TLS socket with THE verifier; `leafFirst` decides on the leaf alone first
 * (decideLeafFirst: the same verdict, for less work on the paths that set up a stream per connection).
 */
export function checkPeer(
  socket: tls.TLSSocket,
  expectations: PeerExpectations,
  now: Date,
  options: { leafFirst?: boolean } = {},
): Verdict<VerifiedPeer> {
  if (socket.getProtocol() !== 'TLSv1.3') return refuse('E_CERT_USAGE', `protocol ${socket.getProtocol()} refused`);
  const decide = (chain: readonly Buffer[]): Verdict<VerifiedPeer> =>
    chain.length === 0
      ? refuse('E_CERT_UNTRUSTED', 'peer presented no certificate')
      : verifyCertificateChain({ ...expectations, chain, now });
  return options.leafFirst ? decideLeafFirst(socket, decide) : decide(peerChain(socket));
}

/**
 * Calls `handler` for connections whose peer the verifier accepted; others are destroyed before any byte is
 * read, and reported to `onRefused`. `expectations` may depend on the socket (e.g. on the ALPN protocol).
 */
export function onVerifiedConnection(
  server: tls.Server,
  expectations: PeerExpectations | ((socket: tls.TLSSocket) => PeerExpectations),
  clock: () => Date,
  handler: (socket: tls.TLSSocket, peer: VerifiedPeer) => void,
  onRefused?: (socket: tls.TLSSocket, code: ErrorCode, reason: string) => void,
): void {
  server.on('secureConnection', (socket: tls.TLSSocket) => {
    const exp = typeof expectations === 'function' ? expectations(socket) : expectations;
    const v = checkPeer(socket, exp, clock());
    if (v.ok) {
      handler(socket, v.value);
      return;
    }
    onRefused?.(socket, v.code, v.reason);
    socket.destroy();
  });
}

/** Connects and resolves only once the server's certificate passed the verifier; rejects with a GatewayError. */
export async function connectVerified(
  options: tls.ConnectionOptions,
  expectations: PeerExpectations,
  clock: () => Date,
): Promise<{ socket: tls.TLSSocket; peer: VerifiedPeer }> {
  const socket = tls.connect(options);
  try {
    await once(socket, 'secureConnect');
  } catch (err) {
    socket.destroy();
    throw err;
  }
  const v = checkPeer(socket, expectations, clock());
  if (!v.ok) {
    socket.destroy();
    throw new GatewayError(v.code, v.reason);
  }
  return { socket, peer: v.value };
}
