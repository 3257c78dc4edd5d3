/**
 * Renewal and peer-authenticated reads. A gateway or proxy proves itself with its CURRENT certificate and a
 * signature by that certificate's key over the exact request bytes; the body (or query) carries a timestamp
 * (±5 min) and a one-time nonce. The certificate is judged by THE verifier (lib/pki/verify) against the one CA
 * that issued that kind of certificate for that org or the instance, then matched against our own records.
 */
import { createPublicKey, type KeyObject, verify } from 'node:crypto';
import { refuse, type Verdict } from '../errors/codes.js';
import { DerError } from '../pki/der.js';
import { decodeReplica, REPLICA_EXTENSION_OID } from '../pki/grant.js';
import { parseIdentity } from '../pki/identity.js';
import { verifyCertificateChain } from '../pki/verify.js';
import { parseCertificate } from '../pki/x509.js';
import {
  BODIES,
  type GatewayEnrollResponse,
  type ProxyEnrollResponse,
  requestSignatureHash,
  SIGNED_REQUEST_SKEW_SEC,
} from '../protocol/api.js';
import { type AuthorityContext, deny, ok, type RequestInfo, sha256Hex } from './context.js';
import { gatewayBundle, proxyBundle, replicaNote } from './enroll.js';
import { catchIssuance, parseSubjectKeys } from './issue.js';
import { componentOf, installRenewal, RETIRED_BY, renewalAllowed, type Standing, standingOf } from './supersede.js';

/** A request signed with a peer's current certificate key. */
export interface SignedRequest {
  /** DER of the current certificate (X-Infisical-Cert). */
  certificate: Buffer;
  /** X-Infisical-Signature. */
  signature: Buffer;
  /** The exact bytes signed: the body, or for a GET the request target ("/v1/revocations?since=..."). */
  signed: Buffer;
}

export interface Peer {
  kind: 'gateway' | 'org-proxy' | 'instance-proxy';
  orgId: string | null;
  id: string;
  uri: string;
  serial: string;
  /** A gateway replica's name (its certificate's GatewayReplica extension); null for the gateway's own. */
  replica: string | null;
  /** The certificate's place among its component's generations (supersede.ts). */
  standing: Standing;
}

const NONCE_TTL_MS = 2 * SIGNED_REQUEST_SKEW_SEC * 1000;

