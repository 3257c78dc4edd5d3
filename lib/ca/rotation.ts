/**
 * Phased rotation of a certificate authority, instance-wide or per org, with no traffic lost (as Teleport's
 * init → update_clients → update_servers → standby, with rollback):
 *
 *   standby ── start ──▶ init ── next ──▶ update_clients ── next ──▶ update_servers ── next ──▶ standby
 *                          └──────────────── rollback ──▶ rollback ── next ──▶ standby (the old CA alone)
 *
 * - init: a new CA exists; both are trusted everywhere. update_clients: a client-certificate CA signs with the
 *   new key; update_servers: a server (or host) certificate CA too. rollback: the old key signs again, both
 *   trusted. standby: one CA (the new one, or the old one after a rollback); the other's key is destroyed after
 *   the grace.
 * - Components learn each phase through the signed feed: every gateway and proxy is sent a rotation version (a
 *   digest of the epochs of the CAs it depends on); when it changes it renews at once (make-before-break: the
 *   renewal brings certificates from the CA that signs now and the trust lists of the phase), then says the new
 *   version on its next read. That is its acknowledgement.
 * - `next` moves on only when every live component (read the feed in the last OFFLINE_AFTER_MS) acknowledged
 *   the phase; before update_servers, when no grant issued before init (which trusts the old servers only) is
 *   left; into standby, when no grant certificate signed by the CA being dropped is left. Offline components are
 *   listed, not waited for; when they come back with a certificate of the dropped CA they are refused with
 *   E_ROTATION_MISSED and must re-enroll.
 *
 * One owner: every phase change is decided here (the admin CLI and the daemon's automatic mode call `advance`).
 */
import { createHash } from 'node:crypto';
import { GatewayError } from '../errors/codes.js';
import type { AuthorityContext } from './context.js';
import { authorityId, ORG_CA_PURPOSES, PROXY_CA_PURPOSES, type RotatablePurpose } from './keyring.js';
import type { ComponentRef } from './store-generations.js';
import { type RotationPhase, type RotationState, signerOf } from './store-rotations.js';

/** A component that has not read the feed for this long is offline: listed, not waited for. */
export const OFFLINE_AFTER_MS = 30_000;

export type RotationScope = { instance: true } | { orgId: string };

export interface RotationStatus {
  /** The name to pass as --authority. */
  authority: RotatablePurpose;
  /** authorityId: "instance:<purpose>" or "org:<org>:<purpose>". */
  id: string;
  phase: RotationPhase;
  epoch: number;
  /** The row that signs new certificates now, and the rows trusted. */
  signer: string;
  trusted: string[];
  phaseSince: string | null;
  automatic: { graceMs: number } | null;
  /** Live components that have not acknowledged the phase yet. */
  pending: string[];
  /** Components that have not read the feed for OFFLINE_AFTER_MS (not waited for). */
  offline: string[];
  /** Why `next` cannot move on now (empty: it can). */
  waitingFor: string[];
  /** Seconds until the certificates or grants it waits for have expired (0: none). */
  secondsLeft: number;
}

const scopeOrg = (scope: RotationScope): string | null => ('orgId' in scope ? scope.orgId : null);

const INSTANCE_PURPOSES: readonly RotatablePurpose[] = [...PROXY_CA_PURPOSES, 'api-root'];

/** The CAs of a scope, by the name an operator passes (api-root: the CA API's own root, which clients pin). */
export function purposesOf(scope: RotationScope): readonly RotatablePurpose[] {
  return 'orgId' in scope ? ORG_CA_PURPOSES : INSTANCE_PURPOSES;
}

function checkPurpose(scope: RotationScope, name: string): RotatablePurpose {
  const names = purposesOf(scope);
  const found = names.find((p) => p === name);
  if (!found) {
    throw new GatewayError(
      'E_REQUEST_INVALID',
      `--authority ${JSON.stringify(name)}: expected one of ${names.join(', ')}${'orgId' in scope ? '' : ' (instance)'}`,
    );
  }
  return found;
}

// ---- what each component depends on, and its rotation version ----------------------------------------------

/** A gateway, an org proxy or an instance proxy, as rotation sees it. */
export type RotationSubject =
  | { kind: 'gateway'; orgId: string }
  | { kind: 'proxy'; orgId: string }
  | { kind: 'instance-proxy' };

