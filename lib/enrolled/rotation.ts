/**
 * A gateway's or proxy's part in a CA rotation (lib/ca/rotation.ts), the same in both: the signed feed says the
 * rotation version to hold; when it differs from the one applied, the component renews at once
 * (make-before-break: the renewal brings certificates from the CA that signs in the new phase and the trust
 * lists of that phase), records the version, and says it on its next feed read, which is its acknowledgement.
 */
import type { FeedFollowerOptions } from './feed.js';

export interface RotationHost {
  /** Where the applied version is kept (the state database), so a restart does not renew again. */
  store: { rotationVersion(): string; setRotationVersion(version: string): void } | undefined;
  /** Renews now and reloads; rejects when the renewal failed (the feed read is then retried). */
  renewNow: () => Promise<void>;
  log?: { info(fields: object, message: string): void };
}

export function rotationFollower(host: RotationHost): NonNullable<FeedFollowerOptions['rotation']> {
  let held = host.store?.rotationVersion() ?? '-';
  return {
    version: () => held,
    apply: async (version) => {
      // The first version a component ever hears is only recorded when it has nothing to catch up with: a
      // component enrolled before this version existed renews once, which is harmless.
      host.log?.info({ rotation: version, was: held }, 'CA rotation moved: renewing certificates and trust now');
      await host.renewNow();
      host.store?.setRotationVersion(version);
      held = version;
      host.log?.info({ rotation: version }, 'CA rotation applied');
    },
  };
}