/** Authenticates a signed request; `freshness` comes from the signed bytes (body fields or query). */
export function authenticatePeer(
  ctx: AuthorityContext,
  req: SignedRequest,
  freshness: { timestamp: number; nonce: string },
): Verdict<Peer> {
  const now = ctx.now();
  let parsed: ReturnType<typeof parseCertificate>;
  try {
    parsed = parseCertificate(req.certificate);
  } catch (err) {
    if (err instanceof DerError) return refuse('E_CERT_MALFORMED', err.message);
    throw err;
  }
  if (parsed.san.uris.length !== 1) return refuse('E_CERT_IDENTITY', 'certificate must name exactly one URI');
  const id = parseIdentity(parsed.san.uris[0]);
  if (!id.ok) return refuse('E_CERT_IDENTITY', id.reason);
  const who = id.value;
  if (who.kind === 'identity') return refuse('E_CERT_WRONG_TYPE', 'only gateways and proxies sign requests');
  if (who.trustDomain !== ctx.trustDomain) return refuse('E_CERT_UNTRUSTED', 'certificate of another trust domain');
  const orgId = who.kind === 'instance-proxy' ? null : who.orgId;
  const uri = parsed.san.uris[0]!;
  if (orgId !== null && ctx.store.orgs.get(orgId)?.deletedAt !== null) {
    return refuse('E_SUBJECT_REVOKED', `org ${orgId} does not exist or was deleted`);
  }
  let retiredAt: number | undefined;
  const purpose = tlsPurposeOf(who.kind);
  const verified = verifyCertificateChain({
    chain: req.certificate,
    anchors: ctx.keyring.x509Pems(orgId, purpose),
    now,
    purpose: 'serverAuth',
    expectedUri: uri,
    // A retired (superseded) certificate is told apart from a revoked one, after every other check passed.
    isRevoked: (serialHex) => {
      const r = ctx.store.generations.certificateRevocation(orgId, serialHex);
      if (r?.revokedBy === RETIRED_BY) retiredAt = r.at;
      return r !== undefined && r.revokedBy !== RETIRED_BY;
    },
  });
  if (!verified.ok) return missedRotation(ctx, parsed.serialHex, orgId, purpose) ?? verified;
  const record = ctx.store.issuance.certificate(verified.value.serialHex);
  if (!record || record.fingerprint !== sha256Hex(req.certificate) || record.subjectUri !== uri) {
    return refuse('E_CERT_UNTRUSTED', 'certificate is not one this CA issued');
  }
  const subject = subjectStanding(ctx, { kind: who.kind, orgId, id: who.id });
  if (!subject.ok) return subject;

  let key: KeyObject;
  try {
    key = createPublicKey({ key: parsed.spki, format: 'der', type: 'spki' });
  } catch {
    return refuse('E_KEY_UNSUPPORTED', 'certificate key cannot be loaded');
  }
  let good = false;
  try {
    good = verify(requestSignatureHash(key), req.signed, key, req.signature);
  } catch {
    good = false;
  }
  if (!good) return refuse('E_AUTH_INVALID', 'request signature does not verify with the certificate key');
  const skew = Math.abs(freshness.timestamp - Math.floor(now.getTime() / 1000));
  if (skew > SIGNED_REQUEST_SKEW_SEC) return refuse('E_AUTH_INVALID', `timestamp is ${skew} s away from the CA clock`);
  if (!ctx.store.enrollment.useNonce(freshness.nonce, now.getTime() + NONCE_TTL_MS)) {
    return refuse('E_TOKEN_USED', 'nonce was already used (replayed request)');
  }
  const serial = verified.value.serialHex;
  // The replica comes from the certificate this CA signed (verified above), so a replica can renew only itself.
  const replicaExt = who.kind === 'gateway' ? parsed.extensions.get(REPLICA_EXTENSION_OID) : undefined;
  const replica = replicaExt ? decodeReplica(replicaExt.value) : ok(null);
  if (!replica.ok) return replica;
  const ref = componentOf({ kind: who.kind, orgId, id: who.id, replica: replica.value });
  const standing = standingOf(ctx, ref, serial, retiredAt);
  if (!standing.ok) return standing;
  return ok({ kind: who.kind, orgId, id: who.id, uri, serial, replica: replica.value, standing: standing.value });
}

/** The component itself: its org not deleted, the gateway or proxy not revoked. */
function subjectStanding(
  ctx: AuthorityContext,
  who: { kind: Peer['kind']; orgId: string | null; id: string },
): Verdict<void> {
  if (who.orgId !== null && ctx.store.orgs.get(who.orgId)?.deletedAt !== null) {
    return refuse('E_SUBJECT_REVOKED', `org ${who.orgId} does not exist or was deleted`);
  }
  const revoked =
    who.kind === 'gateway'
      ? ctx.store.enrollment.gateway(who.orgId ?? '', who.id)?.revokedAt != null ||
        ctx.store.revocations.has('gateway', who.orgId, who.id)
      : ctx.store.enrollment.proxy(who.orgId, who.id)?.revokedAt != null ||
        ctx.store.revocations.has('proxy', who.orgId, who.id);
  if (revoked) return refuse('E_SUBJECT_REVOKED', `${who.kind} ${who.id} was revoked`);
  return ok(undefined);
}

/** The CA that signs a component's TLS certificate, by which its signed requests are judged. */
const tlsPurposeOf = (kind: Peer['kind']) => (kind === 'gateway' ? 'gateway-server' : 'proxy-pki-server');

/**
 * A renewal judged again as the first step of its write transaction, under the writers' lock, on what the store
 * holds now: another CA replica (or the admin CLI) may have revoked the component or its certificate, renewed
 * it, or completed a rotation that retired the CA of its certificate, since the request was authenticated. A
 * concurrent renewal of the same certificate turns this one into a retry when it asks for the same key (a client
 * that timed out and asked again), and refuses it otherwise (a stolen copy renewing beside the real component).
 */
