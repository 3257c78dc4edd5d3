/**
 * Orgs and their access policies. Creating an org creates its six CAs (each an independent root); deleting one
 * revokes everything it had (gateways, org proxies, identities) in the revocation feed and destroys its CA keys.
 */

import type { Verdict } from '../errors/codes.js';
import type {
  AddPolicyRequest,
  ListOrgsResponse,
  ListPoliciesResponse,
  OrgInfo,
  PolicyRuleBody,
} from '../protocol/api.js';
import type { AuthorityContext, Caller } from './context.js';
import { actorOf, authorize, deny, iso, mayAct, ok } from './context.js';
import { type PolicyRule, validateRule } from './policy.js';
import { randomId } from './secrets.js';

export function createOrg(ctx: AuthorityContext, caller: Caller, orgId: string): Verdict<OrgInfo> {
  const event = { actor: actorOf(caller), subject: `org:${orgId}`, action: 'org.create', orgId };
  const allowed = authorize(ctx, caller, 'admin', orgId, event, { live: false });
  if (!allowed.ok) return allowed;
  const now = ctx.now();
  const created = ctx.store.transaction(() => {
    // A deleted org's id stays taken: the revocation feed still names its gateways and proxies.
    if (ctx.store.orgs.get(orgId)) return false;
    ctx.store.orgs.insert(orgId, now.getTime());
    ctx.keyring.createOrg(orgId, ctx.trustDomain, now);
    ctx.audit.insert({ ...event, outcome: 'ok' });
    return true;
  });
  if (!created) return deny(ctx, event, 'E_CONFLICT', `org ${orgId} exists or existed`);
  ctx.audit.log({ ...event, outcome: 'ok' });
  return ok({ orgId, createdAt: iso(now.getTime()) });
}

export function listOrgs(ctx: AuthorityContext, caller: Caller): Verdict<ListOrgsResponse> {
  const orgs = ctx.store.orgs.list().map((o) => ({ orgId: o.orgId, createdAt: iso(o.createdAt) }));
  if (caller.role === 'admin') return ok({ orgs });
  return ok({ orgs: orgs.filter((o) => o.orgId === caller.orgId) });
}

export function deleteOrg(
  ctx: AuthorityContext,
  caller: Caller,
  orgId: string,
): Verdict<{ orgId: string; revoked: number }> {
  const event = { actor: actorOf(caller), subject: `org:${orgId}`, action: 'org.delete', orgId };
  const allowed = authorize(ctx, caller, 'admin', orgId, event);
  if (!allowed.ok) return allowed;
  const nowMs = ctx.now().getTime();
  const revoked = ctx.store.transaction(() => {
    let n = 0;
    const add = (kind: 'gateway' | 'proxy' | 'identity', subject: string) => {
      ctx.store.revocations.insert({ kind, orgId, subject, reason: 'org deleted', revokedBy: event.actor, at: nowMs });
      n++;
    };
    for (const g of ctx.store.enrollment.listGateways(orgId)) {
      ctx.store.enrollment.revokeGateway(orgId, g.gatewayId, nowMs);
      add('gateway', g.gatewayId);
    }
    for (const p of ctx.store.enrollment.listProxies().filter((p) => p.orgId === orgId)) {
      ctx.store.enrollment.revokeProxy(orgId, p.proxyId, nowMs);
      add('proxy', p.proxyId);
    }
    for (const i of ctx.store.orgs.listIdentities(orgId)) add('identity', i.identityId);
    ctx.store.orgs.revokeIdentities(orgId, nowMs);
    ctx.store.orgs.deletePolicies(orgId);
    ctx.store.issuance.destroyOrgAuthorityKeys(orgId);
    ctx.store.orgs.markDeleted(orgId, nowMs);
    ctx.audit.insert({ ...event, outcome: 'ok', reason: `${n} revocations` });
    return n;
  });
  ctx.keyring.forget(orgId);
  ctx.changes.raise();
  ctx.audit.log({ ...event, outcome: 'ok', reason: `${revoked} revocations` });
  return ok({ orgId, revoked });
}

export function addPolicy(
  ctx: AuthorityContext,
  caller: Caller,
  orgId: string,
  req: AddPolicyRequest,
): Verdict<PolicyRuleBody> {
  const rule: PolicyRule = {
    id: req.id ?? randomId('rule-'),
    orgId,
    subject: req.subject,
    gateways: [...req.gateways],
    targets: [...req.targets],
    modes: [...req.modes],
  };
  const event = { actor: actorOf(caller), subject: `org:${orgId}/policy:${rule.id}`, action: 'policy.add', orgId };
  const allowed = authorize(ctx, caller, 'org-admin', orgId, event);
  if (!allowed.ok) return allowed;
  const valid = validateRule(rule);
  if (!valid.ok) return deny(ctx, event, valid.code, valid.reason);
  const added = ctx.store.transaction(() => {
    if (ctx.store.orgs.policies(orgId).some((r) => r.id === rule.id)) return false;
    ctx.store.orgs.insertPolicy(rule, ctx.now().getTime());
    ctx.audit.insert({ ...event, outcome: 'ok', reason: JSON.stringify(rule) });
    return true;
  });
  if (!added) return deny(ctx, event, 'E_CONFLICT', `rule ${rule.id} exists`);
  ctx.audit.log({ ...event, outcome: 'ok' });
  return ok(rule);
}

export function listPolicies(ctx: AuthorityContext, caller: Caller, orgId: string): Verdict<ListPoliciesResponse> {
  const allowed = mayAct(ctx, caller, 'org-member', orgId);
  if (!allowed.ok) return allowed;
  return ok({ rules: ctx.store.orgs.policies(orgId) });
}

export function deletePolicy(
  ctx: AuthorityContext,
  caller: Caller,
  orgId: string,
  ruleId: string,
): Verdict<{ deleted: string }> {
  const event = { actor: actorOf(caller), subject: `org:${orgId}/policy:${ruleId}`, action: 'policy.delete', orgId };
  const allowed = authorize(ctx, caller, 'org-admin', orgId, event, { live: false });
  if (!allowed.ok) return allowed;
  const deleted = ctx.store.transaction(() => {
    if (!ctx.store.orgs.deletePolicy(orgId, ruleId)) return false;
    ctx.audit.insert({ ...event, outcome: 'ok' });
    return true;
  });
  if (!deleted) return deny(ctx, event, 'E_NOT_FOUND', `no rule ${ruleId}`);
  ctx.audit.log({ ...event, outcome: 'ok' });
  return ok({ deleted: ruleId });
}
