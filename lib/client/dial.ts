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
 *      The caller's first bytes (`firstBytes`) go out before it, right after the inner handshake.
 * Every failure is a ConnectError naming the hop. Trying other proxies is the caller's business (connector.ts).
 * TLS contexts and parsed anchors come from grant-tls.ts: built once per grant, not per stream.
 */
import { once } from 'node:events';
import { isIP } from 'node:net';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { ErrorCode, Verdict } from '../errors/codes.js';
import { instanceProxyUri, orgProxyUri } from '../pki/identity.js';
import type { VerifiedPeer } from '../pki/verify.js';
import {
  decodeStatus,
  GO_ALPN,
  GO_BYTE,
  MAX_STATUS_LINE,
  type ModeAlpn,
  modeHasStatus,
  RELAY_ALPN,
  type StatusPeer,
} from '../protocol/relay.js';
import { ConnectError, type Hop } from './errors.js';
import type { ClientGrant, ProxyEndpoint } from './grant.js';
import { type GrantTls, grantTls, verifyPeer } from './grant-tls.js';

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
  /** Bytes of DialOptions.firstBytes written on this stream before the gateway's status line (0: none). */
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
   * The inner session, run ahead too (holdInner): handshake done, the gateway's certificate judged, `tcp+go`
   * negotiated; the gateway waits for GO before it judges the grant again and dials the target.
   */
  held?: HeldInner;
}

/** An inner session up and waiting for GO (lib/protocol/relay.ts `tcp+go`), with how long its handshake took. */
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
  const step = { now, timeout, fail, firstBytes: opts.firstBytes };
  const held = relay.held;
  if (held && mode !== 'tcp') {
    // Held for `tcp+go`: of no use to another mode; a relay that went, so the caller dials again.
    relay.outer.destroy();
    throw fail('E_STREAM_CLOSED', 'gateway', `an inner session held for tcp cannot serve mode ${mode}`);
  }
  held?.use();
  if (held && relay.outer.destroyed) throw fail('E_STREAM_CLOSED', 'gateway', 'the held relay went while it waited');
  // Nothing judged when the session was held is taken for granted: the gateway's certificate, by today's clock.
  const again = held?.rejudge?.();
  if (again && !again.ok) {
    relay.outer.destroy();
    const refused = fail(again.code, 'gateway', `gateway certificate: ${again.reason}`);
    GATEWAY_ANSWERED.add(refused);
    throw refused;
  }
  const inner = held
    ? await startInner(held, mode, step, true)
    : await connectInner(relay.outer, relay.rest, grant, material, mode, step);
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
 * The inner handshake of a relay opened ahead of need, run ahead too, for a tcp grant whose gateway negotiated
 * `tcp+go` before (grant-tls.ts innerGo): nothing reaches the target until completeStream writes GO, and the
 * gateway judges the grant again then. Resolves with the relay unchanged when the gateway did not negotiate
 * `tcp+go` this time (an older gateway after all): impossible to use ahead, the relay is ended and this throws.
 */