function judgedAgain(ctx: AuthorityContext, peer: Peer, csrKey: KeyObject): Verdict<'renew' | 'retry'> {
  const subject = subjectStanding(ctx, peer);
  if (!subject.ok) return subject;
  const r = ctx.store.generations.certificateRevocation(peer.orgId, peer.serial);
  if (r && r.revokedBy !== RETIRED_BY) return refuse('E_CERT_REVOKED', `certificate ${peer.serial} was revoked`);
  // The bundle is signed by the CA of the phase read now; the certificate presented was judged against the CAs
  // trusted then. A certificate of a CA that a rotation has since retired renews no more than it authenticates.
  const missed = missedRotation(ctx, peer.serial, peer.orgId, tlsPurposeOf(peer.kind));
  if (missed) return missed;
  const ref = componentOf(peer);
  const standing = standingOf(ctx, ref, peer.serial, r?.at);
  if (!standing.ok) return standing;
  return renewalAllowed(ctx, ref, peer.serial, standing.value, csrKey);
}

/**
 * A certificate this CA issued, from a CA of this purpose that a completed rotation no longer trusts: its holder
 * was away while the rotation ran and must re-enroll (E_ROTATION_MISSED, which it treats as final).
 */
function missedRotation(
  ctx: AuthorityContext,
  serialHex: string,
  orgId: string | null,
  purpose: 'gateway-server' | 'proxy-pki-server',
): Verdict<never> | undefined {
  const record = ctx.store.issuance.certificate(serialHex);
  const rotation = ctx.keyring.rotation(orgId, purpose);
  if (!record || rotation.epoch === 0) return undefined;
  const base = rotation.authorityId;
  const ofThisCa = record.authorityId === base || record.authorityId.startsWith(`${base}@`);
  if (!ofThisCa || record.authorityId === rotation.currentId || record.authorityId === rotation.nextId)
    return undefined;
  return refuse(
    'E_ROTATION_MISSED',
    `this certificate was signed by ${record.authorityId}, which a rotation of ${base} retired while this ` +
      'component was away; enroll it again with a new token',
  );
}

export function renewGateway(
  ctx: AuthorityContext,
  req: SignedRequest,
  info: RequestInfo,
): Verdict<GatewayEnrollResponse> {
  const renewal = prepare(ctx, req, info, 'gateway.renew');
  if (!renewal.ok) return renewal;
  const { peer, keys, event } = renewal.value;
  if (peer.kind !== 'gateway' || peer.orgId === null) {
    return deny(ctx, event, 'E_CERT_WRONG_TYPE', 'a gateway certificate is required');
  }
  const orgId = peer.orgId;
  const ref = componentOf(peer);
  const allowed = renewalAllowed(ctx, ref, peer.serial, peer.standing, keys.tls);
  if (!allowed.ok) return deny(ctx, event, allowed.code, allowed.reason);
  const result = catchIssuance(() =>
    ctx.store.transaction(() => {
      const mode = judgedAgain(ctx, peer, keys.tls);
      if (!mode.ok) return mode;
      const now = ctx.now().getTime();
      ctx.store.enrollment.upsertGateway(orgId, peer.id, peer.uri, now);
      if (peer.replica !== null) ctx.store.generations.renewedReplica(orgId, peer.id, peer.replica, now);
      const { bundle, generation } = gatewayBundle(ctx, orgId, peer.id, keys, peer.uri, peer.replica);
      installRenewal(ctx, ref, generation, mode.value, presented(ctx, peer));
      const reason = [mode.value === 'retry' ? 'retry' : null, replicaNote(peer.replica)].filter((r) => r !== null);
      ctx.audit.insert({ ...event, outcome: 'ok', reason: reason.join('; ') || null });
      return ok(bundle);
    }),
  );
  if (!result.ok) return deny(ctx, event, result.code, result.reason);
  ctx.audit.log({ ...event, outcome: 'ok', reason: replicaNote(peer.replica) });
  return result;
}

