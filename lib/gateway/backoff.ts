/**
 * Reconnect delays for the tunnel supervisors: exponential growth, full jitter, a cap. Pure: the random
 * source is injected, so the schedule is tested without sleeping.
 *
 * Full jitter (a uniform draw in [0, ceiling)) spreads a herd of gateways that lost the same proxy at the same
 * instant; the small base gets a restarted proxy its gateways back within about two seconds.
 */

export interface BackoffPolicy {
  /** Ceiling of the first retry's delay in ms (the first retry waits at most this). */
  baseMs: number;
  /** Largest ceiling in ms, whatever the attempt. */
  capMs: number;
  /** Growth of the ceiling per failed attempt. */
  factor: number;
  /** A tunnel that stayed up this long resets the attempt counter. */
  stableMs: number;
  /** Largest ceiling while the proxy is simply not there (refused, unreachable): it is cheap to ask again,
   * and a proxy that comes back is reached within this. Default 1000. */
  unreachableCapMs?: number;
}

export const DEFAULT_BACKOFF: BackoffPolicy = Object.freeze({
  baseMs: 250,
  capMs: 30_000,
  factor: 2,
  stableMs: 10_000,
  unreachableCapMs: 1000,
});

/**
 * Why a tunnel attempt failed, for the retry schedule: `unreachable` when nothing answered at the address
 * (refused, reset, no route: the proxy is down or restarting; retry fast, the attempt costs the proxy nothing),
 * `refused` when the proxy answered and said no (host certificate, user certificate, a timeout mid-handshake:
 * back off hard, retrying will not change its mind soon).
 */
export type FailureKind = 'unreachable' | 'refused';

const UNREACHABLE_CODES = new Set([
  'ECONNREFUSED',
  'ECONNRESET',
  'EHOSTUNREACH',
  'ENETUNREACH',
  'EADDRNOTAVAIL',
  'EPIPE',
]);

export function classifyFailure(err: unknown): FailureKind {
  const e = err as { code?: unknown; level?: unknown } | undefined;
  if (typeof e?.code === 'string' && UNREACHABLE_CODES.has(e.code)) return 'unreachable';
  return 'refused';
}

/** Delay before retry number `attempt` after a failure of this kind. */
export function retryDelay(
  attempt: number,
  kind: FailureKind,
  random: () => number,
  policy: BackoffPolicy = DEFAULT_BACKOFF,
): number {
  if (kind === 'unreachable') {
    const cap = Math.min(policy.capMs, policy.unreachableCapMs ?? DEFAULT_BACKOFF.unreachableCapMs ?? 1000);
    return backoffDelay(attempt, random, { ...policy, capMs: Math.max(1, cap) });
  }
  return backoffDelay(attempt, random, policy);
}

/** The ceiling of retry number `attempt` (0 = first retry): min(cap, base · factor^attempt). */
export function backoffCeiling(attempt: number, policy: BackoffPolicy = DEFAULT_BACKOFF): number {
  const n = Math.max(0, Math.floor(attempt));
  // Past ~60 doublings the power overflows to Infinity; min() with the cap keeps it finite.
  return Math.min(policy.capMs, policy.baseMs * policy.factor ** n);
}

/** Delay before retry number `attempt`: uniform in [0, ceiling). `random` returns [0, 1) like Math.random. */
export function backoffDelay(attempt: number, random: () => number, policy: BackoffPolicy = DEFAULT_BACKOFF): number {
  const r = random();
  const unit = Number.isFinite(r) ? Math.min(Math.max(r, 0), 1 - Number.EPSILON) : 0;
  return Math.floor(unit * backoffCeiling(attempt, policy));
}

/**
 * The retry number to use after a tunnel that was up went down: back to 0 when it had stayed up long enough
 * (a proxy restart: reconnect fast), else unchanged (a flapping peer keeps backing off).
 */
export function attemptAfterTunnel(attempt: number, upForMs: number, policy: BackoffPolicy = DEFAULT_BACKOFF): number {
  return upForMs >= policy.stableMs ? 0 : attempt;
}
