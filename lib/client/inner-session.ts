/**
 * Steps 3 and 4 of a relayed stream (dial.ts): the inner mTLS session with the gateway over the relay's bytes,
 * the gateway's certificate judged by THE verifier (EXACTLY the grant's gateway URI), its ALPN checked; then GO
 * when the held variant (`tcp+go`, `ping+go`) was negotiated, the caller's first bytes and the gateway's status
 * line. A session held ahead (dial.ts holdInner) runs the handshake now and the rest when a stream takes it.
 */
import { once } from 'node:events';
import type { Duplex } from 'node:stream';
import tls from 'node:tls';
import type { Verdict } from '../errors/codes.js';
import { type VerifiedPeer, verifyAgain } from '../pki/verify.js';
import { GO_BYTE, goAlpnOf, isGoAlpn, type ModeAlpn, modeHasStatus } from '../protocol/relay.js';
import { ConnectError } from './errors.js';
import type { ClientGrant } from './grant.js';
import { type GrantTls, verifyPeer } from './grant-tls.js';
import { type Fail, readStatus, toldByPeer, transportError, within } from './relay-io.js';

export /** What the inner steps share: the clock, the step bound, the error maker, the caller's first bytes. */
interface InnerStep {
  now: () => Date;
  timeout: number;
  fail: Fail;
  /** DialOptions.firstBytes. */
  firstBytes: (() => Buffer | undefined) | undefined;
  /** DialOptions.moreBytes. */
  moreBytes?: ((more: () => void) => () => void) | undefined;
}

/**
 * At most this many of the caller's early bytes go before the gateway's status line (first bytes and those that
 * follow them meanwhile); the rest waits for the line. The gateway holds them unread until the target accepted
 * the connection (lib/gateway/inner.ts), and they stay in the caller's buffer until the stream opened: forward.ts
 * reads its local connections this far ahead (LOCAL_READ_AHEAD), so a client that sends more gets to the cap.
 */
export const EARLY_BYTES_MAX = 64 * 1024;

/** A relay (its outer session, or its held inner one) that ended before the stream could use it. */
export const RELAY_ENDED =
  'the relay ended before the stream used it (cut by the proxy or the gateway while it waited)';

export interface InnerStream {
  socket: tls.TLSSocket;
  peer: VerifiedPeer;
  sentFirst: number;
  /** The gateway's certificate judged again now (a session held ahead, when a stream takes it). */
  rejudge?: () => Verdict<VerifiedPeer>;
}

/**
 * Step 3: the inner handshake, the gateway's certificate judged and its ALPN checked; nothing written yet. With
 * `holdOnly` (a session to hold ahead of need: dial.ts holdInner) only `<mode>+go` is offered, so a gateway that
 * will not hold it (at its max_held_sessions, or holding none) fails the handshake instead of starting the mode.
 */
