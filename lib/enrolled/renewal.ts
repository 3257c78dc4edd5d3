/**
 * When to renew a certificate: at about two thirds of its lifetime, with jitter so a fleet enrolled at the
 * same moment does not renew at the same moment (as step-ca does). Pure: clock and random are injected.
 */

export interface RenewalWindow {
  notBefore: Date;
  notAfter: Date;
}

export interface RenewalPolicy {
  /** Fraction of the lifetime at which renewal is due. */
  at: number;
  /** Width of the jitter as a fraction of the lifetime, centred on `at`. */
  jitter: number;
  /** Never schedule sooner than this many ms from now (a cert already past its renewal point retries soon, not in a spin). */
  minDelayMs: number;
}

export const DEFAULT_RENEWAL: RenewalPolicy = Object.freeze({ at: 2 / 3, jitter: 0.1, minDelayMs: 1000 });

/** The instant (ms since the epoch) at which to renew. */
export function renewalTime(
  cert: RenewalWindow,
  random: () => number,
  policy: RenewalPolicy = DEFAULT_RENEWAL,
): number {
  const start = cert.notBefore.getTime();
  const lifetime = Math.max(0, cert.notAfter.getTime() - start);
  const r = Math.min(Math.max(random(), 0), 1);
  const fraction = policy.at + (r - 0.5) * policy.jitter;
  return start + Math.round(lifetime * Math.min(Math.max(fraction, 0), 1));
}

/** Milliseconds from `nowMs` until renewal, at least `minDelayMs`. */
export function renewalDelay(
  cert: RenewalWindow,
  nowMs: number,
  random: () => number,
  policy: RenewalPolicy = DEFAULT_RENEWAL,
): number {
  return Math.max(policy.minDelayMs, renewalTime(cert, random, policy) - nowMs);
}

/** The earliest renewal among several certs (the gateway renews its whole set at once). */
export function earliestRenewal(
  certs: readonly RenewalWindow[],
  nowMs: number,
  random: () => number,
  policy: RenewalPolicy = DEFAULT_RENEWAL,
): number | undefined {
  if (certs.length === 0) return undefined;
  return Math.min(...certs.map((c) => renewalDelay(c, nowMs, random, policy)));
}

export interface RenewalSchedulerOptions {
  /** Validity windows of every certificate held now (read again at each scheduling). */
  windows: () => readonly RenewalWindow[];
  /** Renews (asks the CA, stores, reloads); a rejection is retried after `retryMs`. */
  renew: () => Promise<void>;
  /** A refusal that retrying cannot fix (revoked, superseded): the scheduler stops and reports it. */
  isFinal?: (err: unknown) => boolean;
  onFinal?: (err: unknown) => void;
  now?: () => number;
  random?: () => number;
  policy?: RenewalPolicy;
  /** Wait after a failed renewal, default 60 s. */
  retryMs?: number;
  log?: { info(fields: object, message: string): void; warn(fields: object, message: string): void };
}

/**
 * Renews at the earliest certificate's renewal point, and again after each renewal; one instance per daemon
 * (gateway and proxy alike). Timers are unref'd: a scheduler never keeps a process alive.
 */
export class RenewalScheduler {
  readonly #o: RenewalSchedulerOptions;
  #timer: NodeJS.Timeout | undefined;
  #running: Promise<void> | undefined;
  #stopped = true;
  /** When the next renewal is due (ms since the epoch), for status and metrics. */
  nextAt: number | undefined;

  constructor(options: RenewalSchedulerOptions) {
    this.#o = options;
  }

  start(): void {
    this.#stopped = false;
    this.reschedule();
  }

  /** Started and not stopped since (config renew, live). */
  get running(): boolean {
    return !this.#stopped;
  }

  stop(): void {
    this.#stopped = true;
    clearTimeout(this.#timer);
    this.#timer = undefined;
    this.nextAt = undefined;
  }

  /** Plans the next renewal from the certificates held now (after a reload or a renewal made elsewhere). */
  reschedule(): void {
    if (this.#stopped) return;
    const now = (this.#o.now ?? Date.now)();
    const delay = earliestRenewal(this.#o.windows(), now, this.#o.random ?? Math.random, this.#o.policy);
    if (delay === undefined) return;
    this.#arm(delay);
  }

  /** Renews now (never two at once); resolves when done, rejects with the CA's refusal. */
  renewNow(): Promise<void> {
    this.#running ??= this.#o.renew().finally(() => {
      this.#running = undefined;
    });
    return this.#running;
  }

  #arm(delay: number): void {
    clearTimeout(this.#timer);
    const now = (this.#o.now ?? Date.now)();
    this.nextAt = now + delay;
    // setTimeout's limit is ~24.8 days; a longer wait re-arms itself.
    const step = Math.min(delay, 2 ** 31 - 1);
    this.#timer = setTimeout(() => {
      if (step < delay) return this.#arm(delay - step);
      void this.renewNow().then(
        () => this.reschedule(),
        (err: unknown) => {
          if (this.#o.isFinal?.(err)) {
            this.stop();
            this.#o.onFinal?.(err);
            return;
          }
          const retry = this.#o.retryMs ?? 60_000;
          this.#o.log?.warn({ err: (err as Error)?.message ?? String(err), retryInMs: retry }, 'renewal failed');
          if (!this.#stopped) this.#arm(retry);
        },
      );
    }, step);
    this.#timer.unref();
  }
}
