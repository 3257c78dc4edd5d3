/**
 * Revocation and the signed revocation feed. A revocation is a row with a growing seq; daemons poll
 * `revocationsSince(seq)` and check the feed's Ed25519 signature with the key they got at enrollment, so a
 * relayed or cached feed cannot be forged. The audit log is read the same way (seq-paged).
 */
import { sign } from 'node:crypto';
import type { Verdict } from '../errors/codes.js';
import {
  type AuditResponse,
  type FeedProxyList,
  type FeedRotation,
  type RevocationFeed,
  type RevokeRequest,
  type RevokeResponse,
  revocationFeedBytes,
} from '../protocol/api.js';
import type { AuthorityContext, Caller } from './context.js';
import { actorOf, authorize, deny, iso, ok } from './context.js';

export const FEED_PAGE = 1000;
export const AUDIT_PAGE = 1000;

export function revoke(ctx: AuthorityContext, caller: Caller, req: RevokeRequest): Verdict<RevokeResponse> {
  const { kind, subject } = req;
  const event = {
    actor: actorOf(caller),
    subject: `${kind}:${subject}`,
    action: `revoke.${kind}`,
    orgId: req.orgId ?? null,
  };
  const nowMs = ctx.now().getTime();
  // Resolve which org the subject belongs to, then authorize against THAT org (never the caller's claim).
  let orgId: string | null;
  let apply: () => void = () => {};
  switch (kind) {
    case 'gateway':
    case 'identity': {
      if (req.orgId === undefined)
        return deny(ctx, event, 'E_REQUEST_INVALID', `$.orgId: required to revoke a ${kind}`);
      orgId = req.orgId;
      if (kind === 'gateway') {
        if (!ctx.store.enrollment.gateway(orgId, subject))
          return authorizedNotFound(ctx, caller, orgId, event, `no gateway ${subject}`);
        apply = () => ctx.store.enrollment.revokeGateway(orgId!, subject, nowMs);
      } else {
        const identity = ctx.store.orgs.identity(orgId, subject);
        if (!identity) return authorizedNotFound(ctx, caller, orgId, event, `no identity ${subject}`);
        apply = () => ctx.store.orgs.revokeIdentity(identity.rowId, nowMs);
      }
      break;
    }
    case 'proxy': {
      orgId = req.orgId ?? null;
      if (!ctx.store.enrollment.proxy(orgId, subject))
        return authorizedNotFound(ctx, caller, orgId, event, `no proxy ${subject}`);
      apply = () => ctx.store.enrollment.revokeProxy(orgId, subject, nowMs);
      break;
    }
    case 'grant': {
      const grant = ctx.store.issuance.grant(subject);
      if (!grant) return authorizedNotFound(ctx, caller, req.orgId ?? caller.orgId, event, `no grant ${subject}`);
      orgId = grant.orgId;
      break;
    }
    case 'certificate': {
      const cert = ctx.store.issuance.certificate(subject.toLowerCase());
      if (!cert) return authorizedNotFound(ctx, caller, req.orgId ?? caller.orgId, event, `no certificate ${subject}`);
      orgId = cert.orgId;
      break;
    }
  }
  if (req.orgId !== undefined && req.orgId !== orgId) {
    return deny(ctx, event, 'E_ORG_MISMATCH', `${kind} ${subject} does not belong to org ${req.orgId}`);
  }
  const allowed = authorize(ctx, caller, 'org-admin', orgId, { ...event, orgId }, { live: false });
  if (!allowed.ok) return allowed;
  const normalized = kind === 'certificate' ? subject.toLowerCase() : subject;
  const seq = ctx.store.transaction(() => {
    apply();
    const n = ctx.store.revocations.insert({
      kind,
      orgId,
      subject: normalized,
      reason: req.reason ?? null,
      revokedBy: event.actor,
      at: nowMs,
    });
    ctx.audit.insert({ ...event, orgId, outcome: 'ok', reason: req.reason ?? null });
    return n;
  });
  ctx.changes.raise();
  ctx.audit.log({ ...event, orgId, outcome: 'ok', reason: req.reason ?? null });
  return ok({ seq });
}

/** A missing subject is reported as such only to a caller allowed to know about that org. */
function authorizedNotFound(
  ctx: AuthorityContext,
  caller: Caller,
  orgId: string | null,
  event: { actor: string; subject: string; action: string; orgId: string | null },
  reason: string,
): Verdict<never> {
  const allowed = authorize(ctx, caller, 'org-admin', orgId, event, { live: false });
  return allowed.ok ? deny(ctx, event, 'E_NOT_FOUND', reason) : allowed;
}

/**
 * The signed feed after `since`. `orgId` undefined: every entry (the admin, instance proxies); otherwise that
 * org's entries and the instance's (an org's gateways and proxies, its identities). `proxies` (gateways only)
 * is signed with the entries.
 */
export function revocationsSince(
  ctx: AuthorityContext,
  since: number,
  orgId?: string,
  proxies?: FeedProxyList,
  rotation?: FeedRotation,
): RevocationFeed {
  // The newest seq first, then the entries up to it: read the other way round, an entry committed in between
  // (another CA replica, the admin CLI) would be counted in `seq` without being carried, and skipped for good.
  const latest = ctx.store.revocations.latestSeq();
  const rows = ctx.store.revocations.since(since, FEED_PAGE, orgId, latest);
  const complete = rows.length < FEED_PAGE;
  const seq = complete ? Math.max(since, latest) : rows[rows.length - 1]!.seq;
  const unsigned = {
    since,
    seq,
    issuedAt: ctx.now().toISOString(),
    entries: rows.map((r) => ({ seq: r.seq, kind: r.kind, orgId: r.orgId, subject: r.subject, at: iso(r.at) })),
    ...(proxies ? { proxies } : {}),
    ...(rotation ? { rotation } : {}),
  };
  const signature = sign(null, revocationFeedBytes(unsigned), ctx.keyring.feedKey()).toString('base64');
  return { ...unsigned, signature };
}

/** Audit rows after `since`: all for the admin, the org's own for an org-admin. */
export function auditSince(ctx: AuthorityContext, caller: Caller, since: number): Verdict<AuditResponse> {
  if (caller.role === 'member')
    return deny(
      ctx,
      { actor: actorOf(caller), subject: 'audit', action: 'audit.read', orgId: caller.orgId },
      'E_FORBIDDEN',
      'members may not read the audit log',
    );
  const rows = ctx.store.audit.since(
    since,
    AUDIT_PAGE,
    caller.role === 'admin' ? undefined : (caller.orgId ?? undefined),
  );
  return ok({
    seq: rows.length > 0 ? rows[rows.length - 1]!.seq : since,
    entries: rows.map((r) => ({
      seq: r.seq,
      at: iso(r.at),
      actor: r.actor,
      subject: r.subject,
      action: r.action,
      outcome: r.outcome,
      code: r.code,
      reason: r.reason,
      orgId: r.orgId,
    })),
  });
}
