/**
 * Token buckets keyed by a string (a client id, a source address). Pure apart from its map: time is passed in,
 * so tests step the clock instead of sleeping. The map is bounded: the oldest keys are dropped first, which can
 * only forgive an attacker spread over more keys than `maxKeys`, never block an honest one.
 */
import { accept, refuse, type Verdict } from '../protocol/errors.js';

export interface BucketPolicy {
  /** Attempts allowed at once. */
  burst: number;
  /** Attempts regained per second. */
  perSecond: number;
}

interface Bucket {
  tokens: number;
  at: number;
}

export class RateLimiter {
  readonly #buckets = new Map<string, Bucket>();
  readonly #policy: BucketPolicy;
  readonly #maxKeys: number;

  constructor(policy: BucketPolicy, maxKeys = 10_000) {
    this.#policy = policy;
    this.#maxKeys = maxKeys;
  }

  /** Takes one token for `key` at `nowMs`; refuses with E_RATE_LIMITED and how long to wait. */
  take(key: string, nowMs: number): Verdict<{ remaining: number }> {
    const { burst, perSecond } = this.#policy;
    const prev = this.#buckets.get(key);
    const elapsed = prev ? Math.max(0, nowMs - prev.at) / 1000 : 0;
    const tokens = prev ? Math.min(burst, prev.tokens + elapsed * perSecond) : burst;
    if (tokens < 1) {
      this.#buckets.set(key, { tokens, at: nowMs });
      const waitSec = Math.ceil((1 - tokens) / perSecond);
      return refuse('E_RATE_LIMITED', `retry in ${waitSec} s`);
    }
    this.#buckets.delete(key); // re-insert: Map order is then least-recently-used first
    this.#buckets.set(key, { tokens: tokens - 1, at: nowMs });
    if (this.#buckets.size > this.#maxKeys) {
      const oldest = this.#buckets.keys().next().value;
      if (oldest !== undefined) this.#buckets.delete(oldest);
    }
    return accept({ remaining: Math.floor(tokens - 1) });
  }

  /** Seconds until `key` may try again (0 when it may now). */
  retryAfterSec(key: string, nowMs: number): number {
    const b = this.#buckets.get(key);
    if (!b) return 0;
    const tokens = Math.min(this.#policy.burst, b.tokens + (Math.max(0, nowMs - b.at) / 1000) * this.#policy.perSecond);
    return tokens >= 1 ? 0 : Math.ceil((1 - tokens) / this.#policy.perSecond);
  }

  get size(): number {
    return this.#buckets.size;
  }
}