export async function handshakeInner(
  outer: tls.TLSSocket,
  rest: Buffer,
  grant: ClientGrant,
  material: GrantTls,
  mode: ModeAlpn,
  step: InnerStep,
  holdOnly = false,
): Promise<InnerStream> {
  const { timeout, fail } = step;
  // A relay whose end came while it waited (the proxy cut it) carries no handshake: the inner session would wrap a
  // stream that has delivered its last byte and wait out the whole bound for the gateway's answer.
  if (outer.destroyed || outer.readableEnded) throw fail('E_STREAM_CLOSED', 'gateway', RELAY_ENDED);
  // The gateway speaks only after our ClientHello, so `rest` is normally empty; keep it if not.
  if (rest.length > 0) outer.unshift(rest);
  const offered = material.innerSession;
  const go = goAlpnOf(mode);
  const socket = tls.connect({
    socket: outer as Duplex,
    secureContext: material.inner,
    // A new gateway picks `<mode>+go` (its preference), an older one (or one not holding sessions) the mode.
    ALPNProtocols: go ? (holdOnly ? [go] : [go, mode]) : [mode],
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
    // The same judgement, with the clock of a later moment: a session held ahead is judged again when used, on
    // the certificate verified now (THE verifier's verifyAgain: a session's certificate cannot change).
    const expected = gatewayCert(grant);
    const rejudge = () => {
      const now = step.now();
      return (
        verifyAgain(inner.peer, { ...expected, anchors: material.gatewayTrust.anchors, now }) ??
        verifyPeer(socket, material.gatewayTrust, expected, now, offered)
      );
    };
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

/** Marks `err` as the gateway's answer (see GATEWAY_ANSWERED); returns it. */
export function answeredByGateway(err: ConnectError): ConnectError {
  GATEWAY_ANSWERED.add(err);
  return err;
}

/** True when `err` is the gateway's answer to a completed inner handshake, not a relay that went. */
export function gatewayAnswered(err: unknown): boolean {
  return err instanceof ConnectError && GATEWAY_ANSWERED.has(err);
}

/** What THE verifier is asked of the gateway's inner certificate, at the handshake and again when used. */
function gatewayCert(grant: ClientGrant) {
  return { purpose: 'serverAuth', expectedUri: grant.gatewayUri } as const;
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
  const v = verifyPeer(socket, material.gatewayTrust, gatewayCert(grant), now(), offered);
  if (!v.ok) {
    socket.destroy();
    // A resumed session judged on its stored certificate and refused: not offered again (a full handshake sees
    // the gateway's whole chain).
    if (socket.isSessionReused() && offered && material.innerSession === offered) material.innerSession = undefined;
    throw fail(v.code, 'gateway', `gateway certificate: ${v.reason}`);
  }
  accepted(socket.isSessionReused() && offered ? offered.peerLeaf : socket.getPeerCertificate(false)?.raw);
  const go = socket.alpnProtocol === goAlpnOf(mode);
  if (socket.alpnProtocol !== mode && !go) {
    socket.destroy();
    throw fail('E_TARGET_NOT_ALLOWED', 'gateway', `gateway did not accept mode ${mode}`);
  }
  // Remembered with the grant: the next relay opened ahead for it holds its inner session too (warm.ts), or no
  // more once a gateway negotiated the plain mode.
  material.innerGo = go;
  return { socket, peer: v.value, sentFirst: 0 };
}

/**
 * Step 4 on a judged inner session: GO when `<mode>+go` was negotiated, the caller's first bytes, the gateway's
 * status line. Bytes the caller's source gets while the line is awaited follow as they come (moreBytes),
 * EARLY_BYTES_MAX in all; `sentFirst` counts every byte written before the line. On a session held ahead
 * (`held`), a close before the line is the relay going while it waited (dialled again: connector.ts); any
 * status line is the gateway's answer.
 */
export async function startInner(
  inner: InnerStream,
  mode: ModeAlpn,
  step: InnerStep,
  held: boolean,
): Promise<InnerStream> {
  const { socket } = inner;
  const { timeout, fail } = step;
  let sentFirst = 0;
  if (modeHasStatus(mode)) {
    // Only to the gateway just judged ours, and never in health mode, whose document is all there is.
    const early = mode === 'health' ? undefined : step.firstBytes;
    // What the caller's source holds beyond the bytes sent already (it hands back everything it has: peeked).
    const next = (): Buffer | undefined => {
      if (!early || sentFirst >= EARLY_BYTES_MAX) return undefined;
      const all = early();
      if (!all || all.length <= sentFirst) return undefined;
      const part = all.subarray(sentFirst, EARLY_BYTES_MAX);
      sentFirst += part.length;
      return part;
    };
    const first = next();
    if (isGoAlpn(socket.alpnProtocol)) socket.write(first ? Buffer.concat([GO, first]) : GO);
    else if (first) socket.write(first);
    // On a held session the stream starts before the local client's bytes arrive: they follow GO as they come,
    // not a round trip later, after the line.
    const stop = early
      ? step.moreBytes?.(() => {
          if (socket.destroyed) return;
          const more = next();
          if (more) socket.write(more);
        })
      : undefined;
    try {
      const after = await readStatus(socket, 'gateway', timeout, fail);
      if (after.length > 0) socket.unshift(after);
    } catch (err) {
      socket.destroy();
      // Held: a refusal line (or the gateway's silence past the bound) is its answer; the relay closing or
      // failing under GO (cut by the proxy, ended by the gateway's timeout while it waited) is a relay gone,
      // dialled again, but only when none of the caller's bytes went with GO: the gateway writes them to the
      // target as soon as it is connected, before its status line reaches us, so a stream dialled again could
      // give the target a request twice (an INSERT run twice). Then the stream fails, as any cut stream does.
      const gone =
        held && sentFirst === 0 && err instanceof ConnectError && !toldByPeer(err) && err.code !== 'E_TIMEOUT';
      if (err instanceof ConnectError && !gone) GATEWAY_ANSWERED.add(err);
      throw err;
    } finally {
      stop?.();
    }
  }
  return { ...inner, sentFirst };
}

const GO = Buffer.from([GO_BYTE]);
