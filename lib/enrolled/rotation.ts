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
  /** Pins a CA API root (stored and in the running client): added before the API starts serving from it. */
  pinApiRoot: (fingerprint: string) => void;
  log?: { info(fields: object, message: string): void };
}

export function rotationFollower(host: RotationHost): NonNullable<FeedFollowerOptions['rotation']> {
  let held = host.store?.rotationVersion() ?? '-';
  return {
    version: () => held,
    apply: async ({ version, apiRoots }) => {
      // A component enrolled before rotation existed renews once on its first read, which is harmless.
      host.log?.info({ rotation: version, was: held }, 'CA rotation moved: renewing certificates and trust now');
      // Additive: a root that a completed rotation dropped has its key destroyed, so its pin trusts nothing new.
      for (const fp of apiRoots) host.pinApiRoot(fp);
      await host.renewNow();
      host.store?.setRotationVersion(version);
      held = version;
      host.log?.info({ rotation: version }, 'CA rotation applied');
    },
  };
}
