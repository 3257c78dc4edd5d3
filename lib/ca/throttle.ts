/**
 * Penalties for failed authentication, per source (as OpenSSH's PerSourcePenalties): a source may fail `burst`
 * times at once; each further failure makes it wait, and the wait doubles with every failure (from `refillMs`
 * up to `maxDelayMs`). Failures are forgotten one per `refillMs` of quiet, and not while a source is serving a
 * wait, so a source that keeps failing keeps its longest wait. Only failures are charged: a caller that proves
 * who it is costs nothing here, so a site's components renewing and reading the feed at once never meet a limit.
 *
 * Pure apart from its penalty book: time is passed in, so tests step the clock instead of sleeping. The book in
 * memory is bounded: the least recently charged keys are dropped first, which can only forgive a source, never
 * block one; on PostgreSQL the replicas share one book in the store (store-penalties.ts), charged there by one
 * atomic statement that computes what `chargePenalty` computes here.
 */

import { accept, refuse, type Verdict } from '../errors/codes.js';
import { readAddress } from '../protocol/address.js';

export interface FailurePolicy {
  /** Failures a source may make at once before it has to wait. */
  burst: number;
  /** One failure is forgotten per this much quiet; also the first wait, which doubles with each further failure. */
  refillMs: number;
  /** The longest wait. */
  maxDelayMs: number;
}

export interface Penalty {
  /** Failures not yet forgotten at `at`. */
  level: number;
  /** The last failure. */
  at: number;
  /** Until when the source waits (attempts before then are refused unseen). */
  until: number;
}

/**
 * Where penalties are kept: this process's memory (one CA), or the store every CA replica shares
 * (store-penalties.ts), so a source cannot multiply its attempts by the number of replicas.
 */
export interface PenaltyBook {
  get(key: string): Penalty | undefined;
  /**
   * Charges one failure of `key` at `nowMs` and returns its penalty after it: `chargePenalty` of the penalty it
   * had, as one step no other charge of the same key (another replica's) interleaves with.
   */
  charge(key: string, nowMs: number, policy: FailurePolicy): Penalty;
}

/** Past this level the wait is at its longest already; the cap bounds how long forgiving takes. */
export function levelCap(policy: FailurePolicy): number {
  const steps = Math.ceil(Math.log2(Math.max(1, policy.maxDelayMs / policy.refillMs))) + 1;
  return policy.burst + steps;
}

/** Failures not yet forgotten at `nowMs`: quiet time counts from the later of the last failure and its wait's end. */
export function decayedLevel(p: Penalty, nowMs: number, policy: FailurePolicy): number {
  const quiet = Math.max(0, nowMs - Math.max(p.at, p.until));
  return Math.max(0, p.level - quiet / policy.refillMs);
}

/** The wait a source at `level` is made to serve: none within the burst, then doubling up to the longest. */
export function penaltyDelay(level: number, policy: FailurePolicy): number {
  const over = Math.ceil(level - policy.burst);
  return over > 0 ? Math.min(policy.maxDelayMs, policy.refillMs * 2 ** (over - 1)) : 0;
}

/** The penalty after one more failure at `nowMs` (pure: the memory book applies it; the store's SQL mirrors it). */
export function chargePenalty(prev: Penalty | undefined, nowMs: number, policy: FailurePolicy): Penalty {
  const level = Math.min(levelCap(policy), (prev ? decayedLevel(prev, nowMs, policy) : 0) + 1);
  const delay = penaltyDelay(level, policy);
  const until = delay > 0 ? Math.max(prev?.until ?? 0, nowMs + delay) : (prev?.until ?? 0);
  return { level, at: nowMs, until };
}

/** Penalties in memory, bounded: the least recently charged keys are dropped first (which only forgives). */
export class MemoryPenaltyBook implements PenaltyBook {
  readonly #penalties = new Map<string, Penalty>();
  readonly #maxKeys: number;

  constructor(maxKeys = 10_000) {
    this.#maxKeys = maxKeys;
  }
  get(key: string): Penalty | undefined {
    return this.#penalties.get(key);
  }
  set(key: string, penalty: Penalty): void {
    this.#penalties.delete(key); // re-insert: Map order is then least recently charged first
    this.#penalties.set(key, penalty);
    if (this.#penalties.size > this.#maxKeys) {
      const oldest = this.#penalties.keys().next().value;
      if (oldest !== undefined) this.#penalties.delete(oldest);
    }
  }
  charge(key: string, nowMs: number, policy: FailurePolicy): Penalty {
    const penalty = chargePenalty(this.#penalties.get(key), nowMs, policy);
    this.set(key, penalty);
    return penalty;
  }
  get size(): number {
    return this.#penalties.size;
  }
}

export class FailureThrottle {
  readonly #penalties: PenaltyBook;
  #policy: FailurePolicy;

