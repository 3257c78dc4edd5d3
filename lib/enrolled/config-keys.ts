/**
 * Config keys every enrolled component (gateway, proxy) shares: the revocation feed and renewal. Spread into
 * each daemon's schema, so names, defaults and docs are the same in both.
 */
import { durationRange, keys } from '../runtime/config-schema.js';

export function enrolledKeys() {
  return {
    revocation_poll: keys.duration({
      default: 10_000,
      description:
        'Retry interval of the signed revocation feed while the CA cannot be reached, and the poll interval when ' +
        'feed_wait is 0 (0: never read the feed).',
      validate: durationRange(0, 3_600_000),
    }),
    feed_wait: keys.duration({
      default: 25_000,
      description:
        'How long the CA may hold each feed read until there is news (a long-poll: revocations and proxy list ' +
        'changes arrive within about a second); 0 polls every revocation_poll instead.',
      validate: durationRange(0, 30_000),
    }),
    feed_stale_after: keys.duration({
      default: 300_000,
      description:
        'After this long without a successful feed read, /readyz answers 503 E_FEED_STALE (tunnels and streams ' +
        'carry on).',
      validate: durationRange(1_000, 86_400_000),
    }),
    renew: keys.bool({
      flag: null,
      default: true,
      description: 'Renew certificates at about 2/3 of their lifetime.',
    }),
  };
}
