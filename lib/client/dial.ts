/**
 * One relayed stream through one proxy (lib/protocol/relay.ts):
 *   1. outer mTLS to the proxy, ALPN RELAY_ALPN; the proxy's server cert must chain to a proxy PKI server CA
 *      of the grant, carry the proxy's URI and the host name we dialled (checkPeer, THE verifier); the grant's
 *      last session with that proxy is resumed when it can be, and its stored certificate judged again;
 *   2. the proxy's one status line: ok, or a refusal with a code (E_GATEWAY_OFFLINE, E_ROUTE_FORBIDDEN…);
 *   3. inner mTLS to the gateway over the same bytes, ALPN = mode; the gateway's cert must chain to the org
 *      gateway server CA and carry EXACTLY the gateway URI of the grant;
 *   4. in tcp, ping and health modes, the gateway's one status line inside the inner session: ok (tcp: the
 *      target accepted the connection), or its refusal with a code (E_TARGET_NOT_ALLOWED, E_GRANT_EXPIRED…).
 *      The caller's first bytes (`firstBytes`) go out before it, right after the inner handshake, and those that
 *      come while it is awaited follow them (`moreBytes`).
 * Every failure is a ConnectError naming the hop. Trying other proxies is the caller's business (connector.ts).
 * Steps 3 and 4 live in inner-session.ts, the status line and error mapping in relay-io.ts.
 * TLS contexts and parsed anchors come from grant-tls.ts: built once per grant, not per stream.
 */
import { once } from 'node:events';
import { isIP } from 'node:net';
import tls from 'node:tls';
import { instanceProxyUri, orgProxyUri } from '../pki/identity.js';
import type { VerifiedPeer } from '../pki/verify.js';
import { goAlpnOf, type ModeAlpn, modeOfAlpn, RELAY_ALPN } from '../protocol/relay.js';
import { ConnectError } from './errors.js';
import type { ClientGrant, ProxyEndpoint } from './grant.js';
import { type GrantTls, grantTls, verifyPeer } from './grant-tls.js';
import {
  answeredByGateway,
  handshakeInner,
  type InnerStep,
  type InnerStream,
  RELAY_ENDED,
  startInner,
} from './inner-session.js';
import { type Fail, parseAddress, readStatus, transportError, within } from './relay-io.js';

export const DEFAULT_STEP_TIMEOUT_MS = 10_000;

export interface DialOptions {
  now?: () => Date;
  /** Bound on each step (proxy connect + handshake, proxy status, inner handshake, gateway status). */
  stepTimeoutMs?: number;
  /**
   * Half-close (lib/protocol/splice.ts): the gateway's end-of-write leaves ours open until end(). Default off,
   * like a net socket: the stream ends both ways when the gateway ends its side.
   */
  allowHalfOpen?: boolean;
  /**
   * In tcp and ping modes, the user's first bytes: written into the inner session as soon as its handshake is
   * done and the gateway's certificate judged, before the gateway's status line arrives, instead of after it
   * (one one-way trip through the three processes less). The gateway holds them unread until the target
   * accepted the connection, and drops them with any refusal (lib/gateway/inner.ts). Asked once per inner
   * handshake: a stream dialled again (a fresh grant, another proxy) asks again and sends them again, so the
   * caller keeps them until the stream opened (RelayedStream.sentFirst says how many went).
   */
  firstBytes?: () => Buffer | undefined;
  /**
   * With firstBytes: calls `more` each time the caller's source may hold more bytes (forward.ts: the local
   * connection's buffer grew), until the returned function is called. While the gateway's status line is
   * awaited, firstBytes is asked again then (it returns everything so far, the bytes sent already first) and
   * what is new is written at once, inner-session.ts EARLY_BYTES_MAX in all: on a held session the stream starts
   * before the local client has written anything, and its bytes then follow GO instead of the status line.
   */
  moreBytes?: (more: () => void) => () => void;
}

export interface RelayedStream {
  /**
   * The end-to-end stream to the gateway (inner TLS), past the gateway's status line. Errors on it are raw.
   * Half-open when dialled with `allowHalfOpen`.
   */
  socket: tls.TLSSocket;
  /** The grant it was dialled with (a refusal arriving later on the stream may drop it: connector.ts). */
  grant: ClientGrant;
  proxy: ProxyEndpoint;
  gateway: VerifiedPeer;
  /** Milliseconds spent in each step (gatewayMs: inner handshake and the gateway's status line). */
  timings: { proxyMs: number; statusMs: number; gatewayMs: number };
  /** The relay was opened ahead of need (warm.ts): proxyMs and statusMs were spent before the stream was asked for. */
  warm?: boolean;
  /** The inner session resumed the grant's previous one (grant-tls.ts); the gateway admitted the grant anyway. */
  resumed: boolean;
  /** The outer session resumed the grant's previous one with this proxy; the proxy judged it as a full one. */
  outerResumed: boolean;
  /** Bytes of DialOptions.firstBytes written on this stream before the gateway's status line (0: none), those
   * written as they came (moreBytes) included. */
  sentFirst: number;
  /** Its inner session was held ahead with the relay (holdInner): only GO, the first bytes and the line were left. */
  held?: boolean;
}