/**
 * The CAs (base ids) whose certificates a component holds or whose keys it trusts: a gateway, its TLS CA, the
 * SSH client CAs of both proxy scopes, the host CAs it checks proxies with, and the CA of the grants it admits;
 * a proxy, the four proxy CAs of its scope. Both pin the CA API root.
 */
export function dependencies(subject: RotationSubject): string[] {
  const api = authorityId(null, 'api-root');
  if (subject.kind === 'gateway') {
    const o = subject.orgId;
    return [
      api,
      authorityId(o, 'gateway-server'),
      authorityId(o, 'gateway-client'),
      authorityId(o, 'proxy-ssh-client'),
      authorityId(o, 'proxy-ssh-server'),
      authorityId(null, 'proxy-ssh-client'),
      authorityId(null, 'proxy-ssh-server'),
    ];
  }
  const org = subject.kind === 'proxy' ? subject.orgId : null;
  return [api, ...PROXY_CA_PURPOSES.map((p) => authorityId(org, p))];
}

/** The rotation version a component should hold: a digest of the epochs of the CAs it depends on. */
export function rotationVersion(ctx: AuthorityContext, subject: RotationSubject): string {
  const ids = dependencies(subject);
  const epochs = ctx.store.rotations.epochs(ids);
  const text = ids.map((id, i) => `${id}=${epochs[i]}`).join('\n');
  return createHash('sha256').update(text).digest('hex').slice(0, 24);
}

interface Component {
  ref: ComponentRef;
  subject: RotationSubject;
  /** How `status` names it: "gateway:<org>/<id>" or "proxy:<org or instance>/<id>". */
  label: string;
}

/** The live (not revoked) components that depend on a CA. */
function affected(ctx: AuthorityContext, base: string): Component[] {
  const out: Component[] = [];
  for (const org of ctx.store.orgs.list()) {
    for (const g of ctx.store.enrollment.listGateways(org.orgId)) {
      if (g.revokedAt !== null || ctx.store.revocations.has('gateway', org.orgId, g.gatewayId)) continue;
      const subject: RotationSubject = { kind: 'gateway', orgId: org.orgId };
      if (dependencies(subject).includes(base)) {
        // Each replica acknowledges for itself; the gateway's own row only when it is enrolled without one.
        const ref: ComponentRef = { kind: 'gateway', orgId: org.orgId, id: g.gatewayId };
        const replicas = ctx.store.generations.replicas(org.orgId, g.gatewayId);
        if (replicas.length === 0 || ctx.store.generations.of(ref)?.current) {
          out.push({ ref, subject, label: `gateway:${org.orgId}/${g.gatewayId}` });
        }
        for (const r of replicas) {
          out.push({
            ref: { ...ref, replica: r.replica },
            subject,
            label: `gateway:${org.orgId}/${g.gatewayId}/${r.replica}`,
          });
        }
      }
    }
  }
  for (const p of ctx.store.enrollment.listProxies()) {
    if (p.revokedAt !== null || ctx.store.revocations.has('proxy', p.orgId, p.proxyId)) continue;
    const subject: RotationSubject = p.orgId === null ? { kind: 'instance-proxy' } : { kind: 'proxy', orgId: p.orgId };
    if (dependencies(subject).includes(base)) {
      out.push({
        ref: { kind: 'proxy', orgId: p.orgId, id: p.proxyId },
        subject,
        label: `proxy:${p.orgId ?? 'instance'}/${p.proxyId}`,
      });
    }
  }
  return out;
}

// ---- status and the conditions of `next` -----------------------------------------------------------------------

export function rotationStatus(ctx: AuthorityContext, scope: RotationScope, name?: string): RotationStatus[] {
  const purposes = name === undefined ? purposesOf(scope) : [checkPurpose(scope, name)];
  return purposes.map((p) => statusOf(ctx, ctx.keyring.rotation(scopeOrg(scope), p)));
}

