/**
 * The revocation feed as each reader sees it, and the long-poll over it. A reader names the last seq it holds
 * (`since`) and, for a gateway, the version of the proxy list it holds; it is answered at once when it is behind,
 * otherwise the read is held until the change signal brings news for it or the wait ends (then the same empty
 * answer). Held reads never keep state beyond their promise: the listener goes when the read ends or aborts.
 */

import type { Verdict } from '../errors/codes.js';
import { type FeedProxyList, type FeedRotation, proxyListVersion, type RevocationFeed } from '../protocol/api.js';
import { type AuthorityContext, type Caller, ok } from './context.js';
import { gatewayProxies } from './enroll.js';
import type { Peer } from './renew.js';
import { revocationsSince } from './revocation.js';
import { type RotationSubject, rotationVersion } from './rotation.js';

/** A feed reader: an API caller (bearer token) or a peer (gateway or proxy signing with its certificate). */
export type FeedViewer = Caller | Peer;

export interface FeedQuery {
  since: number;
  /** The proxy list version the reader holds (gateways); absent: it holds none. */
  proxiesVersion?: string;
  /** The rotation version a gateway or proxy applied ("-": none yet); absent: it knows nothing of rotation. */
  rotation?: string;
}

/** Which org's entries a reader sees: undefined for all (the admin, instance proxies). */
function viewerOrg(viewer: FeedViewer): string | undefined {
  if ('role' in viewer) return viewer.role === 'admin' ? undefined : (viewer.orgId ?? undefined);
  return viewer.kind === 'instance-proxy' ? undefined : (viewer.orgId ?? undefined);
}

/** The proxy list a gateway peer is sent; nobody else gets one. */
export function proxyListFor(ctx: AuthorityContext, viewer: FeedViewer): FeedProxyList | undefined {
  if ('role' in viewer || viewer.kind !== 'gateway' || viewer.orgId === null) return undefined;
  const list = gatewayProxies(ctx, viewer.orgId);
  return { version: proxyListVersion(list), list };
}

/** The rotation version a gateway or proxy peer should hold (rotation.ts); nobody else gets one. */
export function rotationFor(ctx: AuthorityContext, viewer: FeedViewer): FeedRotation | undefined {
  if ('role' in viewer) return undefined;
  let subject: RotationSubject;
  if (viewer.kind === 'gateway') {
    if (viewer.orgId === null) return undefined;
    subject = { kind: 'gateway', orgId: viewer.orgId };
  } else {
    subject = viewer.orgId === null ? { kind: 'instance-proxy' } : { kind: 'proxy', orgId: viewer.orgId };
  }
  return { version: rotationVersion(ctx, subject), apiRoots: ctx.keyring.apiRootFingerprints() };
}

/** The signed feed for this reader, and whether it tells the reader anything it does not hold yet. */
export function feedFor(
  ctx: AuthorityContext,
  viewer: FeedViewer,
  query: FeedQuery,
): { feed: RevocationFeed; news: boolean } {
  const proxies = proxyListFor(ctx, viewer);
  const rotation = query.rotation === undefined ? undefined : rotationFor(ctx, viewer);
  const feed = revocationsSince(ctx, query.since, viewerOrg(viewer), proxies, rotation);
  const news =
    feed.entries.length > 0 ||
    (proxies !== undefined && proxies.version !== query.proxiesVersion) ||
    (rotation !== undefined && rotation.version !== query.rotation);
  return { feed, news };
}

/**
 * The feed, held up to `waitMs` until there is news for this reader. `admit` is asked once, only when the read
 * must wait: it may refuse (too many held reads) or return the signal that ends the wait early (client gone,
 * server draining). `before` runs before each look (due certificate retirements). At the end of the wait or on
 * abort, the current (possibly empty) feed.
 */
export async function awaitFeed(
  ctx: AuthorityContext,
  viewer: FeedViewer,
  query: FeedQuery,
  wait: { waitMs: number; admit?: () => Verdict<AbortSignal | undefined>; before?: () => void },
): Promise<Verdict<RevocationFeed>> {
  const deadline = Date.now() + wait.waitMs;
  wait.before?.();
  const first = feedFor(ctx, viewer, query);
  if (first.news || wait.waitMs <= 0) return ok(first.feed);
  const admitted = wait.admit ? wait.admit() : ok(undefined);
  if (!admitted.ok) return admitted;
  const signal = admitted.value;
  for (;;) {
    const remaining = deadline - Date.now();
    if (remaining <= 0 || signal?.aborted) break;
    // A change elsewhere (another org's revocation) wakes every held read; each looks again and most wait on.
    const why = await ctx.changes.next(remaining, signal);
    if (why !== 'changed') break;
    wait.before?.();
    const { feed, news } = feedFor(ctx, viewer, query);
    if (news) return ok(feed);
  }
  return ok(feedFor(ctx, viewer, query).feed);
}