export async function holdInner(relay: OpenRelay, opts: DialOptions = {}): Promise<OpenRelay> {
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
  const inner = await handshakeInner(relay.outer, relay.rest, grant, material, 'tcp', step);
  if (inner.socket.alpnProtocol !== GO_ALPN) {
    inner.socket.destroy();
    throw step.fail('E_TARGET_NOT_ALLOWED', 'gateway', 'the gateway did not negotiate tcp+go: nothing held ahead');
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
  const use = () => {
    relay.outer.off('end', gone);
    relay.outer.off('close', gone);
    inner.socket.off('end', gone);
  };
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

type Fail = (code: ErrorCode, hop: Hop, detail: string, cause?: unknown) => ConnectError;

/** What the inner steps share: the clock, the step bound, the error maker, the caller's first bytes. */
interface InnerStep {
  now: () => Date;
  timeout: number;
  fail: Fail;
  firstBytes: DialOptions['firstBytes'];
}

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

/**
 * Reads a status line (the proxy's on the outer session, the gateway's inside the inner one), bounded in size
 * and time. Resolves with nothing left unread: bytes after the line are pushed back into `socket`. Uses
 * 'readable' rather than 'data' so that the socket is handed back neither flowing nor paused: the caller's
 * first 'data' listener or pipe() starts it.
 */
function readStatus(socket: tls.TLSSocket, from: StatusPeer, timeout: number, fail: Fail): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    let buf = Buffer.alloc(0);
    const timer = setTimeout(() => done(fail('E_TIMEOUT', from, noLine(from, timeout))), timeout);
    const onReadable = () => {
      for (let chunk = socket.read() as Buffer | null; chunk !== null; chunk = socket.read() as Buffer | null) {
        buf = Buffer.concat([buf, chunk]);
        const decoded = decodeStatus(buf.subarray(0, MAX_STATUS_LINE), from);
        if (!decoded) continue;
        if (decoded.status.ok) done(null, Buffer.concat([decoded.rest, buf.subarray(MAX_STATUS_LINE)]));
        else {
          const refused = fail(decoded.status.code, from, decoded.status.message);
          TOLD.add(refused);
          done(refused);
        }
        return;
      }
    };
    const onEnd = () => done(closedBeforeLine(from, fail));
    const onError = (err: Error) => done(transportError(err, from, fail));
    const done = (err: ConnectError | null, rest?: Buffer) => {
      clearTimeout(timer);
      socket.off('readable', onReadable);
      socket.off('end', onEnd);
      socket.off('close', onEnd);
      socket.off('error', onError);
      if (err) return reject(err);
      resolve(rest ?? Buffer.alloc(0));
    };
    socket.on('readable', onReadable);
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', onError);
  });
}

function noLine(from: StatusPeer, timeout: number): string {
  return from === 'proxy'
    ? `no status line within ${timeout} ms`
    : `no status line from the gateway within ${timeout} ms (it may still be connecting to the target)`;
}

function closedBeforeLine(from: StatusPeer, fail: Fail): ConnectError {
  if (from === 'proxy')
    return fail('E_PROXY_UNREACHABLE', 'proxy', 'proxy closed the connection before its status line');
  // The gateway tells every refusal except one of our certificate (not its CA, no grant): see its audit log.
  return fail(
    'E_STREAM_CLOSED',
    'gateway',
    'the gateway closed the stream before its status line: it did not accept our inner certificate (its audit log has the code)',
  );
}

async function connectInner(
  outer: tls.TLSSocket,
  rest: Buffer,
  grant: ClientGrant,
  material: GrantTls,
  mode: ModeAlpn,
  step: InnerStep,
): Promise<InnerStream> {
  return startInner(await handshakeInner(outer, rest, grant, material, mode, step), mode, step, false);
}

/** Step 3: the inner handshake, the gateway's certificate judged and its ALPN checked; nothing written yet. */
async function handshakeInner(
  outer: tls.TLSSocket,
  rest: Buffer,
  grant: ClientGrant,
  material: GrantTls,
  mode: ModeAlpn,
  step: InnerStep,
): Promise<InnerStream> {
  const { timeout, fail } = step;
  // The gateway speaks only after our ClientHello, so `rest` is normally empty; keep it if not.
  if (rest.length > 0) outer.unshift(rest);
  const offered = material.innerSession;
  const socket = tls.connect({
    socket: outer as Duplex,
    secureContext: material.inner,
    // A new gateway picks `tcp+go` (its preference), an older one `tcp`.
    ALPNProtocols: mode === 'tcp' ? [GO_ALPN, mode] : [mode],
    rejectUnauthorized: false,
    checkServerIdentity: () => undefined,
    ...(offered ? { session: offered.ticket } : {}),
  });
  socket.once('close', () => outer.destroy());
  // A ticket is kept (grant-tls.ts) only from a gateway whose certificate we accepted; it may come before or after.
  let gatewayLeaf: Buffer | undefined;
  let ticket: Buffer | undefined;
  socket.on('session', (session: Buffer) => {
    if (gatewayLeaf) material.innerSession = { ticket: session, peerLeaf: gatewayLeaf };
    else ticket = session;
  });
  try {
    await within(once(socket, 'secureConnect'), timeout, () =>
      fail('E_TIMEOUT', 'gateway', `no inner TLS session with the gateway within ${timeout} ms`),
    );
  } catch (err) {
    socket.destroy();
    throw err instanceof ConnectError ? err : transportError(err, 'gateway', fail);
  }
  try {
    const inner = judgeGateway(socket, grant, material, mode, step, offered, (leaf) => {
      gatewayLeaf = leaf;
      if (ticket && leaf) material.innerSession = { ticket, peerLeaf: leaf };
    });
    // The same judgement, with the clock of a later moment: a session held ahead is judged again when used.
    const rejudge = () =>
      verifyPeer(
        socket,
        material.gatewayTrust,
        { purpose: 'serverAuth', expectedUri: grant.gatewayUri },
        step.now(),
        offered,
      );
    return { ...inner, rejudge };
  } catch (err) {
    if (err instanceof ConnectError) GATEWAY_ANSWERED.add(err);
    throw err;
  }
}