  constructor(policy: FailurePolicy, book: PenaltyBook = new MemoryPenaltyBook()) {
    this.#policy = policy;
    this.#penalties = book;
  }

  get policy(): FailurePolicy {
    return this.#policy;
  }

  /** New numbers (a reload); penalties already imposed stand. */
  set policy(policy: FailurePolicy) {
    this.#policy = policy;
  }

  /** Refused (E_RATE_LIMITED, with how long to wait) while `key` is waiting; charges nothing. */
  check(key: string, nowMs: number): Verdict<true> {
    const wait = this.waitMs(key, nowMs);
    return wait > 0 ? refuse('E_RATE_LIMITED', `retry in ${Math.ceil(wait / 1000)} s`) : accept(true);
  }

  /** How long `key` still waits (0 when it may try now); never more than the longest wait (a clock set back). */
  waitMs(key: string, nowMs: number): number {
    const p = this.#penalties.get(key);
    return p ? Math.min(this.#policy.maxDelayMs, Math.max(0, p.until - nowMs)) : 0;
  }

  /** Failures of `key` not yet forgotten. */
  level(key: string, nowMs: number): number {
    const p = this.#penalties.get(key);
    return p ? decayedLevel(p, nowMs, this.#policy) : 0;
  }

  /** Records one failure of `key`; returns the wait it imposes from now (0 within the burst). */
  fail(key: string, nowMs: number): number {
    return penaltyDelay(this.#penalties.charge(key, nowMs, this.#policy).level, this.#policy);
  }
}

/**
 * The key a network source is limited by: an IPv4 address (also when it arrives mapped, ::ffff:a.b.c.d), or the
 * /64 an IPv6 address belongs to — one host is usually given a whole /64, so per-address keys would let it
 * spread over 2^64 of them. Anything else (an in-process caller) is its own key.
 */
export function sourceKey(source: string): string {
  const address = readAddress(source);
  if (typeof address === 'string') return source;
  if (address.family === 4) return address.text;
  const hextets: string[] = [];
  for (let i = 0; i < 8; i += 2) hextets.push(((address.bytes[i]! << 8) | address.bytes[i + 1]!).toString(16));
  return `${hextets.join(':')}::/64`;
}

/**
 * Log sampling per key: the first event of a key in a window is logged, later ones only counted; the count is
 * handed back with the key's next logged event, or by `sweep` once the window has ended.
 */
export class SampledLog {
  readonly #windows = new Map<string, { start: number; suppressed: number }>();
  readonly #windowMs: number;
  readonly #maxKeys: number;

  constructor(windowMs = 60_000, maxKeys = 10_000) {
    this.#windowMs = windowMs;
    this.#maxKeys = maxKeys;
  }

  /** Whether to log this event of `key`, and how many of its events went unlogged in its previous window. */
  note(key: string, nowMs: number): { log: boolean; suppressed: number } {
    const w = this.#windows.get(key);
    if (w && nowMs - w.start < this.#windowMs) {
      w.suppressed++;
      return { log: false, suppressed: 0 };
    }
    this.#windows.delete(key);
    this.#windows.set(key, { start: nowMs, suppressed: 0 });
    if (this.#windows.size > this.#maxKeys) {
      const oldest = this.#windows.keys().next().value;
      if (oldest !== undefined) this.#windows.delete(oldest);
    }
    return { log: true, suppressed: w?.suppressed ?? 0 };
  }

  /** Ends the windows that are over: the keys whose events went unlogged in them, with how many. */
  sweep(nowMs: number): Array<{ key: string; suppressed: number }> {
    const out: Array<{ key: string; suppressed: number }> = [];
    for (const [key, w] of this.#windows) {
      // Windows are inserted in start order: the first one still open ends the sweep.
      if (nowMs - w.start < this.#windowMs) break;
      this.#windows.delete(key);
      if (w.suppressed > 0) out.push({ key, suppressed: w.suppressed });
    }
    return out;
  }
}
