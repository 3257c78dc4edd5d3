/**
 * Renewal retires what it replaces (the stolen-copy defence). Each gateway and proxy has one current generation
 * of certificates (a bundle: TLS leaf and SSH certificates); only the current TLS certificate may renew. After a
 * renewal the previous generation stays usable until the successor is first used to authenticate (feed read or
 * renewal) or `supersedeGraceSec` passes, whichever is first; then every certificate of it is revoked in the
 * feed (kind 'certificate', revoked_by RETIRED_BY), so proxies refuse its SSH certificate and gateways its TLS
 * one. A copy of a state directory therefore stops working once the real component renews, and cannot renew
 * beside it: the second renewal with the same predecessor is refused E_CERT_SUPERSEDED. The one exception is a
 * retry after a lost response: the predecessor may renew again when the new CSR's key is the successor's key.
 */
import { createHash, type KeyObject } from 'node:crypto';
import { refuse, type Verdict } from '../errors/codes.js';
import { type AuthorityContext, iso, ok } from './context.js';
import type { ComponentRef, Generation } from './store-generations.js';

/** The revoked_by of a retirement: tells a superseded certificate from a revoked one. */
export const RETIRED_BY = 'ca:renewal';

/** How the presented certificate stands: the current one, the previous (not yet retired), or not tracked. */
export type Standing = 'current' | 'previous' | 'untracked';

export const spkiHash = (key: KeyObject): string =>
  createHash('sha256')
    .update(key.export({ type: 'spki', format: 'der' }))
    .digest('hex');

/** A bundle's generation: `serials[0]` is its TLS leaf. */
export function generationOf(serials: string[], tlsKey: KeyObject): Generation {
  return { serial: serials[0]!, serials, spki: spkiHash(tlsKey) };
}

export function componentOf(peer: {
  kind: string;
  orgId: string | null;
  id: string;
  replica?: string | null;
}): ComponentRef {
  if (peer.kind === 'gateway' && peer.replica != null) {
    return { kind: 'gateway', orgId: peer.orgId, id: peer.id, replica: peer.replica };
  }
  return { kind: peer.kind === 'gateway' ? 'gateway' : 'proxy', orgId: peer.orgId, id: peer.id };
}

/** How audit rows and messages name a component: `gateway:gw1`, `gateway:gw1/replica-a`, `proxy:p1`. */
export const componentName = (ref: ComponentRef): string =>
  `${ref.kind}:${ref.id}${ref.replica != null ? `/${ref.replica}` : ''}`;

/**
 * Judges an authenticated certificate against its component's generations. `retiredAt`: the verifier found it
 * retired. Using the current certificate retires a waiting previous generation (its first use).
 */
export function standingOf(
  ctx: AuthorityContext,
  ref: ComponentRef,
  serial: string,
  retiredAt: number | undefined,
): Verdict<Standing> {
  const gens = ctx.store.generations.of(ref);
  if (retiredAt !== undefined) return superseded(ctx, ref, serial, `retired at ${iso(retiredAt)}`);
  // A replica is always tracked from its enrollment on: no row means the gateway was enrolled again without it.
  if (ref.replica != null && !gens) return superseded(ctx, ref, serial, 'its replica was replaced');
  if (!gens?.current) return ok('untracked');
  if (serial === gens.current.serial) {
    if (gens.previous) retirePrevious(ctx, ref, 'superseded: its successor was used');
    return ok('current');
  }
  if (serial === gens.previous?.serial) return ok('previous');
  return superseded(ctx, ref, serial, 'not the current certificate');
}

/**
 * May a renewal authenticated with this standing go ahead? The previous generation only as a retry after a lost
 * response (the CSR key is the current certificate's key): 'retry'. Judged when the request is authenticated and
 * again inside the renewal's transaction (renew.ts), on what the store holds then.
 */
export function renewalAllowed(
  ctx: AuthorityContext,
  ref: ComponentRef,
  serial: string,
  standing: Standing,
  csrKey: KeyObject,
): Verdict<'renew' | 'retry'> {
  if (standing !== 'previous') return ok('renew');
  const current = ctx.store.generations.of(ref)?.current;
  if (current && current.spki === spkiHash(csrKey)) return ok('retry');
  return superseded(ctx, ref, serial, 'and this request is not a retry with the successor key');
}

/**
 * Records the generation a renewal issued; call inside its transaction. A renewal makes the generation it
 * replaces the previous one (retired at first use of `gen` or after the grace); a retry replaces the current
 * generation (never delivered: retired at once) and leaves the previous one waiting as it was.
 */
