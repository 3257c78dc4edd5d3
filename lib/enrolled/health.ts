/**
 * What an enrolled component reports about its own standing, the same way in the gateway and the proxy:
 * readiness (revoked first, then a stale feed, then the daemon's own check) and the feed and certificate
 * metrics. A revoked component answers 503 E_SUBJECT_REVOKED; a stale feed 503 E_FEED_STALE, while tunnels
 * and streams carry on (a stale feed means revocations stopped arriving, not that traffic must stop).
 */
import type { DaemonMetrics } from '../runtime/metrics.js';
import type { Readiness } from '../runtime/ops.js';
import type { FeedHealth } from './feed.js';

export interface Standing {
  /** Why this component no longer serves (revoked, superseded), or undefined. */
  revoked: () => string | undefined;
  /** The feed's health; undefined when the feed is off (revocation_poll = 0). */
  feed: () => FeedHealth | undefined;
}

/** Composes readiness: the component's standing decides before its own check. */
export function enrolledReadiness(standing: Standing, own: () => Readiness): Readiness {
  const revoked = standing.revoked();
  if (revoked?.startsWith('E_ROTATION_MISSED')) {
    return { ready: false, code: 'E_ROTATION_MISSED', reason: `${revoked}; enroll again to serve` };
  }
  if (revoked !== undefined) {
    return { ready: false, code: 'E_SUBJECT_REVOKED', reason: `revoked: ${revoked}; enroll again to serve` };
  }
  const feed = standing.feed();
  if (feed?.stale) {
    const last = feed.lastSuccessMs === undefined ? 'never' : new Date(feed.lastSuccessMs).toISOString();
    return {
      ready: false,
      code: 'E_FEED_STALE',
      reason: `revocation feed not read for over ${Math.round(feed.staleAfterMs / 1000)} s (last success ${last})${
        feed.lastError ? `: ${feed.lastError}` : ''
      }`,
    };
  }
  return own();
}

/** infisical_<daemon>_feed_last_success_timestamp_seconds, _revoked and the certificate expiry gauge. */
export function registerStandingMetrics(
  metrics: DaemonMetrics,
  standing: Standing,
  certificates: { notAfterMs: () => number | undefined; nextRenewalMs: () => number | undefined },
): void {
  const p = metrics.prefix;
  metrics.gauge(
    `${p}feed_last_success_timestamp_seconds`,
    'Last successful read of the CA revocation feed',
    [],
    (g) => {
      const last = standing.feed()?.lastSuccessMs;
      g.set(last === undefined ? 0 : last / 1000);
    },
  );
  metrics.gauge(`${p}revoked`, '1 when this component learned it is revoked (it then serves nothing)', [], (g) =>
    g.set(standing.revoked() === undefined ? 0 : 1),
  );
  metrics.gauge(`${p}certificate_expiry_timestamp_seconds`, 'When the earliest certificate held ends', [], (g) => {
    const at = certificates.notAfterMs();
    g.set(at === undefined ? 0 : at / 1000);
  });
  metrics.gauge(`${p}next_renewal_timestamp_seconds`, 'When the next renewal is due (0: none planned)', [], (g) => {
    const at = certificates.nextRenewalMs();
    g.set(at === undefined ? 0 : at / 1000);
  });
}