/** Opens the outer session, reads the status line and runs the inner handshake. */
export async function dialViaProxy(
  grant: ClientGrant,
  proxy: ProxyEndpoint,
  mode: ModeAlpn,
  opts: DialOptions = {},
): Promise<RelayedStream> {
  return completeStream(await openRelay(grant, proxy, opts), mode, opts);
}

/**
 * Steps 1 and 2: an outer session the proxy has admitted and tied to a channel of the gateway's tunnel, whose
 * inner session is not started yet. The connector opens one ahead of need (warm.ts); completeStream finishes it.
 */
export interface OpenRelay {
  outer: tls.TLSSocket;
  /** Bytes read after the proxy's status line (normally none: the gateway speaks after our ClientHello). */
  rest: Buffer;
  grant: ClientGrant;
  proxy: ProxyEndpoint;
  halfOpen: boolean;
  timings: { proxyMs: number; statusMs: number };
  /** The outer session resumed the grant's previous one with this proxy. */
  outerResumed: boolean;
  /**
   * The inner session, run ahead too (holdInner): handshake done, the gateway's certificate judged, `<mode>+go`
   * negotiated; the gateway waits for GO before it judges the grant again and runs the mode (tcp: the target dial).
   */
  held?: HeldInner;
}

/** An inner session up and waiting for GO (lib/protocol/relay.ts `<mode>+go`), with how long its handshake took. */
export interface HeldInner extends InnerStream {
  handshakeMs: number;
  /** Taken for a stream: from now the relay's ends are the stream's (half-close), not the relay going. */
  use: () => void;
}

/** Steps 1 and 2: outer mTLS to the proxy (its certificate judged by THE verifier), then its status line. */
export async function openRelay(grant: ClientGrant, proxy: ProxyEndpoint, opts: DialOptions = {}): Promise<OpenRelay> {
  const now = opts.now ?? (() => new Date());
  const timeout = opts.stepTimeoutMs ?? DEFAULT_STEP_TIMEOUT_MS;
  const fail = failAt(grant, proxy);
  const material = materialOf(grant, fail);
  const halfOpen = opts.allowHalfOpen ?? false;
  const t0 = performance.now();
  const outer = await connectOuter(grant, material, proxy, now, timeout, fail, halfOpen);
  const t1 = performance.now();
  let rest: Buffer;
  try {
    rest = await readStatus(outer, 'proxy', timeout, fail);
  } catch (err) {
    outer.destroy();
    throw err;
  }
  const t2 = performance.now();
  // From here the inner session reports failures (its close and error); the outer one must not crash us.
  outer.on('error', () => undefined);
  const outerResumed = outer.isSessionReused();
  return { outer, rest, grant, proxy, halfOpen, timings: { proxyMs: t1 - t0, statusMs: t2 - t1 }, outerResumed };
}