export function installRenewal(
  ctx: AuthorityContext,
  ref: ComponentRef,
  gen: Generation,
  mode: 'renew' | 'retry',
  presented: { serial: string; createdAt: number; subjectUri: string },
): void {
  const store = ctx.store.generations;
  const gens = store.of(ref);
  if (mode === 'retry') {
    if (gens?.current) retire(ctx, ref, gens.current.serials, 'superseded: replaced by a renewal retry');
    store.setCurrent(ref, gen);
    return;
  }
  // An untracked predecessor (enrolled before generations were recorded): its bundle is what was signed with it.
  const serials = gens?.current?.serials ?? store.bundleOf(presented.subjectUri, presented.createdAt);
  store.setCurrent(ref, gen, {
    serial: presented.serial,
    serials: serials.includes(presented.serial) ? serials : [presented.serial, ...serials],
    retireAt: ctx.now().getTime() + ctx.limits.supersedeGraceSec * 1000,
  });
}

/**
 * Records the generation an enrollment issued; call inside its transaction. Enrolling an id again replaces the
 * component: what the old enrollment held (current and previous generations) is retired at once, so the old
 * host's certificates stop working everywhere, not only at its next renewal. A gateway enrolled without a replica
 * name replaces the whole gateway, its replicas too (each one's certificates retired, its row dropped); a replica
 * enrolled again (`ref.replica`, its row written by the caller) replaces that replica only.
 */
export function installEnrollment(ctx: AuthorityContext, ref: ComponentRef, gen: Generation): void {
  const gens = ctx.store.generations.of(ref);
  const old = [...(gens?.current?.serials ?? []), ...(gens?.previous?.serials ?? [])];
  if (old.length > 0) retire(ctx, ref, old, 'replaced by a new enrollment');
  if (ref.kind === 'gateway' && ref.replica == null && ref.orgId !== null) {
    for (const r of ctx.store.generations.replicas(ref.orgId, ref.id)) {
      const serials = [...(r.current?.serials ?? []), ...(r.previous?.serials ?? [])];
      const replica = { ...ref, replica: r.replica };
      if (serials.length > 0) retire(ctx, replica, serials, 'replaced by a new enrollment of its gateway');
    }
    ctx.store.generations.dropReplicas(ref.orgId, ref.id);
  }
  ctx.store.generations.setCurrent(ref, gen);
  if (gens?.previous) ctx.store.generations.clearPrevious(ref);
}

/** Retires every previous generation whose grace has passed; returns how many. Runs on feed reads and a timer. */
export function retireDue(ctx: AuthorityContext): number {
  const due = ctx.store.generations.due(ctx.now().getTime());
  for (const ref of due) retirePrevious(ctx, ref, 'superseded: renewal grace passed');
  return due.length;
}

function retirePrevious(ctx: AuthorityContext, ref: ComponentRef, why: string): void {
  ctx.store.transaction(() => {
    const previous = ctx.store.generations.of(ref)?.previous;
    if (!previous) return;
    retire(ctx, ref, previous.serials, why);
    ctx.store.generations.clearPrevious(ref);
  });
}

/** Revokes certificates as retired (one audit row); held feed reads wake. */
function retire(ctx: AuthorityContext, ref: ComponentRef, serials: string[], why: string): void {
  const at = ctx.now().getTime();
  const event = {
    actor: RETIRED_BY,
    subject: componentName(ref),
    action: 'certificate.retire',
    orgId: ref.orgId,
    outcome: 'ok' as const,
    reason: `${why}: ${serials.join(', ')}`,
  };
  ctx.store.transaction(() => {
    for (const subject of serials) {
      ctx.store.revocations.insert({
        kind: 'certificate',
        orgId: ref.orgId,
        subject,
        reason: why,
        revokedBy: RETIRED_BY,
        at,
      });
    }
    ctx.audit.insert(event);
  });
  ctx.audit.log(event);
  ctx.changes.raise();
}

function superseded(ctx: AuthorityContext, ref: ComponentRef, serial: string, detail: string): Verdict<never> {
  const current = ctx.store.generations.of(ref)?.current;
  const successor = current ? ctx.store.issuance.certificate(current.serial) : undefined;
  const when = successor ? ` at ${iso(successor.createdAt)} (current certificate ${successor.serial})` : '';
  return refuse('E_CERT_SUPERSEDED', `certificate ${serial} was renewed already${when}; ${detail}`);
}
