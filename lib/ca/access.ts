/**
 * Who the caller is: machine identities (client id + secret → short-lived access token), access tokens, and
 * one-time enrollment tokens. Secrets and tokens are stored only hashed (secrets.ts).
 */

import { refuse, type Verdict } from '../errors/codes.js';
import type {
  CreateEnrollmentTokenRequest,
  CreateIdentityRequest,
  CreateIdentityResponse,
  EnrollmentTokenResponse,
  LoginRequest,
  LoginResponse,
} from '../protocol/api.js';
import type { AuthorityContext, Caller, RequestInfo } from './context.js';
import { actorOf, authorize, deny, iso, ok, requireLiveOrg } from './context.js';
import { decoyHash, hashSecret, randomId, randomToken, tokenHash, verifySecret } from './secrets.js';
import type { EnrollmentTokenRow, IdentityRow } from './store.js';

let decoy: Promise<string> | undefined;

export async function login(
  ctx: AuthorityContext,
  req: LoginRequest,
  info: RequestInfo,
): Promise<Verdict<LoginResponse>> {
  const source = info.source ?? 'local';
  const proved = await provedIdentity(ctx, req, source);
  if (!proved.ok) return proved;
  const identity = proved.value;
  const nowMs = ctx.now().getTime();
  // From here the caller has proved the secret: its refusals and its login are audited.
  const event = { actor: req.clientId, subject: subjectOf(identity), action: 'login', source };
  if (identity.revokedAt !== null)
    return deny(ctx, { ...event, orgId: identity.orgId }, 'E_SUBJECT_REVOKED', 'identity was revoked');
  if (identity.orgId !== null && !requireLiveOrg(ctx, identity.orgId).ok) {
    return deny(ctx, { ...event, orgId: identity.orgId }, 'E_SUBJECT_REVOKED', "the identity's org was deleted");
  }
  const token = randomToken();
  const expiresAt = nowMs + ctx.limits.tokenTtlSec * 1000;
  ctx.store.transaction(() => {
    ctx.store.orgs.insertAccessToken(tokenHash(token), identity.rowId, nowMs, expiresAt);
    ctx.audit.insert({ ...event, orgId: identity.orgId, outcome: 'ok' });
  });
  ctx.audit.log({ ...event, orgId: identity.orgId, outcome: 'ok' });
  return ok({
    accessToken: token,
    expiresAt: iso(expiresAt),
    identity: { orgId: identity.orgId, identityId: identity.identityId, role: identity.role },
  });
}

/**
 * The identity whose secret the caller knows. Before the (expensive) hash, a source that failed too often waits
 * (a map lookup refuses it), and one source hashes no more secrets at once than it has failures left. Nothing
 * is keyed by the client id: anyone may name it, so a limit on it would let anyone lock its holder out.
 */
async function provedIdentity(ctx: AuthorityContext, req: LoginRequest, source: string): Promise<Verdict<IdentityRow>> {
  const turn = await ctx.unauthenticated.loginTurn(source);
  if (!turn.ok) return turn;
  try {
    const identity = ctx.store.orgs.identityByClientId(req.clientId);
    decoy ??= decoyHash(ctx.limits.scrypt);
    const matches = await verifySecret(req.clientSecret, identity?.secretHash ?? (await decoy));
    // Charged before the turn is handed on, so the next login in line sees this failure.
    if (!identity || !matches) {
      return ctx.unauthenticated.refuse(
        'login',
        'login',
        source,
        'E_AUTH_INVALID',
        'unknown client id or wrong secret',
      );
    }
    return ok(identity);
  } finally {
    turn.value();
  }
}

/** Resolves a bearer access token to its caller. Never audited (called on every request). */
export function authenticate(ctx: AuthorityContext, accessToken: string | undefined): Verdict<Caller> {
  if (!accessToken) return refuse('E_AUTH_REQUIRED', 'no access token');
  const row = ctx.store.orgs.accessToken(tokenHash(accessToken));
  if (!row) return refuse('E_AUTH_INVALID', 'unknown access token');
  if (row.revokedAt !== null) return refuse('E_TOKEN_REVOKED', 'access token was revoked');
  if (ctx.now().getTime() >= row.expiresAt)
    return refuse('E_TOKEN_EXPIRED', `access token expired at ${iso(row.expiresAt)}`);
  const i = row.identity;
  if (i.revokedAt !== null) return refuse('E_TOKEN_REVOKED', 'identity was revoked');
  if (i.orgId !== null && !requireLiveOrg(ctx, i.orgId).ok) return refuse('E_TOKEN_REVOKED', 'org was deleted');
  return ok({ orgId: i.orgId, identityId: i.identityId, role: i.role, groups: i.groups, rowId: i.rowId });
}

/** Ends an access token now (logout, or a test of E_TOKEN_REVOKED). */
export function revokeAccessToken(ctx: AuthorityContext, accessToken: string): boolean {
  return ctx.store.orgs.revokeAccessToken(tokenHash(accessToken), ctx.now().getTime());
}

/**
 * The admin credential, made once by init: the secret is returned here and never again. `insert` writes it;
 * init calls it inside the transaction that creates the instance CAs, so a failed init leaves nothing behind.
 */
export async function prepareAdminIdentity(
  ctx: AuthorityContext,
  identityId = 'admin',
): Promise<{ clientId: string; clientSecret: string; insert: () => void }> {
  const clientId = randomId('ca-admin-');
  const clientSecret = randomToken();
  const secretHash = await hashSecret(clientSecret, ctx.limits.scrypt);
  const insert = () => {
    ctx.store.orgs.insertIdentity({
      orgId: null,
      identityId,
      role: 'admin',
      groups: [],
      clientId,
      secretHash,
      createdAt: ctx.now().getTime(),
    });
  };
  return { clientId, clientSecret, insert };
}