/**
 * Failures after the inner handshake completed: the gateway's own answer (its certificate, its mode, its status
 * line or its refusal by closing). A relay held ahead of need that fails this way is not dialled again (it would
 * ask the gateway the same question twice: a second target dial, a second refusal); one that fails earlier went
 * while it waited (connector.ts).
 */
const GATEWAY_ANSWERED = new WeakSet<ConnectError>();

/** True when `err` is the gateway's answer to a completed inner handshake, not a relay that went. */
export function gatewayAnswered(err: unknown): boolean {
  return err instanceof ConnectError && GATEWAY_ANSWERED.has(err);
}

function judgeGateway(
  socket: tls.TLSSocket,
  grant: ClientGrant,
  material: GrantTls,
  mode: ModeAlpn,
  step: InnerStep,
  offered: GrantTls['innerSession'],
  accepted: (gatewayLeaf: Buffer | undefined) => void,
): InnerStream {
  const { now, fail } = step;
  // EXACT identity: a cert of another gateway, or of another org's CA, is refused here.
  const v = verifyPeer(
    socket,
    material.gatewayTrust,
    { purpose: 'serverAuth', expectedUri: grant.gatewayUri },
    now(),
    offered,
  );
  if (!v.ok) {
    socket.destroy();
    // A resumed session judged on its stored certificate and refused: not offered again (a full handshake sees
    // the gateway's whole chain).
    if (socket.isSessionReused() && offered && material.innerSession === offered) material.innerSession = undefined;
    throw fail(v.code, 'gateway', `gateway certificate: ${v.reason}`);
  }
  accepted(socket.isSessionReused() && offered ? offered.peerLeaf : socket.getPeerCertificate(false)?.raw);
  const go = mode === 'tcp' && socket.alpnProtocol === GO_ALPN;
  if (socket.alpnProtocol !== mode && !go) {
    socket.destroy();
    throw fail('E_TARGET_NOT_ALLOWED', 'gateway', `gateway did not accept mode ${mode}`);
  }
  // Remembered with the grant: the next relay opened ahead for it may hold its inner session too (warm.ts).
  if (go) material.innerGo = true;
  return { socket, peer: v.value, sentFirst: 0 };
}

/**
 * Step 4 on a judged inner session: GO when `tcp+go` was negotiated, the caller's first bytes, the gateway's
 * status line. On a session held ahead (`held`), a close before the line is the relay going while it waited
 * (dialled again: connector.ts); any status line is the gateway's answer.
 */
async function startInner(inner: InnerStream, mode: ModeAlpn, step: InnerStep, held: boolean): Promise<InnerStream> {
  const { socket } = inner;
  const { timeout, fail } = step;
  let sentFirst = 0;
  if (modeHasStatus(mode)) {
    // Only to the gateway just judged ours, and never in health mode, whose document is all there is.
    const first = mode === 'health' ? undefined : step.firstBytes?.();
    const go = socket.alpnProtocol === GO_ALPN ? GO : undefined;
    if (first && first.length > 0) {
      socket.write(go ? Buffer.concat([go, first]) : first);
      sentFirst = first.length;
    } else if (go) socket.write(go);
    try {
      const after = await readStatus(socket, 'gateway', timeout, fail);
      if (after.length > 0) socket.unshift(after);
    } catch (err) {
      socket.destroy();
      // Held: a refusal line (or the gateway's silence past the bound) is its answer; the relay closing or
      // failing under GO (cut by the proxy, ended by the gateway's timeout while it waited) is a relay gone.
      const gone = held && err instanceof ConnectError && !TOLD.has(err) && err.code !== 'E_TIMEOUT';
      if (err instanceof ConnectError && !gone) GATEWAY_ANSWERED.add(err);
      throw err;
    }
  }
  return { ...inner, sentFirst };
}

