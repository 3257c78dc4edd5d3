/**
 * Access grants (SPEC §4.4): an org identity asks to reach (gateway, target, mode); the org's policy decides
 * (lib/ca/policy.ts `decideAccess`, deny by default); the CA signs the platform's two client certs:
 *   inner  org gateway client CA, carrying the AccessGrant extension (≤ 5 min by default);
 *   outer  the proxy PKI client CA of each proxy scope the gateway can be reached through, carrying the
 *          GatewayRoute (org + gateway) the proxy routes on.
 */

import type { Verdict } from '../errors/codes.js';
import { type AccessGrant, GRANT_VERSION } from '../pki/grant.js';
import { gatewayUri, identityUri } from '../pki/identity.js';
import { issuePlatformInnerClientCert, issuePlatformOuterClientCert } from '../pki/profiles.js';
import type { GrantRequest, GrantResponse, ProxyScope } from '../protocol/api.js';
import type { AuthorityContext, Caller, RequestInfo } from './context.js';
import { actorOf, authorize, deny, iso, ok, requireLiveOrg } from './context.js';
import { proxyInfo } from './enroll.js';
import { catchIssuance, parseCsrKey, recordX509 } from './issue.js';
import { decideAccess, describeTarget } from './policy.js';
import { randomId } from './secrets.js';

export function issueGrant(
  ctx: AuthorityContext,
  caller: Caller,
  req: GrantRequest,
  info: RequestInfo,
): Verdict<GrantResponse> {
  const { orgId, gatewayId } = req;
  const event = {
    actor: actorOf(caller),
    subject: `${gatewayUri(ctx.trustDomain, orgId, gatewayId)}#${describeTarget(req.target)}/${req.mode}`,
    action: 'grant.issue',
    orgId,
    source: info.source ?? null,
  };
  const member = authorize(ctx, caller, 'org-member', orgId, event, { live: false });
  if (!member.ok) return member;
  // The instance admin may act on the org, but a grant is a credential for one of the org's own identities.
  if (caller.orgId !== orgId) return deny(ctx, event, 'E_FORBIDDEN', 'grants are issued to identities of the org');
  const live = requireLiveOrg(ctx, orgId);
  if (!live.ok) return deny(ctx, event, live.code, live.reason);
  const gateway = ctx.store.enrollment.gateway(orgId, gatewayId);
  if (!gateway) return deny(ctx, event, 'E_NOT_FOUND', `no gateway ${gatewayId} in org ${orgId}`);
  if (gateway.revokedAt !== null) return deny(ctx, event, 'E_SUBJECT_REVOKED', `gateway ${gatewayId} was revoked`);
  const ttl = req.ttlSeconds ?? ctx.limits.grantTtlSec;
  if (ttl > ctx.limits.maxGrantTtlSec) {
    return deny(ctx, event, 'E_REQUEST_INVALID', `ttlSeconds above ${ctx.limits.maxGrantTtlSec}`);
  }
  const decision = decideAccess(ctx.store.orgs.policies(orgId), {
    orgId,
    identityId: caller.identityId,
    groups: caller.groups,
    gatewayId,
    target: req.target,
    mode: req.mode,
  });
  if (!decision.ok) return deny(ctx, event, decision.code, decision.reason);
  const outerKey = parseCsrKey(req.outerCsr);
  if (!outerKey.ok) return deny(ctx, event, outerKey.code, `outerCsr: ${outerKey.reason}`);
  // One key for both is allowed; its CSR is then checked once.
  const innerKey = req.innerCsr === req.outerCsr ? outerKey : parseCsrKey(req.innerCsr);
  if (!innerKey.ok) return deny(ctx, event, innerKey.code, `innerCsr: ${innerKey.reason}`);

  const now = ctx.now();
  const actorUri = identityUri(ctx.trustDomain, orgId, caller.identityId);
  const grantId = randomId('g-');
  const notAfter = Math.floor(now.getTime() / 1000) + ttl;
  const grant: AccessGrant = {
    version: GRANT_VERSION,
    grantId,
    orgId,
    gatewayId,
    actor: actorUri,
    target: req.target,
    modes: [req.mode],
    notAfter,
  };
  const proxies = ctx.store.enrollment.proxiesFor(orgId);
  const present = new Set<ProxyScope>(proxies.map((p) => p.scope));
  // With no proxy enrolled yet, both scopes: the grant stays usable whichever kind comes first.
  const scopes: ProxyScope[] =
    present.size === 0 ? ['instance', 'org'] : (['instance', 'org'] as const).filter((s) => present.has(s));
  const requestedBy = event.actor;

  const result = catchIssuance(() =>
    ctx.store.transaction((): Verdict<GrantResponse> => {
      const record = (kind: string, caOrg: string | null, purpose: 'proxy-pki-client' | 'gateway-client') => ({
        kind,
        authorityId: ctx.keyring.signerId(caOrg, purpose),
        orgId,
        subjectUri: actorUri,
        requestedBy,
        grantId,
      });
      const gatewayClient = ctx.keyring.x509(orgId, 'gateway-client');
      const inner =
        recordX509(
          ctx,
          issuePlatformInnerClientCert(gatewayClient, {
            subjectKey: innerKey.value,
            uri: actorUri,
            now,
            lifetimeSec: ttl,
            grant,
          }),
          record('grant-inner', orgId, 'gateway-client'),
        ) + gatewayClient.certificatePem;
      const chains: { instance?: string; org?: string } = {};
      for (const scope of scopes) {
        const caOrg = scope === 'instance' ? null : orgId;
        const issuer = ctx.keyring.x509(caOrg, 'proxy-pki-client');
        chains[scope] =
          recordX509(
            ctx,
            issuePlatformOuterClientCert(issuer, {
              subjectKey: outerKey.value,
              uri: actorUri,
              now,
              lifetimeSec: ttl,
              route: { version: GRANT_VERSION, orgId, gatewayId },
            }),
            record(`grant-outer-${scope}`, caOrg, 'proxy-pki-client'),
          ) + issuer.certificatePem;
      }
      ctx.store.issuance.insertGrant({
        grantId,
        orgId,
        gatewayId,
        identityId: caller.identityId,
        targetJson: JSON.stringify(req.target),
        mode: req.mode,
        ruleId: decision.value.id,
        createdAt: now.getTime(),
        expiresAt: notAfter * 1000,
      });
      ctx.audit.insert({ ...event, outcome: 'ok', reason: `grant ${grantId} by rule ${decision.value.id}` });
      return ok({
        grantId,
        expiresAt: iso(notAfter * 1000),
        outerCertificateChain: (chains.org ?? chains.instance)!,
        outerCertificateChains: chains,
        innerCertificateChain: inner,
        gatewayUri: gateway.uri,
        trust: {
          proxyServerCaCerts: scopes.flatMap((s) =>
            ctx.keyring.x509Pems(s === 'instance' ? null : orgId, 'proxy-pki-server'),
          ),
          gatewayServerCaCerts: ctx.keyring.x509Pems(orgId, 'gateway-server'),
        },
        proxies: proxies.map(proxyInfo).map(({ sshAddress: _ssh, ...rest }) => rest),
      });
    }),
  );
  if (!result.ok) return deny(ctx, event, result.code, result.reason);
  ctx.audit.log({ ...event, outcome: 'ok', reason: `grant ${grantId} by rule ${decision.value.id}` });
  return result;
}