export async function createIdentity(
  ctx: AuthorityContext,
  caller: Caller,
  orgId: string,
  req: CreateIdentityRequest,
): Promise<Verdict<CreateIdentityResponse>> {
  const event = {
    actor: actorOf(caller),
    subject: `org:${orgId}/identity:${req.identityId}`,
    action: 'identity.create',
    orgId,
  };
  const allowed = authorize(ctx, caller, 'org-admin', orgId, event);
  if (!allowed.ok) return allowed;
  if (ctx.store.orgs.identity(orgId, req.identityId))
    return deny(ctx, event, 'E_CONFLICT', `identity ${req.identityId} exists`);
  const clientId = randomId('ci-');
  const clientSecret = randomToken();
  const secretHash = await hashSecret(clientSecret, ctx.limits.scrypt);
  const groups = [...new Set(req.groups ?? [])];
  const created = ctx.store.transaction(() => {
    // Checked again inside the transaction: two concurrent creations raced through the await above.
    if (ctx.store.orgs.identity(orgId, req.identityId)) return false;
    ctx.store.orgs.insertIdentity({
      orgId,
      identityId: req.identityId,
      role: req.role,
      groups,
      clientId,
      secretHash,
      createdAt: ctx.now().getTime(),
    });
    ctx.audit.insert({ ...event, outcome: 'ok' });
    return true;
  });
  if (!created) return deny(ctx, event, 'E_CONFLICT', `identity ${req.identityId} exists`);
  ctx.audit.log({ ...event, outcome: 'ok' });
  return ok({ orgId, identityId: req.identityId, role: req.role, clientId, clientSecret });
}

/** A one-time enrollment token; orgId null = an instance proxy token (admin only). */
export function createEnrollmentToken(
  ctx: AuthorityContext,
  caller: Caller,
  orgId: string | null,
  req: CreateEnrollmentTokenRequest,
): Verdict<EnrollmentTokenResponse> {
  const event = {
    actor: actorOf(caller),
    subject: `${req.kind}:${req.subjectId}`,
    action: 'enrollment-token.create',
    orgId,
  };
  const allowed = authorize(ctx, caller, 'org-admin', orgId, event);
  if (!allowed.ok) return allowed;
  if (orgId === null && req.kind !== 'proxy') {
    return deny(ctx, event, 'E_REQUEST_INVALID', 'instance enrollment tokens are for proxies only');
  }
  const ttl = req.ttlSeconds ?? ctx.limits.enrollmentTokenTtlSec;
  if (ttl > ctx.limits.maxEnrollmentTokenTtlSec) {
    return deny(ctx, event, 'E_REQUEST_INVALID', `ttlSeconds above ${ctx.limits.maxEnrollmentTokenTtlSec}`);
  }
  const token = randomToken();
  const nowMs = ctx.now().getTime();
  const expiresAt = nowMs + ttl * 1000;
  ctx.store.transaction(() => {
    ctx.store.enrollment.insertToken({
      tokenHash: tokenHash(token),
      orgId,
      kind: req.kind,
      subjectId: req.subjectId,
      createdBy: event.actor,
      createdAt: nowMs,
      expiresAt,
    });
    ctx.audit.insert({ ...event, outcome: 'ok' });
  });
  ctx.audit.log({ ...event, outcome: 'ok' });
  return ok({ token, expiresAt: iso(expiresAt) });
}

/** Whether an enrollment token admits this enrollment (kind, org, subject), without spending it. */
export function checkEnrollmentToken(
  ctx: AuthorityContext,
  token: string,
  want: { kind: 'gateway' | 'proxy'; orgId: string | null; subjectId: string },
): Verdict<EnrollmentTokenRow> {
  const row = ctx.store.enrollment.token(tokenHash(token));
  if (!row) return refuse('E_AUTH_INVALID', 'unknown enrollment token');
  if (row.usedAt !== null) return refuse('E_TOKEN_USED', `enrollment token was used at ${iso(row.usedAt)}`);
  if (ctx.now().getTime() >= row.expiresAt)
    return refuse('E_TOKEN_EXPIRED', `enrollment token expired at ${iso(row.expiresAt)}`);
  if (row.orgId !== want.orgId) return refuse('E_ORG_MISMATCH', 'enrollment token belongs to another org');
  if (row.kind !== want.kind || row.subjectId !== want.subjectId) {
    return refuse('E_FORBIDDEN', `enrollment token is for ${row.kind} ${row.subjectId}`);
  }
  return ok(row);
}

/**
 * Checks and consumes an enrollment token for (kind, org, subject). Call inside the issuing transaction, so the
 * token is spent exactly when the certificates are recorded.
 */
export function consumeEnrollmentToken(
  ctx: AuthorityContext,
  token: string,
  want: { kind: 'gateway' | 'proxy'; orgId: string | null; subjectId: string },
): Verdict<EnrollmentTokenRow> {
  const row = checkEnrollmentToken(ctx, token, want);
  if (!row.ok) return row;
  if (!ctx.store.enrollment.useToken(row.value.tokenHash, ctx.now().getTime()))
    return refuse('E_TOKEN_USED', 'enrollment token was used');
  return row;
}

function subjectOf(i: IdentityRow): string {
  return i.orgId === null ? `admin:${i.identityId}` : `org:${i.orgId}/identity:${i.identityId}`;
}
