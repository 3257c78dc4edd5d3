/**
 * Callers that have not proved who they are yet: logins, enrollments by token, requests signed by a
 * certificate (renewals and feed reads). Three limits, each per source (throttle.ts), each charged only by
 * failures: `login` (wrong client id or secret), `enroll` (an enrollment token that does not admit the
 * enrollment), `signed` (a certificate or signature that does not authenticate). A source that fails too often
 * in one of them waits, with E_RATE_LIMITED, before that kind of attempt is looked at again.
 *
 * Nothing here writes the database: refusals before authentication leave no audit row (a flood would otherwise
 * cost a row and an fsync each). They are counted instead, by endpoint and code, and logged sampled — the first
 * per source per minute, then how many more.
 *
 * No limit is keyed by anything an attacker can name (a client id) or shared by every source: either could be
 * drained by anyone to refuse the real holder. What one source cannot do, many can: see docs/security.md.
 */
import { type ErrorCode, refuse, type Verdict } from '../errors/codes.js';
import type { Logger } from '../runtime/log.js';
import { type FailurePolicy, FailureThrottle, type PenaltyBook, SampledLog, sourceKey } from './throttle.js';

export type UnauthenticatedBucket = 'login' | 'enroll' | 'signed';

export type UnauthenticatedPolicies = Record<UnauthenticatedBucket, FailurePolicy>;

/**
 * Sized for a site of hundreds of components behind one NAT address: they authenticate, so they are never
 * charged; these numbers bound only what failures one address may cost the CA.
 */
export const DEFAULT_UNAUTHENTICATED_POLICIES: UnauthenticatedPolicies = {
  login: { burst: 10, refillMs: 10_000, maxDelayMs: 60_000 },
  enroll: { burst: 20, refillMs: 1_000, maxDelayMs: 30_000 },
  signed: { burst: 100, refillMs: 100, maxDelayMs: 10_000 },
};

/** Where refusals are counted: a prom-client Counter fits. */
export interface RefusalCounter {
  inc(labels: { endpoint: string; code: string }): void;
}

export interface UnauthenticatedOptions {
  policies: UnauthenticatedPolicies;
  now: () => Date;
  logger?: Logger;
  counter?: RefusalCounter;
  /** Where each bucket's penalties are kept (default this process's memory; CA replicas share the store's). */
  books?: (bucket: UnauthenticatedBucket) => PenaltyBook;
}

interface Slots {
  active: number;
  waiting: Array<() => void>;
}

export class UnauthenticatedLimits {
  readonly #throttles: Record<UnauthenticatedBucket, FailureThrottle>;
  readonly #now: () => Date;
  readonly #logger: Logger | undefined;
  readonly #counter: RefusalCounter | undefined;
  readonly #log = new SampledLog();
  readonly #slots = new Map<string, Slots>();
  readonly #counts = new Map<string, number>();