/** Steps 3 and 4 on an open relay: inner mTLS with the gateway (judged by THE verifier), its status line. */
export async function completeStream(relay: OpenRelay, mode: ModeAlpn, opts: DialOptions = {}): Promise<RelayedStream> {
  const { grant, proxy } = relay;
  const now = opts.now ?? (() => new Date());
  const timeout = opts.stepTimeoutMs ?? DEFAULT_STEP_TIMEOUT_MS;
  const fail = failAt(grant, proxy);
  let material: GrantTls;
  try {
    material = materialOf(grant, fail);
  } catch (err) {
    relay.outer.destroy();
    throw err;
  }
  const t2 = performance.now();
  const step = { now, timeout, fail, firstBytes: opts.firstBytes, moreBytes: opts.moreBytes };
  const held = relay.held;
  const heldFor = held ? modeOfAlpn(held.socket.alpnProtocol) : undefined;
  if (held && heldFor !== mode) {
    // Held for another mode's `+go`: of no use to this one; a relay that went, so the caller dials again.
    relay.outer.destroy();
    throw fail('E_STREAM_CLOSED', 'gateway', `an inner session held for ${heldFor} cannot serve mode ${mode}`);
  }
  held?.use();
  if (held && (relay.outer.destroyed || held.socket.destroyed || held.socket.readableEnded)) {
    relay.outer.destroy();
    throw fail('E_STREAM_CLOSED', 'gateway', RELAY_ENDED);
  }
  // Nothing judged when the session was held is taken for granted: the gateway's certificate, by today's clock.
  const again = held?.rejudge?.();
  if (again && !again.ok) {
    relay.outer.destroy();
    throw answeredByGateway(fail(again.code, 'gateway', `gateway certificate: ${again.reason}`));
  }
  const inner = await startInner(
    held ?? (await handshakeInner(relay.outer, relay.rest, grant, material, mode, step)),
    mode,
    step,
    held !== undefined,
  );
  const t3 = performance.now();
  return {
    socket: inner.socket,
    grant,
    proxy,
    gateway: inner.peer,
    timings: { ...relay.timings, gatewayMs: t3 - t2 },
    resumed: inner.socket.isSessionReused(),
    outerResumed: relay.outerResumed,
    sentFirst: inner.sentFirst,
    ...(held ? { held: true } : {}),
  };
}

/**
 * The inner handshake of a relay opened ahead of need, run ahead too, for a tcp or ping grant whose gateway
 * negotiated `<mode>+go` before (grant-tls.ts innerGo): the mode starts (tcp: nothing reaches the target) only
 * when completeStream writes GO, and the gateway judges the grant again then. Only `<mode>+go` is offered: a
 * gateway that does not hold this session (at its max_held_sessions, or its operator turned held sessions off)
 * fails the handshake before it admits anything; offered the plain mode too, it would pick that and start the
 * mode as soon as it completed the handshake (tcp: a target dial nobody asked for). The relay is then gone and this throws (warm.ts holds none: the next stream
 * is dialled in full), and no relay of this grant is held ahead again until a stream negotiates `<mode>+go`.
 */
export async function holdInner(relay: OpenRelay, mode: ModeAlpn, opts: DialOptions = {}): Promise<OpenRelay> {
  const { grant, proxy } = relay;
  const step: InnerStep = {
    now: opts.now ?? (() => new Date()),
    timeout: opts.stepTimeoutMs ?? DEFAULT_STEP_TIMEOUT_MS,
    fail: failAt(grant, proxy),
    firstBytes: undefined,
  };
  const t0 = performance.now();
  let material: GrantTls;
  try {
    material = materialOf(grant, step.fail);
  } catch (err) {
    relay.outer.destroy();
    throw err;
  }
  const go = goAlpnOf(mode);
  if (!go) {
    relay.outer.destroy();
    throw step.fail('E_TARGET_NOT_ALLOWED', 'local', `mode ${mode} has no held variant: nothing held ahead`);
  }
  let inner: InnerStream;
  try {
    inner = await handshakeInner(relay.outer, relay.rest, grant, material, mode, step, true);
  } catch (err) {
    material.innerGo = false;
    throw err;
  }
  if (inner.socket.alpnProtocol !== go) {
    inner.socket.destroy();
    throw step.fail('E_TARGET_NOT_ALLOWED', 'gateway', `the gateway did not negotiate ${go}: nothing held ahead`);
  }
  // Held, unused: a close or error now is the relay going (warm.ts lets it go), never a crash. An end from the
  // proxy (it cut the relay: the outer certificate revoked) or the gateway (its timeout) is not seen by the inner
  // session until something reads it, so it ends both sockets now: warm.ts then finds the relay gone.
  inner.socket.on('error', () => undefined);
  const gone = () => {
    inner.socket.destroy();
    relay.outer.destroy();
  };
  relay.outer.once('end', gone);
  relay.outer.once('close', gone);
  inner.socket.once('end', gone);
  inner.socket.once('close', gone);
  const use = () => {
    relay.outer.off('end', gone);
    relay.outer.off('close', gone);
    inner.socket.off('end', gone);
    inner.socket.off('close', gone);
  };
  // Cut in the same read as the handshake's end, its end was emitted before anything listened for it.
  if (inner.socket.readableEnded) gone();
  return { ...relay, held: { ...inner, handshakeMs: performance.now() - t0, use } };
}

function failAt(grant: ClientGrant, proxy: ProxyEndpoint): Fail {
  return (code, hop, detail, cause) =>
    new ConnectError(code, hop, detail, {
      proxyId: proxy.proxyId,
      ...(hop === 'gateway' ? { gatewayId: grant.spec.gatewayId } : {}),
      ...(cause === undefined ? {} : { cause }),
    });
}