function statusOf(ctx: AuthorityContext, s: RotationState): RotationStatus {
  const now = ctx.now().getTime();
  const pending: string[] = [];
  const offline: string[] = [];
  // Also in standby after a rotation (epoch > 0): who has not yet dropped the old CA (after a suspected
  // compromise the operator needs to know when it is trusted nowhere). `next` is not asked there.
  if (s.phase !== 'standby' || s.epoch > 0) {
    for (const c of affected(ctx, s.authorityId)) {
      const seen = ctx.store.seen.of(c.ref);
      if (!seen || now - seen.lastSeenAt > OFFLINE_AFTER_MS) offline.push(c.label);
      else if (seen.rotationAck !== rotationVersion(ctx, c.subject)) pending.push(c.label);
    }
  }
  const waitingFor: string[] = [];
  let secondsLeft = 0;
  if (pending.length > 0)
    waitingFor.push(`${pending.length} component(s) to acknowledge ${s.phase}: ${pending.join(', ')}`);
  const expiring = expiringBefore(ctx, s, now);
  if (expiring) {
    waitingFor.push(expiring.what);
    secondsLeft = Math.max(0, Math.ceil((expiring.until - now) / 1000));
  }
  const signer = signerOf(s);
  return {
    authority: s.purpose as RotatablePurpose,
    id: s.authorityId,
    phase: s.phase,
    epoch: s.epoch,
    signer,
    trusted: s.nextId === null ? [s.currentId] : [signer, signer === s.currentId ? s.nextId : s.currentId],
    phaseSince: s.phaseAt > 0 ? new Date(s.phaseAt).toISOString() : null,
    automatic: s.graceMs === null || s.phase === 'standby' ? null : { graceMs: s.graceMs },
    pending,
    offline,
    waitingFor,
    secondsLeft,
  };
}

const SERVER_CAS_IN_GRANTS: ReadonlySet<string> = new Set(['gateway-server', 'proxy-pki-server']);

/** What must expire before `next` may leave this phase, if anything. */
function expiringBefore(
  ctx: AuthorityContext,
  s: RotationState,
  now: number,
): { what: string; until: number } | undefined {
  if (s.phase === 'update_clients' && SERVER_CAS_IN_GRANTS.has(s.purpose) && s.startedAt !== null) {
    // Grants issued before init carry only the old server CA: the servers may not switch while one is valid.
    const g = ctx.store.rotations.grantsIssuedBefore(s.orgId ?? undefined, s.startedAt, now);
    if (g.count > 0 && g.lastNotAfter !== null) {
      return { what: `${g.count} grant(s) issued before init (they trust the old CA only)`, until: g.lastNotAfter };
    }
  }
  const dropping = s.phase === 'update_servers' ? s.currentId : s.phase === 'rollback' ? s.nextId : null;
  if (dropping !== null) {
    const c = ctx.store.rotations.grantCertificatesSignedBy(dropping, now);
    if (c.count > 0 && c.lastNotAfter !== null) {
      return { what: `${c.count} grant certificate(s) signed by ${dropping} still valid`, until: c.lastNotAfter };
    }
  }
  return undefined;
}

// ---- commands -------------------------------------------------------------------------------------------------

export type RotationAction = 'start' | 'next' | 'rollback';

export interface RotationChange {
  authority: RotatablePurpose;
  id: string;
  from: RotationPhase;
  to: RotationPhase;
  status: RotationStatus;
}

const NEXT_PHASE: Partial<Record<RotationPhase, RotationPhase>> = {
  init: 'update_clients',
  update_clients: 'update_servers',
  update_servers: 'standby',
  rollback: 'standby',
};

/**
 * Moves one CA's rotation by one step. `start` creates the new CA (graceMs: automatic mode, each phase lasting
 * at least that long); `next` moves one phase when the conditions hold (else E_ROTATION_PENDING with what it
 * waits for); `rollback` goes back to the old CA from any phase before standby. Audited; the change signal wakes
 * held feed reads so the fleet hears of it at once.
 */
export function advance(
  ctx: AuthorityContext,
  scope: RotationScope,
  name: string,
  action: RotationAction,
  o: { actor: string; graceMs?: number | null } = { actor: 'local-admin' },
): RotationChange {
  const purpose = checkPurpose(scope, name);
  const orgId = scopeOrg(scope);
  if (orgId !== null) {
    const org = ctx.store.orgs.get(orgId);
    if (!org || org.deletedAt !== null) throw new GatewayError('E_NOT_FOUND', `no org ${orgId}`);
  }
  const change = ctx.store.transaction(() => {
    const s = ctx.keyring.rotation(orgId, purpose);
    const now = ctx.now().getTime();
    const next = step(ctx, s, action, now, o.graceMs ?? null);
    ctx.store.rotations.put(next);
    // The CA API's own certificate follows its root: from the new root at update_servers, the old at rollback.
    // A running `serve` notices the new certificate within a second and serves it to new connections.
    if (purpose === 'api-root' && (next.phase === 'update_servers' || next.phase === 'rollback')) {
      ctx.keyring.issueApiServerCertificate(ctx.keyring.apiServerNames(), new Date(now));
    }
    ctx.audit.insert({
      actor: o.actor,
      subject: s.authorityId,
      action: `rotation.${action}`,
      outcome: 'ok',
      reason: `${s.phase} → ${next.phase}${next.phase === 'standby' ? ` (trusted: ${next.currentId})` : ''}`,
      orgId,
    });
    return { authority: purpose, id: s.authorityId, from: s.phase, to: next.phase, state: next };
  });
  ctx.changes.raise();
  const { state, ...rest } = change;
  return { ...rest, status: statusOf(ctx, state) };
}

