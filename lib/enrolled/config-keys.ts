/**
 * Config keys every enrolled component (gateway, proxy) shares: how `enroll` gets its one-time token, the
 * revocation feed and renewal. Spread into each daemon's schema, so names, defaults and docs are the same in both.
 */
import { GatewayError } from '../errors/codes.js';
import { normalizeFingerprint } from '../protocol/fingerprint.js';
import { durationRange, httpsUrls, keys } from '../runtime/config-schema.js';

/** One or more SHA-256 fingerprints, comma-separated, each as normalizeFingerprint takes it. */
function fingerprintList(value: string): string | undefined {
  for (const fp of value.split(',').filter((p) => p.trim() !== '')) {
    try {
      normalizeFingerprint(fp);
    } catch (err) {
      if (err instanceof GatewayError)
        return `expected sha256:hex fingerprints (64 hex digits), not ${JSON.stringify(fp.trim())}`;
      throw err;
    }
  }
  return undefined;
}

/**
 * Where the CA is and what it must show. `enroll` takes both; `serve` reads ca_url at start (it replaces the URLs
 * stored at enrollment, so a CA replica is added by editing the config) and applies ca_fingerprint on SIGHUP (a
 * pin added beside the stored ones).
 */
export function caKeys() {
  return {
    ca_url: keys.string({
      reload: 'restart',
      flag: 'ca',
      optional: true,
      placeholder: 'https://host:port',
      description:
        'CA API URL used by `enroll`, renewal and the revocation feed; a comma-separated list names replicas of one CA, tried in turn when one cannot be reached (same pins). Read at start: it replaces the URLs stored at enrollment.',
      validate: httpsUrls,
    }),
    ca_fingerprint: keys.string({
      reload: 'live',
      optional: true,
      placeholder: 'sha256:hex',
      description:
        'SHA-256 fingerprint of the CA API certificate (pinned; printed by `infisical-ca init`); a comma-separated list adds several. On SIGHUP, pins named here are added to the stored ones (never removed).',
      validate: fingerprintList,
    }),
  };
}

/**
 * The enrollment token, from a file or standard input (`--token-file`), the environment
 * (INFISICAL_<DAEMON>_ENROLLMENT_TOKEN) or, with a warning, the command line (`--token`, which every user of the
 * host can read in `ps`). credentials.ts reads them.
 */
export function enrollmentTokenKeys(kind: 'gateway' | 'proxy') {
  return {
    enrollment_token: keys.string({
      reload: 'command',
      flag: 'token',
      optional: true,
      secret: true,
      description:
        `One-time enrollment token (kind ${kind}) for \`enroll\`. Given as --token it is visible to every user ` +
        'of the host (ps) and a warning is printed: prefer enrollment_token_file or this variable.',
    }),
    enrollment_token_file: keys.string({
      reload: 'command',
      flag: 'token-file',
      optional: true,
      placeholder: 'path|-',
      description:
        `File holding the one-time enrollment token (kind ${kind}) for \`enroll\`, or - for standard input. ` +
        'The file must not be readable by group or others (chmod 600), as OpenSSH requires of a private key.',
      validate: (v) => (v.length > 0 && !v.includes('\0') ? undefined : 'expected a file path or -'),
    }),
  };
}

export function enrolledKeys() {
  return {
    revocation_poll: keys.duration({
      reload: 'live',
      default: 10_000,
      description:
        'Retry interval of the signed revocation feed while the CA cannot be reached, and the poll interval when ' +
        'feed_wait is 0 (0: never read the feed).',
      validate: durationRange(0, 3_600_000),
    }),
    feed_wait: keys.duration({
      reload: 'live',
      default: 25_000,
      description:
        'How long the CA may hold each feed read until there is news (a long-poll: revocations and proxy list ' +
        'changes arrive within about a second); 0 polls every revocation_poll instead.',
      validate: durationRange(0, 30_000),
    }),
    feed_stale_after: keys.duration({
      reload: 'live',
      default: 300_000,
      description:
        'After this long without a successful feed read, /readyz answers 503 E_FEED_STALE (tunnels and streams ' +
        'carry on).',
      validate: durationRange(1_000, 86_400_000),
    }),
    renew: keys.bool({
      reload: 'live',
      flag: null,
      default: true,
      description: 'Renew certificates at about 2/3 of their lifetime.',
    }),
  };
}
