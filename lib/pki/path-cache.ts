/**
 * The one cache of THE verifier (verify.ts): paths it has already built, so a peer that presents the same
 * certificate on every stream (the gateway's to each client, a grant certificate to the gateway, a client's
 * outer certificate to the proxy) is parsed and has its signatures checked once, not on every stream.
 *
 * What is kept is only what the bytes alone decide: the parsed certificates and the issuer path whose every
 * signature verified, under one exact set of trust anchors. The key is the SHA-256 of the exact certificate
 * bytes the peer presented, in their order, and the identity of the anchor set (the hash of its certificates,
 * in order; verify.ts `loadTrustAnchors`): anchors that change (a rotation, a reload with other CAs) are another
 * set, so a path built under the old ones is not found. Everything that can change while the bytes stay the
 * same (validity by the caller's clock, revocations, the leaf's purpose and identity, the grant, route and what
 * the caller checks after) is judged by the verifier on every call, hit or not.
 *
 * Only paths that verified are kept: a refused chain is judged in full each time, and a peer without a
 * certificate from our CAs cannot fill the cache. Beside it, with each verdict object the path it was given on
 * (rememberVerdictPath): what lets verify.ts `verifyAgain` judge that verdict again later in the same TLS session
 * (validity and revocations by then) without reading the certificate again. Bounded, least recently used first out. A module-level
 * singleton on purpose: every listener and dialer of a process shares it through the verifier, and nothing
 * outside lib/pki reaches it except for its counters.
 */
import { createHash } from 'node:crypto';
import type { ParsedCert } from './x509.js';

export interface CachedPath<A> {
  /** Leaf first, each signed by the next; the last one was signed by `anchor`. */
  path: ParsedCert[];
  anchor: A;
}

export interface PathCacheStats {
  hits: number;
  misses: number;
  size: number;
  capacity: number;
}

/** Enough for every peer a daemon sees at once in practice; an entry is a few KiB of parsed certificates. */
export const PATH_CACHE_CAPACITY = 1024;

const entries = new Map<string, CachedPath<unknown>>();
let capacity = PATH_CACHE_CAPACITY;
let hits = 0;
let misses = 0;

/** The cache key of a chain under an anchor set: length-prefixed DERs, so no two chains share a key. */
export function pathKey(anchorSetId: string, ders: readonly Buffer[]): string {
  const h = createHash('sha256');
  const len = Buffer.alloc(4);
  for (const d of ders) {
    len.writeUInt32BE(d.length);
    h.update(len).update(d);
  }
  return `${anchorSetId}:${h.digest('hex')}`;
}

export function cachedPath<A>(key: string): CachedPath<A> | undefined {
  const hit = entries.get(key);
  if (!hit) {
    misses++;
    return undefined;
  }
  hits++;
  entries.delete(key); // most recently used last
  entries.set(key, hit);
  return hit as CachedPath<A>;
}

export function rememberPath<A>(key: string, value: CachedPath<A>): void {
  entries.delete(key);
  entries.set(key, value);
  trim();
}

function trim(): void {
  while (entries.size > capacity) {
    const oldest = entries.keys().next().value as string;
    entries.delete(oldest);
  }
}

/**
 * The path a verdict was given on, for verify.ts `verifyAgain` (a verdict judged again later in the same TLS
 * session): kept with the verdict object itself (a WeakMap: it goes when the verdict goes), not by key, so only
 * the holder of that very verdict can ask. Nothing is kept while the cache is off (capacity 0): then every
 * judgement is made in full, as the setup bench's comparison means it.
 */
let verdictPaths = new WeakMap<object, unknown>();

export function rememberVerdictPath<J>(verdict: object, judged: J): void {
  if (capacity > 0) verdictPaths.set(verdict, judged);
}

export function verdictPath<J>(verdict: object): J | undefined {
  return capacity > 0 ? (verdictPaths.get(verdict) as J | undefined) : undefined;
}

/** Sets how many paths are kept (0: none, every chain judged in full); tests and the setup bench's comparison. */
export function setPathCacheCapacity(n: number): void {
  capacity = Math.max(0, Math.floor(n));
  trim();
}

export function pathCacheStats(): PathCacheStats {
  return { hits, misses, size: entries.size, capacity };
}

/** Empties the cache (tests; nothing in the daemons needs it: keys carry the anchor set). */
export function clearPathCache(): void {
  entries.clear();
  verdictPaths = new WeakMap();
  hits = 0;
  misses = 0;
}
