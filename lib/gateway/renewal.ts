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
