/**
 * Enrollment of gateways and proxies: who may enroll (an org-admin / the admin, or a one-time enrollment
 * token naming exactly this gateway or proxy), and what they receive (their certs, the CAs they must trust, the
 * proxies they may attach to, the revocation feed key). Renewal (renew.ts) reuses the bundles.
 */

import { refuse, type Verdict } from '../errors/codes.js';
import { REPLICA_SSH_EXTENSION } from '../pki/grant.js';
import { gatewayUri, instanceProxyUri, orgProxyUri } from '../pki/identity.js';
import { issueGatewayServerCert, issueProxyServerCert } from '../pki/profiles.js';
import type {
  GatewayEnrollRequest,
  GatewayEnrollResponse,
  ProxyEnrollRequest,
  ProxyEnrollResponse,
  ProxyInfo,
} from '../protocol/api.js';
import { checkEnrollmentToken, consumeEnrollmentToken } from './access.js';
import type { AuthorityContext, Caller, RequestInfo } from './context.js';
import { actorOf, authorize, deny, iso, ok } from './context.js';
import { catchIssuance, parseSubjectKeys, recordX509, type SubjectKeys, sanOf, signRecordedSsh } from './issue.js';
import { rotationVersion } from './rotation.js';
import type { ProxyRow } from './store.js';
import type { Generation } from './store-generations.js';
import { generationOf, installEnrollment } from './supersede.js';

export function enrollGateway(
  ctx: AuthorityContext,
  caller: Caller | null,
  req: GatewayEnrollRequest,
  info: RequestInfo,
): Verdict<GatewayEnrollResponse> {
  const { orgId, gatewayId } = req;
  const replica = req.replica ?? null;
  const uri = gatewayUri(ctx.trustDomain, orgId, gatewayId);
  const actor = req.enrollmentToken ? 'enrollment-token' : caller ? actorOf(caller) : 'anonymous';
  const event = { actor, subject: uri, action: 'gateway.enroll', orgId, source: info.source ?? null };
  const want = { kind: 'gateway' as const, orgId, subjectId: gatewayId };
  const by = enroller(ctx, caller, req.enrollmentToken, want, event.action, info);
  if (!by.ok) return by;
  const allowed = authorize(ctx, by.value, 'org-admin', orgId, event);
  if (!allowed.ok) return allowed;
  const existing = ctx.store.enrollment.gateway(orgId, gatewayId);
  if (existing?.revokedAt != null || ctx.store.revocations.has('gateway', orgId, gatewayId)) {
    return deny(ctx, event, 'E_SUBJECT_REVOKED', `gateway ${gatewayId} was revoked; enroll under a new id`);
  }
  const keys = parseSubjectKeys(req.csr, req.sshPublicKey);
  if (!keys.ok) return deny(ctx, event, keys.code, keys.reason);
  const result = catchIssuance(() =>
    ctx.store.transaction((): Verdict<GatewayEnrollResponse> => {
      if (req.enrollmentToken) {
        const used = consumeEnrollmentToken(ctx, req.enrollmentToken, { kind: 'gateway', orgId, subjectId: gatewayId });
        if (!used.ok) return used;
      }
      const now = ctx.now().getTime();
      ctx.store.enrollment.upsertGateway(orgId, gatewayId, uri, now);
      if (replica !== null) ctx.store.generations.enrollReplica(orgId, gatewayId, replica, now);
      const { bundle, generation } = gatewayBundle(ctx, orgId, gatewayId, keys.value, actor, replica);
      installEnrollment(ctx, { kind: 'gateway', orgId, id: gatewayId, replica }, generation);
      ctx.audit.insert({ ...event, outcome: 'ok', reason: replicaNote(replica) });
      return ok(bundle);
    }),
  );
  if (!result.ok) return deny(ctx, event, result.code, result.reason);
  ctx.audit.log({ ...event, outcome: 'ok', reason: replicaNote(replica) });
  return result;
}

/** The audit reason of a replica's enrollment or renewal ("replica NAME"); null for the gateway's own. */
export const replicaNote = (replica: string | null): string | null => (replica === null ? null : `replica ${replica}`);