function step(
  ctx: AuthorityContext,
  s: RotationState,
  action: RotationAction,
  now: number,
  graceMs: number | null,
): RotationState {
  const moved = { ...s, epoch: s.epoch + 1, phaseAt: now };
  if (action === 'start') {
    if (s.phase !== 'standby') {
      throw new GatewayError('E_CONFLICT', `${s.authorityId} is already rotating (phase ${s.phase})`);
    }
    const generation = s.generation + 1;
    const nextId = `${s.authorityId}@${generation}`;
    ctx.keyring.createSuccessor(s.orgId, s.purpose as RotatablePurpose, nextId, ctx.trustDomain, new Date(now));
    return { ...moved, phase: 'init', nextId, generation, startedAt: now, graceMs };
  }
  if (action === 'rollback') {
    if (s.phase === 'standby' || s.phase === 'rollback' || s.nextId === null) {
      throw new GatewayError(
        'E_CONFLICT',
        `${s.authorityId} is in phase ${s.phase}: rollback is possible from init, update_clients or update_servers`,
      );
    }
    return { ...moved, phase: 'rollback' };
  }
  const to = NEXT_PHASE[s.phase];
  if (to === undefined || s.nextId === null) {
    throw new GatewayError('E_CONFLICT', `${s.authorityId} is not rotating (phase standby): use rotate start`);
  }
  const status = statusOf(ctx, s);
  if (status.waitingFor.length > 0) {
    throw new GatewayError(
      'E_ROTATION_PENDING',
      `${s.authorityId} stays in ${s.phase}: waiting for ${status.waitingFor.join('; ')}` +
        (status.secondsLeft > 0 ? ` (about ${status.secondsLeft} s left)` : ''),
    );
  }
  if (to !== 'standby') return { ...moved, phase: to };
  // Standby: one CA again. The other's key is destroyed now, or after the grace of an automatic rotation.
  const keep = s.phase === 'rollback' ? s.currentId : s.nextId;
  const drop = s.phase === 'rollback' ? s.nextId : s.currentId;
  const destroyAt = now + (s.graceMs ?? 0);
  if (destroyAt <= now) ctx.keyring.destroyKey(drop);
  return {
    ...moved,
    phase: 'standby',
    currentId: keep,
    nextId: null,
    startedAt: null,
    graceMs: null,
    retiredId: drop,
    destroyAt: destroyAt <= now ? null : destroyAt,
  };
}

/**
 * The daemon's periodic step: moves automatic rotations whose phase lasted its grace and whose conditions hold,
 * and destroys retired keys that are due. Returns what changed (for the log).
 */
export function tickRotations(ctx: AuthorityContext): RotationChange[] {
  const now = ctx.now().getTime();
  const changes: RotationChange[] = [];
  for (const s of ctx.store.rotations.list()) {
    if (s.destroyAt !== null && s.destroyAt <= now && s.retiredId !== null) {
      ctx.store.transaction(() => {
        ctx.keyring.destroyKey(s.retiredId as string);
        ctx.store.rotations.put({ ...s, destroyAt: null });
      });
      continue;
    }
    if (s.graceMs === null || s.phase === 'standby' || now - s.phaseAt < s.graceMs) continue;
    if (statusOf(ctx, s).waitingFor.length > 0) continue;
    const scope: RotationScope = s.orgId === null ? { instance: true } : { orgId: s.orgId };
    try {
      changes.push(advance(ctx, scope, s.purpose, 'next', { actor: 'automatic-rotation' }));
    } catch (err) {
      // Another process moved it first, or a condition changed since: the next tick looks again.
      if (!(err instanceof GatewayError)) throw err;
    }
  }
  return changes;
}
