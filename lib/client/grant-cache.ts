/**
 * Reuses a grant for new connections until shortly before it expires, then gets a fresh one. Each stream
 * still runs its own handshakes; only the CA round trip (login, policy, two signatures) is saved.
 *
 * The freshness decision is pure (injected clock); the cache coalesces concurrent refreshes so a burst of
 * local connections costs one CA request.
 */
import { accept, refuse, type Verdict } from '../errors/codes.js';
import type { ClientGrant, GrantSpec } from './grant.js';

/** Refresh this long before the earliest certificate expiry: a handshake started later could fail mid-way. */
export const DEFAULT_REFRESH_MARGIN_MS = 30_000;

/** Is the grant good for a NEW connection at `nowMs`? Refuses with E_GRANT_EXPIRED inside the margin. */
export function grantFreshness(
  grant: Pick<ClientGrant, 'expiresAtMs'>,
  nowMs: number,
  marginMs = DEFAULT_REFRESH_MARGIN_MS,
): Verdict<number> {
  const left = grant.expiresAtMs - nowMs;
  if (left <= marginMs) {
    return refuse(
      'E_GRANT_EXPIRED',
      `grant has ${Math.max(0, Math.round(left / 1000))} s left (refresh margin ${marginMs / 1000} s)`,
    );
  }
  return accept(left);
}

export interface GrantCacheOptions {
  obtain: (spec: GrantSpec) => Promise<ClientGrant>;
  /** Milliseconds since the epoch (default Date.now). */
  now?: () => number;
  refreshMarginMs?: number;
}

export class GrantCache {
  readonly #obtain: (spec: GrantSpec) => Promise<ClientGrant>;
  readonly #now: () => number;
  readonly #margin: number;
  readonly #grants = new Map<string, ClientGrant>();
  readonly #pending = new Map<string, Promise<ClientGrant>>();

  constructor(opts: GrantCacheOptions) {
    this.#obtain = opts.obtain;
    this.#now = opts.now ?? Date.now;
    this.#margin = opts.refreshMarginMs ?? DEFAULT_REFRESH_MARGIN_MS;
  }

  /** A fresh grant for `spec`: the cached one while it has more than the margin left, else a new one. */
  async get(spec: GrantSpec): Promise<ClientGrant> {
    const key = specKey(spec);
    const cached = this.#grants.get(key);
    if (cached && grantFreshness(cached, this.#now(), this.#margin).ok) return cached;
    const pending = this.#pending.get(key);
    if (pending) return pending;
    const p = this.#obtain(spec).then(
      (grant) => {
        this.#pending.delete(key);
        this.#grants.set(key, grant);
        return grant;
      },
      (err: unknown) => {
        this.#pending.delete(key);
        throw err;
      },
    );
    this.#pending.set(key, p);
    return p;
  }

  /**
   * Drops a grant the far side refused (expired or revoked), so the next `get` asks the CA again. True when it
   * was the cached one: when many streams fail on the same grant, only the first drops it (and says so); the
   * others find the replacement, cached or pending, and no further CA request is made.
   */
  invalidate(grant: ClientGrant): boolean {
    const key = specKey(grant.spec);
    if (this.#grants.get(key) !== grant) return false;
    this.#grants.delete(key);
    return true;
  }

  /** Grants currently held (for status output). */
  get size(): number {
    return this.#grants.size;
  }
}

function specKey(s: GrantSpec): string {
  const target = 'name' in s.target ? `name:${s.target.name}` : `hp:${s.target.host}:${s.target.port}`;
  return JSON.stringify([s.orgId, s.gatewayId, target, s.mode, s.ttlSeconds ?? null]);
}