function materialOf(grant: ClientGrant, fail: Fail): GrantTls {
  try {
    return grantTls(grant);
  } catch (err) {
    throw fail('E_CERT_MALFORMED', 'local', `the grant's key or certificates do not load: ${(err as Error).message}`);
  }
}

/**
 * Half-close: the proxy's end-of-write must not end ours, and the inner session inherits the setting from the
 * outer one. tls.connect reads it; @types/node 20 does not list it.
 */
const HALF_OPEN = { allowHalfOpen: true } as tls.ConnectionOptions;

async function connectOuter(
  grant: ClientGrant,
  material: GrantTls,
  proxy: ProxyEndpoint,
  now: () => Date,
  timeout: number,
  fail: Fail,
  halfOpen: boolean,
): Promise<tls.TLSSocket> {
  let secureContext: tls.SecureContext | undefined;
  try {
    secureContext = material.outer(proxy.scope);
  } catch (err) {
    throw fail('E_CERT_MALFORMED', 'local', `the grant's outer certificate does not load: ${(err as Error).message}`);
  }
  if (!secureContext) throw fail('E_CERT_WRONG_TYPE', 'local', `no outer certificate for ${proxy.scope} proxies`);
  const addr = parseAddress(proxy.tlsAddress);
  if (!addr) throw fail('E_PROXY_UNREACHABLE', 'proxy', `bad proxy address ${JSON.stringify(proxy.tlsAddress)}`);
  // The proxy's last session for this grant (grant-tls.ts outerSessions), kept with the certificate accepted.
  const sessionKey = `${proxy.proxyId} ${proxy.tlsAddress}`;
  const offered = material.outerSessions.get(sessionKey);
  // Identity is judged by verifyPeer (THE verifier), not by Node; SNI is a host name, never an IP literal.
  const socket = tls.connect({
    secureContext,
    host: addr.host,
    port: addr.port,
    ...(isIP(proxy.hostname) === 0 ? { servername: proxy.hostname } : {}),
    ALPNProtocols: [RELAY_ALPN],
    rejectUnauthorized: false,
    checkServerIdentity: () => undefined,
    ...(halfOpen ? HALF_OPEN : {}),
    ...(offered ? { session: offered.ticket } : {}),
  });
  // A ticket is kept only from a proxy whose certificate we accepted; it may come before or after the check.
  let proxyLeaf: Buffer | undefined;
  let ticket: Buffer | undefined;
  socket.on('session', (session: Buffer) => {
    if (proxyLeaf) material.outerSessions.set(sessionKey, { ticket: session, peerLeaf: proxyLeaf });
    else ticket = session;
  });
  // Interactive protocols (psql, HTTP) write small records: do not let Nagle hold them for an ACK.
  socket.setNoDelay(true);
  try {
    await within(once(socket, 'secureConnect'), timeout, () =>
      fail('E_TIMEOUT', 'proxy', `no TLS session with ${proxy.tlsAddress} within ${timeout} ms`),
    );
  } catch (err) {
    socket.destroy();
    throw err instanceof ConnectError ? err : transportError(err, 'proxy', fail);
  }
  // The proxy's URI follows from the list the CA gave us: an org proxy of our org, or an instance proxy.
  const expectedUri =
    proxy.scope === 'instance'
      ? instanceProxyUri(grant.trustDomain, proxy.proxyId)
      : orgProxyUri(grant.trustDomain, grant.spec.orgId, proxy.proxyId);
  const v = verifyPeer(
    socket,
    material.proxyTrust,
    { purpose: 'serverAuth', expectedHost: proxy.hostname, expectedUri },
    now(),
    offered,
  );
  const resumed = socket.isSessionReused() && offered !== undefined;
  if (!v.ok) {
    socket.destroy();
    // A resumed session judged on its stored certificate and refused: not offered again.
    if (resumed && material.outerSessions.get(sessionKey) === offered) material.outerSessions.delete(sessionKey);
    throw fail(v.code, 'proxy', `proxy server certificate: ${v.reason}`);
  }
  proxyLeaf = resumed ? offered.peerLeaf : socket.getPeerCertificate(false)?.raw;
  if (ticket && proxyLeaf) material.outerSessions.set(sessionKey, { ticket, peerLeaf: proxyLeaf });
  if (socket.alpnProtocol !== RELAY_ALPN) {
    socket.destroy();
    throw fail('E_ROUTE_FORBIDDEN', 'proxy', `proxy did not select ALPN ${RELAY_ALPN}`);
  }
  return socket;
}