export function enrollProxy(
  ctx: AuthorityContext,
  caller: Caller | null,
  req: ProxyEnrollRequest,
  info: RequestInfo,
): Verdict<ProxyEnrollResponse> {
  const orgId = req.scope === 'org' ? (req.orgId ?? null) : null;
  if (req.scope === 'org' && orgId === null) return refuse('E_REQUEST_INVALID', '$.orgId: required for an org proxy');
  const uri =
    orgId === null ? instanceProxyUri(ctx.trustDomain, req.proxyId) : orgProxyUri(ctx.trustDomain, orgId, req.proxyId);
  const actor = req.enrollmentToken ? 'enrollment-token' : caller ? actorOf(caller) : 'anonymous';
  const event = { actor, subject: uri, action: 'proxy.enroll', orgId, source: info.source ?? null };
  const want = { kind: 'proxy' as const, orgId, subjectId: req.proxyId };
  const by = enroller(ctx, caller, req.enrollmentToken, want, event.action, info);
  if (!by.ok) return by;
  const allowed = authorize(ctx, by.value, 'org-admin', orgId, event);
  if (!allowed.ok) return allowed;
  const existing = ctx.store.enrollment.proxy(orgId, req.proxyId);
  if (existing?.revokedAt != null || ctx.store.revocations.has('proxy', orgId, req.proxyId)) {
    return deny(ctx, event, 'E_SUBJECT_REVOKED', `proxy ${req.proxyId} was revoked; enroll under a new id`);
  }
  const keys = parseSubjectKeys(req.csr, req.sshPublicKey);
  if (!keys.ok) return deny(ctx, event, keys.code, keys.reason);
  const row: Omit<ProxyRow, 'revokedAt'> = {
    orgId,
    proxyId: req.proxyId,
    scope: req.scope,
    uri,
    hostnames: [...new Set(req.hostnames.map((h) => h.toLowerCase()))],
    sshAddress: req.sshAddress,
    tlsAddress: req.tlsAddress,
    enrolledAt: ctx.now().getTime(),
  };
  const result = catchIssuance(() =>
    ctx.store.transaction((): Verdict<ProxyEnrollResponse> => {
      if (req.enrollmentToken) {
        const used = consumeEnrollmentToken(ctx, req.enrollmentToken, { kind: 'proxy', orgId, subjectId: req.proxyId });
        if (!used.ok) return used;
      }
      ctx.store.enrollment.upsertProxy(row);
      const { bundle, generation } = proxyBundle(ctx, row, keys.value, actor);
      installEnrollment(ctx, { kind: 'proxy', orgId, id: req.proxyId }, generation);
      ctx.audit.insert({ ...event, outcome: 'ok' });
      return ok(bundle);
    }),
  );
  if (!result.ok) return deny(ctx, event, result.code, result.reason);
  ctx.changes.raise(); // gateways' proxy lists
  ctx.audit.log({ ...event, outcome: 'ok' });
  return result;
}

/**
 * Who enrolls: a one-time enrollment token naming exactly this component (checked here, spent later in the
 * issuing transaction), or an authenticated caller (authorized by the caller of this function). A token that
 * does not admit the enrollment is a failed authentication: counted against its source (the 'enroll' limit)
 * and logged sampled, never audited, as is a request with no credential at all.
 */
function enroller(
  ctx: AuthorityContext,
  caller: Caller | null,
  token: string | undefined,
  want: { kind: 'gateway' | 'proxy'; orgId: string | null; subjectId: string },
  endpoint: string,
  info: RequestInfo,
): Verdict<'token' | Caller> {
  if (token) {
    const admitted = ctx.unauthenticated.admit('enroll', endpoint, info.source);
    if (!admitted.ok) return admitted;
    const valid = checkEnrollmentToken(ctx, token, want);
    if (!valid.ok) return ctx.unauthenticated.refuse('enroll', endpoint, info.source, valid.code, valid.reason);
    return ok('token');
  }
  if (!caller) {
    const reason = 'an access token or an enrollment token is required';
    return ctx.unauthenticated.refuse(null, endpoint, info.source, 'E_AUTH_REQUIRED', reason);
  }
  return ok(caller);
}