  constructor(options: UnauthenticatedOptions) {
    const p = options.policies;
    this.#throttles = {
      login: new FailureThrottle(p.login, options.books?.('login')),
      enroll: new FailureThrottle(p.enroll, options.books?.('enroll')),
      signed: new FailureThrottle(p.signed, options.books?.('signed')),
    };
    this.#now = options.now;
    this.#logger = options.logger;
    this.#counter = options.counter;
  }

  /** New policies (a reload); waits already imposed stand. */
  configure(policies: UnauthenticatedPolicies): void {
    for (const bucket of Object.keys(this.#throttles) as UnauthenticatedBucket[]) {
      this.#throttles[bucket].policy = policies[bucket];
    }
  }

  get policies(): UnauthenticatedPolicies {
    return {
      login: this.#throttles.login.policy,
      enroll: this.#throttles.enroll.policy,
      signed: this.#throttles.signed.policy,
    };
  }

  /** Refused (E_RATE_LIMITED: counted, logged sampled) while `source` waits in `bucket`; charges nothing. */
  admit(bucket: UnauthenticatedBucket, endpoint: string, source: string | undefined): Verdict<true> {
    const key = sourceKey(source ?? 'local');
    const waiting = this.#throttles[bucket].check(key, this.#ms());
    if (!waiting.ok) this.#record(endpoint, key, waiting.code, waiting.reason);
    return waiting;
  }

  /**
   * A caller failed to authenticate: charged to its source in `bucket` (null: counted only, e.g. a bad access
   * token, which costs one indexed lookup), counted, logged sampled. Returns the refusal to answer with.
   */
  refuse<T = never>(
    bucket: UnauthenticatedBucket | null,
    endpoint: string,
    source: string | undefined,
    code: ErrorCode,
    reason: string,
  ): Verdict<T> {
    const key = sourceKey(source ?? 'local');
    const delayMs = bucket ? this.#throttles[bucket].fail(key, this.#ms()) : 0;
    this.#record(endpoint, key, code, reason, delayMs);
    return refuse(code, reason);
  }

  /**
   * A login's turn to hash a secret: a source has at most as many logins in flight as it has failures left
   * before its first wait, so a burst of concurrent guesses costs no more hashes than the same guesses one by
   * one. Others from that source wait their turn here (a slowdown, not a refusal); a source that starts waiting
   * meanwhile has its queued logins refused. Call the returned function when the hash is done.
   */
  async loginTurn(source: string | undefined): Promise<Verdict<() => void>> {
    const key = sourceKey(source ?? 'local');
    for (let woken = false; ; woken = true) {
      let admitted: Verdict<true>;
      let capacity: number;
      try {
        admitted = this.admit('login', 'login', source);
        const throttle = this.#throttles.login;
        capacity = admitted.ok ? Math.max(1, Math.floor(throttle.policy.burst - throttle.level(key, this.#ms()))) : 0;
      } catch (err) {
        // The penalties could not be read (the store is down): the turn this caller was woken for still passes on.
        if (woken) this.#wakeNext(key);
        throw err;
      }
      if (!admitted.ok) {
        if (woken) this.#wakeNext(key); // the turn this caller was woken for goes to the next in line
        return admitted;
      }
      const slots = this.#slots.get(key) ?? { active: 0, waiting: [] };
      this.#slots.set(key, slots);
      if (slots.active < capacity) {
        slots.active++;
        let released = false;
        return {
          ok: true,
          value: () => {
            if (released) return;
            released = true;
            slots.active--;
            this.#wakeNext(key);
          },
        };
      }
      // Woken but the turn is gone (a failure meanwhile lowered the capacity): first in line again.
      await new Promise<void>((resolve) => (woken ? slots.waiting.unshift(resolve) : slots.waiting.push(resolve)));
    }
  }

  /** Logs how many refusals went unlogged per source in the sampling windows that have ended. */
  flushLog(): void {
    for (const { key, suppressed } of this.#log.sweep(this.#ms())) {
      this.#logger?.info(
        { source: key, refusals: suppressed },
        'more unauthenticated requests refused from this source',
      );
    }
  }

  /** Refusals so far by endpoint and code (in-process tests; the daemon exports the counter). */
  count(endpoint: string, code?: ErrorCode): number {
    let n = 0;
    for (const [k, v] of this.#counts)
      if (k === `${endpoint} ${code}` || (!code && k.startsWith(`${endpoint} `))) n += v;
    return n;
  }

  #wakeNext(key: string): void {
    const slots = this.#slots.get(key);
    if (!slots) return;
    const next = slots.waiting.shift();
    if (next) next();
    else if (slots.active === 0) this.#slots.delete(key);
  }

  #record(endpoint: string, key: string, code: ErrorCode, reason: string, delayMs = 0): void {
    const k = `${endpoint} ${code}`;
    this.#counts.set(k, (this.#counts.get(k) ?? 0) + 1);
    this.#counter?.inc({ endpoint, code });
    const sample = this.#log.note(key, this.#ms());
    if (!sample.log) return;
    this.#logger?.info(
      {
        endpoint,
        code,
        reason,
        source: key,
        ...(delayMs > 0 ? { waitMs: delayMs } : {}),
        ...(sample.suppressed > 0 ? { unloggedBefore: sample.suppressed } : {}),
      },
      'unauthenticated request refused (first from this source this minute)',
    );
  }

  #ms(): number {
    return this.#now().getTime();
  }
}