const GO = Buffer.from([GO_BYTE]);

/** Refusals read from a status line (readStatus): the peer's own answer. */
const TOLD = new WeakSet<ConnectError>();

interface InnerStream {
  socket: tls.TLSSocket;
  peer: VerifiedPeer;
  sentFirst: number;
  /** The gateway's certificate judged again now (a session held ahead, when a stream takes it). */
  rejudge?: () => Verdict<VerifiedPeer>;
}

/** TLS alerts, by the OpenSSL reason Node puts in err.code, as what they mean at each hop. */
const ALERTS: Record<string, { proxy: ErrorCode; gateway: ErrorCode }> = {
  CERTIFICATE_EXPIRED: { proxy: 'E_CERT_EXPIRED', gateway: 'E_GRANT_EXPIRED' },
  CERTIFICATE_REVOKED: { proxy: 'E_CERT_REVOKED', gateway: 'E_CERT_REVOKED' },
  UNKNOWN_CA: { proxy: 'E_CERT_UNTRUSTED', gateway: 'E_CERT_UNTRUSTED' },
  BAD_CERTIFICATE: { proxy: 'E_CERT_UNTRUSTED', gateway: 'E_CERT_UNTRUSTED' },
  CERTIFICATE_REQUIRED: { proxy: 'E_CERT_UNTRUSTED', gateway: 'E_GRANT_MISSING' },
  ACCESS_DENIED: { proxy: 'E_ROUTE_FORBIDDEN', gateway: 'E_TARGET_NOT_ALLOWED' },
  NO_APPLICATION_PROTOCOL: { proxy: 'E_ROUTE_FORBIDDEN', gateway: 'E_TARGET_NOT_ALLOWED' },
  PROTOCOL_VERSION: { proxy: 'E_CERT_WEAK_ALGORITHM', gateway: 'E_CERT_WEAK_ALGORITHM' },
  HANDSHAKE_FAILURE: { proxy: 'E_ROUTE_FORBIDDEN', gateway: 'E_CERT_UNTRUSTED' },
};

const UNREACHABLE = new Set(['ECONNREFUSED', 'ECONNRESET', 'EHOSTUNREACH', 'ENETUNREACH', 'ENOTFOUND', 'EPIPE']);

/** Maps a socket or TLS error at `hop` to a ConnectError. */
export function transportError(err: unknown, hop: Hop, fail: Fail): ConnectError {
  const e = err as NodeJS.ErrnoException;
  const code = e?.code ?? '';
  const alert = /ALERT_([A-Z_]+)$/.exec(code)?.[1];
  if (alert) {
    const mapped = ALERTS[alert];
    const side = hop === 'gateway' ? 'gateway' : 'proxy';
    return fail(
      mapped ? mapped[side] : 'E_CERT_UNTRUSTED',
      hop,
      `TLS alert ${alert.toLowerCase()} from the ${side}`,
      err,
    );
  }
  if (
    UNREACHABLE.has(code) ||
    code === 'ERR_SSL_WRONG_VERSION_NUMBER' ||
    /socket disconnected/i.test(e?.message ?? '')
  ) {
    const what = hop === 'gateway' ? 'the relayed connection closed during the gateway handshake' : 'proxy unreachable';
    return fail(
      hop === 'gateway' ? 'E_GATEWAY_OFFLINE' : 'E_PROXY_UNREACHABLE',
      hop,
      `${what}: ${e?.message ?? code}`,
      err,
    );
  }
  return fail('E_PROXY_UNREACHABLE', hop, e?.message ?? String(err), err);
}

/** `host:port` or `[v6]:port`. */
export function parseAddress(addr: string): { host: string; port: number } | null {
  const m = /^(?:\[([0-9A-Fa-f:.]+)\]|([^:[\]\s]+)):(\d{1,5})$/.exec(addr);
  if (!m) return null;
  const port = Number(m[3]);
  if (port < 1 || port > 65535) return null;
  return { host: (m[1] ?? m[2])!, port };
}

function within<T>(p: Promise<T>, ms: number, onTimeout: () => Error): Promise<T> {
  let timer: NodeJS.Timeout | undefined;
  const t = new Promise<never>((_, reject) => {
    timer = setTimeout(() => reject(onTimeout()), ms);
  });
  return Promise.race([p, t]).finally(() => clearTimeout(timer));
}