/** Issues and records a gateway's certs (one generation, TLS serial first); call inside a transaction. */
export function gatewayBundle(
  ctx: AuthorityContext,
  orgId: string,
  gatewayId: string,
  keys: SubjectKeys,
  requestedBy: string,
  replica: string | null = null,
): { bundle: GatewayEnrollResponse; generation: Generation } {
  const issued: string[] = [];
  const uri = gatewayUri(ctx.trustDomain, orgId, gatewayId);
  const now = ctx.now();
  const l = ctx.limits;
  const server = ctx.keyring.x509(orgId, 'gateway-server');
  const tls = recordX509(
    ctx,
    issueGatewayServerCert(server, { subjectKey: keys.tls, uri, now, lifetimeSec: l.gatewayTlsLifetimeSec, replica }),
    {
      kind: 'gateway-tls',
      authorityId: ctx.keyring.signerId(orgId, 'gateway-server'),
      orgId,
      subjectUri: uri,
      requestedBy,
      issued,
    },
  );
  // One SSH user cert per proxy scope: instance proxies trust the instance SSH client CA, org proxies the org's.
  const sshCertificates = (['instance', 'org'] as const).map((scope) => {
    const caOrg = scope === 'instance' ? null : orgId;
    const ca = ctx.keyring.ssh(caOrg, 'proxy-ssh-client');
    const certificate = signRecordedSsh(
      ctx,
      ca,
      {
        publicKey: keys.ssh,
        type: 'user',
        keyId: uri,
        principals: [gatewayId],
        lifetimeSec: l.gatewaySshLifetimeSec,
        // A replica's name rides along for the proxy's logs (informational: it grants nothing).
        extensions: { 'permit-port-forwarding': '', ...(replica !== null ? { [REPLICA_SSH_EXTENSION]: replica } : {}) },
      },
      { kind: `gateway-ssh-${scope}`, authorityId: ca.id, orgId, subjectUri: uri, requestedBy, issued },
    );
    return { scope, certificate };
  });
  const bundle: GatewayEnrollResponse = {
    gatewayUri: uri,
    tlsCertificateChain: tls + server.certificatePem,
    sshCertificates,
    trust: {
      // Every CA trusted now: two of a kind while a rotation runs (rotation.ts).
      sshHostCaKeys: [
        ...ctx.keyring.sshPublics(null, 'proxy-ssh-server').map((key) => ({ scope: 'instance' as const, key })),
        ...ctx.keyring.sshPublics(orgId, 'proxy-ssh-server').map((key) => ({ scope: 'org' as const, key })),
      ],
      gatewayClientCaCerts: ctx.keyring.x509Pems(orgId, 'gateway-client'),
    },
    proxies: gatewayProxies(ctx, orgId),
    revocationFeedKey: ctx.keyring.feedPublicKeyPem(),
    notAfter: iso(now.getTime() + Math.min(l.gatewayTlsLifetimeSec, l.gatewaySshLifetimeSec) * 1000),
    // Certificates and trust of the current rotation phase: holding this bundle acknowledges it (rotation.ts).
    rotation: rotationVersion(ctx, { kind: 'gateway', orgId }),
  };
  return { bundle, generation: generationOf(issued, keys.tls) };
}

/** Issues and records a proxy's certs (its scope's CAs only; one generation); call inside a transaction. */
export function proxyBundle(
  ctx: AuthorityContext,
  proxy: Omit<ProxyRow, 'revokedAt'>,
  keys: SubjectKeys,
  requestedBy: string,
): { bundle: ProxyEnrollResponse; generation: Generation } {
  const issued: string[] = [];
  const now = ctx.now();
  const l = ctx.limits;
  const { orgId, uri } = proxy;
  const server = ctx.keyring.x509(orgId, 'proxy-pki-server');
  const tls = recordX509(
    ctx,
    issueProxyServerCert(server, {
      subjectKey: keys.tls,
      uri,
      now,
      lifetimeSec: l.proxyTlsLifetimeSec,
      ...sanOf(proxy.hostnames),
    }),
    {
      kind: 'proxy-tls',
      authorityId: ctx.keyring.signerId(orgId, 'proxy-pki-server'),
      orgId,
      subjectUri: uri,
      requestedBy,
      issued,
    },
  );
  const hostCa = ctx.keyring.ssh(orgId, 'proxy-ssh-server');
  const sshHostCertificate = signRecordedSsh(
    ctx,
    hostCa,
    { publicKey: keys.ssh, type: 'host', keyId: uri, principals: proxy.hostnames, lifetimeSec: l.proxySshLifetimeSec },
    { kind: 'proxy-ssh-host', authorityId: hostCa.id, orgId, subjectUri: uri, requestedBy, issued },
  );
  const bundle: ProxyEnrollResponse = {
    proxyUri: uri,
    tlsCertificateChain: tls + server.certificatePem,
    sshHostCertificate,
    trust: {
      sshUserCaKeys: ctx.keyring.sshPublics(orgId, 'proxy-ssh-client'),
      pkiClientCaCerts: ctx.keyring.x509Pems(orgId, 'proxy-pki-client'),
    },
    revocationFeedKey: ctx.keyring.feedPublicKeyPem(),
    notAfter: iso(now.getTime() + Math.min(l.proxyTlsLifetimeSec, l.proxySshLifetimeSec) * 1000),
    rotation: rotationVersion(ctx, orgId === null ? { kind: 'instance-proxy' } : { kind: 'proxy', orgId }),
  };
  return { bundle, generation: generationOf(issued, keys.tls) };
}

/**
 * The proxies a gateway of `orgId` keeps tunnels to: every instance proxy and its own org's, none revoked. The
 * one rule for both the enrollment/renewal bundle and the signed feed's proxy list.
 */
export function gatewayProxies(ctx: AuthorityContext, orgId: string): ProxyInfo[] {
  return ctx.store.enrollment
    .proxiesFor(orgId)
    .filter((p) => !ctx.store.revocations.has('proxy', p.orgId, p.proxyId))
    .map(proxyInfo);
}

export function proxyInfo(p: ProxyRow): ProxyInfo {
  return {
    proxyId: p.proxyId,
    scope: p.scope,
    hostname: p.hostnames[0] ?? '',
    hostnames: p.hostnames,
    sshAddress: p.sshAddress,
    tlsAddress: p.tlsAddress,
  };
}
