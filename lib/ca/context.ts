/**
 * What every part of the Authority shares: the store, the keyring, the audit trail, the clock, the limits, and
 * the authorization rules (who may act on which org). Authorization is decided here once; the operations in
 * sibling files call these helpers and never re-implement them.
 */
import { createHash } from 'node:crypto';
import { type ErrorCode, refuse, type Verdict } from '../errors/codes.js';
import type { Role } from '../protocol/api.js';
import type { AuditEvent, AuditTrail } from './audit.js';
import type { ChangeSignal } from './changes.js';
import type { Keyring } from './keyring.js';
import type { ScryptParams } from './secrets.js';
import type { CaStore } from './store.js';
import type { UnauthenticatedLimits } from './unauthenticated.js';

/** An authenticated API caller (a logged-in identity, or the local CLI acting as admin). */
export interface Caller {
  orgId: string | null;
  identityId: string;
  role: Role;
  groups: string[];
  /** identities.row_id; 0 for the local CLI. */
  rowId: number;
}

/** Where a request came from: a network address for rate limits and audit. */
export interface RequestInfo {
  source?: string;
}

export interface AuthorityLimits {
  /** Access token lifetime (default 15 min). */
  tokenTtlSec: number;
  enrollmentTokenTtlSec: number;
  maxEnrollmentTokenTtlSec: number;
  /** Grant lifetime when the request names none (default 5 min), and the most a request may ask. */
  grantTtlSec: number;
  maxGrantTtlSec: number;
  gatewayTlsLifetimeSec: number;
  gatewaySshLifetimeSec: number;
  proxyTlsLifetimeSec: number;
  proxySshLifetimeSec: number;
  /** How long a renewed component's previous certificates stay usable unless its successor is used first. */
  supersedeGraceSec: number;
  scrypt: ScryptParams;
}

export interface AuthorityContext {
  store: CaStore;
  keyring: Keyring;
  audit: AuditTrail;
  now: () => Date;
  trustDomain: string;
  version: string;
  limits: AuthorityLimits;
  /** Per-source limits on callers not yet authenticated; their refusals are counted, never audited. */
  unauthenticated: UnauthenticatedLimits;
  /** Raised after commits that change what feed readers see (held feed reads wait on it). */
  changes: ChangeSignal;
}

/** The audit actor name of a caller. */
export function actorOf(caller: Caller): string {
  if (caller.role === 'admin') return caller.rowId === 0 ? 'local-admin' : `admin:${caller.identityId}`;
  return `org:${caller.orgId}/identity:${caller.identityId}`;
}

/** A refusal of an authenticated caller, audited (one row + one log line); see UnauthenticatedLimits for the rest. */
export function deny<T = never>(
  ctx: AuthorityContext,
  e: Omit<AuditEvent, 'outcome' | 'code' | 'reason'>,
  code: ErrorCode,
  reason: string,
): Verdict<T> {
  ctx.audit.record({ ...e, outcome: 'refused', code, reason });
  return refuse(code, reason);
}

export function requireAdmin(caller: Caller): Verdict<Caller> {
  return caller.role === 'admin' ? ok(caller) : refuse('E_FORBIDDEN', 'only the instance admin may do this');
}

/** The instance admin, or an org-admin of exactly this org. Another org's caller gets E_ORG_MISMATCH. */
export function requireOrgAdmin(caller: Caller, orgId: string): Verdict<Caller> {
  if (caller.role === 'admin') return ok(caller);
  if (caller.orgId !== orgId) return refuse('E_ORG_MISMATCH', `caller belongs to org ${caller.orgId}, not ${orgId}`);
  return caller.role === 'org-admin' ? ok(caller) : refuse('E_FORBIDDEN', 'only an org-admin may do this');
}

/** Any identity of this org (or the admin). */
export function requireOrgMember(caller: Caller, orgId: string): Verdict<Caller> {
  if (caller.role === 'admin' || caller.orgId === orgId) return ok(caller);
  return refuse('E_ORG_MISMATCH', `caller belongs to org ${caller.orgId}, not ${orgId}`);
}

/** The org exists and was not deleted. */
export function requireLiveOrg(ctx: AuthorityContext, orgId: string): Verdict<true> {
  const org = ctx.store.orgs.get(orgId);
  if (!org || org.deletedAt !== null) return refuse('E_NOT_FOUND', `no org ${orgId}`);
  return ok(true);
}

/** Who may act on an org: only the instance admin; an org-admin of it (or the admin); any identity of it (or the admin). */
export type Needs = 'admin' | 'org-admin' | 'org-member';

/**
 * The authorization every operation opens with, unaudited (reads): the caller's role and org for `orgId` (null:
 * the instance, which only the admin may act on), then, unless `live` is false, that the org exists and was not
 * deleted. `'token'` is a one-time enrollment token that names this very subject: it stands in for the role.
 */
export function mayAct(
  ctx: AuthorityContext,
  caller: Caller | 'token',
  needs: Needs,
  orgId: string | null,
  { live = true }: { live?: boolean } = {},
): Verdict<true> {
  if (caller !== 'token') {
    const role =
      orgId === null || needs === 'admin'
        ? requireAdmin(caller)
        : needs === 'org-admin'
          ? requireOrgAdmin(caller, orgId)
          : requireOrgMember(caller, orgId);
    if (!role.ok) return role;
  }
  return live && orgId !== null ? requireLiveOrg(ctx, orgId) : ok(true);
}

/** mayAct for an operation that changes something: a refusal is audited as `event` (deny). */
export function authorize(
  ctx: AuthorityContext,
  caller: Caller | 'token',
  needs: Needs,
  orgId: string | null,
  event: Omit<AuditEvent, 'outcome' | 'code' | 'reason'>,
  options: { live?: boolean } = {},
): Verdict<true> {
  const allowed = mayAct(ctx, caller, needs, orgId, options);
  return allowed.ok ? allowed : deny(ctx, event, allowed.code, allowed.reason);
}

export function ok<T>(value: T): Verdict<T> {
  return { ok: true, value };
}

export const iso = (ms: number): string => new Date(ms).toISOString();
export const sha256Hex = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