export function renewProxy(ctx: AuthorityContext, req: SignedRequest, info: RequestInfo): Verdict<ProxyEnrollResponse> {
  const renewal = prepare(ctx, req, info, 'proxy.renew');
  if (!renewal.ok) return renewal;
  const { peer, keys, event } = renewal.value;
  if (peer.kind === 'gateway') return deny(ctx, event, 'E_CERT_WRONG_TYPE', 'a proxy certificate is required');
  const row = ctx.store.enrollment.proxy(peer.orgId, peer.id);
  if (!row) return deny(ctx, event, 'E_NOT_FOUND', `no proxy ${peer.id}`);
  const ref = componentOf(peer);
  const allowed = renewalAllowed(ctx, ref, peer.serial, peer.standing, keys.tls);
  if (!allowed.ok) return deny(ctx, event, allowed.code, allowed.reason);
  const result = catchIssuance(() =>
    ctx.store.transaction(() => {
      const mode = judgedAgain(ctx, peer, keys.tls);
      if (!mode.ok) return mode;
      // The row as it stands under the writers' lock (the one read before may be stale): written back whole.
      const current = ctx.store.enrollment.proxy(peer.orgId, peer.id);
      if (!current) return refuse('E_NOT_FOUND', `no proxy ${peer.id}`);
      const renewed = { ...current, enrolledAt: ctx.now().getTime() };
      ctx.store.enrollment.upsertProxy(renewed);
      const { bundle, generation } = proxyBundle(ctx, renewed, keys, peer.uri);
      installRenewal(ctx, ref, generation, mode.value, presented(ctx, peer));
      ctx.audit.insert({ ...event, outcome: 'ok', reason: mode.value === 'retry' ? 'retry' : null });
      return ok(bundle);
    }),
  );
  if (!result.ok) return deny(ctx, event, result.code, result.reason);
  ctx.changes.raise(); // the proxy table changed
  ctx.audit.log({ ...event, outcome: 'ok' });
  return result;
}

/** The renewed certificate as recorded (its bundle is found by subject and time when it is untracked). */
function presented(ctx: AuthorityContext, peer: Peer): { serial: string; createdAt: number; subjectUri: string } {
  const record = ctx.store.issuance.certificate(peer.serial);
  return { serial: peer.serial, createdAt: record?.createdAt ?? 0, subjectUri: peer.uri };
}

/**
 * Authenticates a signed request as `endpoint` asks it: refused while its source waits for failing too often
 * ('signed' limit); a failure counts against the source and is counted and logged, never audited (the caller
 * proved nothing yet).
 */
export function authenticateSigned(
  ctx: AuthorityContext,
  endpoint: string,
  req: SignedRequest,
  freshness: { timestamp: number; nonce: string },
  info: RequestInfo,
): Verdict<Peer> {
  const admitted = ctx.unauthenticated.admit('signed', endpoint, info.source);
  if (!admitted.ok) return admitted;
  const peer = authenticatePeer(ctx, req, freshness);
  if (!peer.ok) return ctx.unauthenticated.refuse('signed', endpoint, info.source, peer.code, peer.reason);
  return peer;
}

function prepare(ctx: AuthorityContext, req: SignedRequest, info: RequestInfo, action: string) {
  const admitted = ctx.unauthenticated.admit('signed', action, info.source);
  if (!admitted.ok) return admitted;
  let json: unknown;
  try {
    json = JSON.parse(req.signed.toString('utf8'));
  } catch {
    return ctx.unauthenticated.refuse('signed', action, info.source, 'E_REQUEST_MALFORMED', 'body is not JSON');
  }
  const body = BODIES.renew.parse(json);
  if (!body.ok) return ctx.unauthenticated.refuse('signed', action, info.source, body.code, body.reason);
  const peer = authenticateSigned(ctx, action, req, body.value, info);
  if (!peer.ok) return peer;
  const event = {
    actor: peer.value.uri,
    subject: peer.value.uri,
    action,
    orgId: peer.value.orgId,
    source: info.source ?? null,
  };
  const keys = parseSubjectKeys(body.value.csr, body.value.sshPublicKey);
  if (!keys.ok) return deny(ctx, event, keys.code, keys.reason);
  return ok({ peer: peer.value, keys: keys.value, event });
}
