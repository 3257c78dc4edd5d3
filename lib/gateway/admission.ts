/**
 * The gateway's one admission decision for a platform stream (pure: chain, mode and clock in, verdict out).
 * THE verifier (lib/pki/verify) judges the inner client cert: chain to this org's gateway client CA,
 * clientAuth, validity, revocation by serial, and the access grant, which checkGrant (lib/protocol/grant)
 * holds to this org, this gateway, the clock and the mode. The revocation list adds grant, identity and
 * gateway revocations. The allowlist is the next step (it needs a DNS lookup): see allowlist.ts.
 *
 * Before any of that, admitChannel bounds what a proxy can make the gateway hold for nothing: channels it
 * opened whose inner TLS handshake has not completed yet.
 */

import { accept, refuse, type Verdict } from '../errors/codes.js';
import { type AccessGrant, checkGrant, type GrantMode, type GrantTarget } from '../pki/grant.js';
import type { TrustAnchors, VerifiedPeer, VerifyOptions } from '../pki/verify.js';
import { verifyAgain, verifyCertificateChain } from '../pki/verify.js';
import { MODE_ALPNS, type ModeAlpn, modeOfAlpn } from '../protocol/relay.js';
import type { RevocationSet } from './revocations.js';

export interface AdmissionContext {
  orgId: string;
  gatewayId: string;
  /** The org's gateway client CA(s): inner client certs must chain here. */
  anchors: TrustAnchors;
  revoked: RevocationSet;
  now: Date;
}

export interface Admitted {
  peer: VerifiedPeer;
  grant: AccessGrant;
  mode: ModeAlpn;
}

/**
 * Decides one stream. `alpn` is what the TLS handshake selected; `requested` is a target the platform asked
 * for inside the stream (an absolute-form HTTP request), checked against the grant like everything else.
 */
export function admitStream(
  chain: readonly Buffer[],
  alpn: string | false | null | undefined,
  ctx: AdmissionContext,
  requested?: GrantTarget,
): Verdict<Admitted> {
  const gateway = gatewayRevoked(ctx);
  if (gateway) return gateway;
  // `<mode>+go` is that mode for the grant (lib/protocol/relay.ts modeOfAlpn): it never allows more than it.
  const mode = modeOfAlpn(alpn);
  if (!mode) {
    return refuse('E_TARGET_NOT_ALLOWED', `no mode selected: offer one of ${MODE_ALPNS.join(', ')} by ALPN`);
  }
  const verified = verifyCertificateChain({ ...innerClientCert(ctx), chain: [...chain] });
  if (!verified.ok) return verified;
  return admitGrant(verified.value, mode, ctx, requested);
}

/**
 * A stream admitted on this inner session before (held ahead of need until its GO: lib/gateway/inner.ts), judged
 * again with the clock and the revocations of `ctx`: the same decision as admitStream on the same certificate
 * (the same steps in the same order), the certificate's part through THE verifier's verifyAgain (validity and
 * revocation of every certificate of the path, asked with the same options; nothing else a session can change).
 * Undefined when the verifier cannot judge it again (other anchors since: a reload that changed the gateway's
 * inner credentials, its certificate or its client CAs): admit it in full then (admitStream).
 */
export function admitAgain(admitted: Admitted, ctx: AdmissionContext): Verdict<Admitted> | undefined {
  const verified = verifyAgain(admitted.peer, innerClientCert(ctx));
  if (!verified) return undefined;
  const gateway = gatewayRevoked(ctx);
  if (gateway) return gateway;
  if (!verified.ok) return verified;
  return admitGrant(verified.value, admitted.mode, ctx);
}

/** The first step of every admission: a revoked gateway admits nothing. */
function gatewayRevoked(ctx: AdmissionContext): Verdict<never> | undefined {
  if (!ctx.revoked.has('gateway', ctx.gatewayId, ctx.orgId)) return undefined;
  return refuse('E_SUBJECT_REVOKED', `gateway ${ctx.gatewayId} has been revoked`);
}

/** What THE verifier is asked of an inner client certificate, at its handshake and again at GO. */
function innerClientCert(ctx: AdmissionContext): Omit<VerifyOptions, 'chain'> {
  return {
    anchors: ctx.anchors,
    now: ctx.now,
    purpose: 'clientAuth',
    requireGrant: true,
    isRevoked: (serial) => ctx.revoked.has('certificate', serial),
  };
}

/** The grant a verified inner client certificate carries, held to this org, gateway, target, mode and clock. */
function admitGrant(
  peer: VerifiedPeer,
  mode: ModeAlpn,
  ctx: AdmissionContext,
  requested?: GrantTarget,
): Verdict<Admitted> {
  const grant = peer.grant!;
  const decided = checkGrant(grant, {
    orgId: ctx.orgId,
    gatewayId: ctx.gatewayId,
    target: requested ?? grant.target,
    mode: mode as GrantMode,
    now: ctx.now,
  });
  if (!decided.ok) return decided;
  if (ctx.revoked.has('grant', grant.grantId, grant.orgId)) {
    return refuse('E_CERT_REVOKED', `grant ${grant.grantId} has been revoked`);
  }
  // Identities are revoked by id within their org, or by full URI.
  const identityId = grant.actor.split('/').at(-1) ?? '';
  if (ctx.revoked.has('identity', grant.actor) || ctx.revoked.has('identity', identityId, grant.orgId)) {
    return refuse('E_SUBJECT_REVOKED', `identity ${grant.actor} has been revoked`);
  }
  return accept({ peer, grant, mode });
}

/**
 * A new `forwarded-tcpip` channel from a proxy, before it is accepted: refused (E_LIMIT) when that proxy
 * already has `maxPending` channels whose inner handshake is not complete. Per proxy, so a flood through one
 * proxy (or from a compromised one) leaves the channels of every other proxy alone; a platform's stream is
 * pending only for its handshake (milliseconds), so legitimate bursts stay far below the cap.
 */
export function admitChannel(pendingFromProxy: number, maxPending: number, proxyId: string): Verdict<void> {
  if (pendingFromProxy >= maxPending) {
    return refuse('E_LIMIT', `proxy ${proxyId} already has ${maxPending} channels waiting for their inner handshake`);
  }
  return accept(undefined);
}

/**
 * A session whose handshake would pick `<mode>+go`, before it is picked: not held (E_LIMIT) when that proxy
 * already has `maxHeld` sessions held for their GO. Held sessions are authenticated and admitted (no longer
 * pending), but each is a TLS session and a timer kept for a stream that may never come, so they are bounded
 * apart; at the bound the platform gets the plain mode, or no session when it offered only `<mode>+go`.
 */
export function admitHold(heldFromProxy: number, maxHeld: number, proxyId: string): Verdict<void> {
  if (heldFromProxy >= maxHeld) {
    return refuse('E_LIMIT', `proxy ${proxyId} already has ${maxHeld} sessions held for their go`);
  }
  return accept(undefined);
}
