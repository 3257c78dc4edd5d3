/**
 * The CA daemon's configuration keys (flags > environment > /etc/infisical/ca.conf > defaults). Declared once:
 * the loader, --help and the sample config read this.
 */
import { defineSchema, durationRange, hostPort, intRange, keys, oneOf } from '../runtime/config-schema.js';
import { runtimeKeys } from '../runtime/runtime-keys.js';
import { isPostgresUrl, postgresUrlProblem } from '../store/postgres-url.js';
import { DEFAULT_UNAUTHENTICATED_POLICIES, type UnauthenticatedPolicies } from './unauthenticated.js';
/**
 * Sized for a site of 500 gateways behind one NAT address, each holding a feed read (a long-poll) and renewing
 * at the same moment: about 1000 connections from one address, a few sites' worth in all. Declared here, not in
 * http.ts, so the schema stays free of the server's imports (packaging bundles it alone to render the sample).
 */
export const MAX_CONNECTIONS = 4096;
export const MAX_CONNECTIONS_PER_SOURCE = 1024;

/** A postgres:// URL (several hosts allowed: host-a:5432,host-b:5432) or file:PATH (the URL kept in a private file). */
function storeLocation(value: string): string | undefined {
  if (/^file:./.test(value)) return undefined;
  if (!isPostgresUrl(value)) return 'expected a postgres:// URL or file:PATH';
  return postgresUrlProblem(value);
}

export const caConfigSchema = defineSchema('ca', 'certificate authority and control plane of the gateway suite', {
  listen: keys.string({
    reload: 'restart',
    default: '127.0.0.1:8443',
    placeholder: 'host:port',
    description:
      'Address of the HTTPS API (clients pin its certificate by SHA-256 fingerprint). Loopback by default: set ' +
      '0.0.0.0:8443 (or one address of this host) when proxies and gateways on other hosts must reach it.',
    validate: hostPort,
  }),
  tls_min_version: keys.string({
    reload: 'restart',
    default: '1.3',
    placeholder: '1.2|1.3',
    description:
      'Oldest TLS version the API accepts. 1.3: TLS 1.3 only. 1.2 also admits TLS 1.2 clients, with forward-secret ' +
      'AEAD ciphers only (ECDHE with AES-GCM or ChaCha20-Poly1305). The suite’s own programs speak TLS 1.3.',
    validate: oneOf('1.2', '1.3'),
  }),
  store: keys.string({
    reload: 'restart',
    optional: true,
    // A postgres:// URL may carry its password: never echoed in errors, the effective-config log or metrics.
    secret: true,
    placeholder: 'postgres://…|file:PATH',
    example: 'postgres://infisical-ca@db.internal:5432/infisical_ca',
    description:
      'Where the CA keeps its records. Unset: SQLite, ca.db in the state directory (one CA process). A ' +
      'postgres://user@host/db URL: PostgreSQL, shared by every CA replica (run `init` once for the whole store; ' +
      'copy the state directory, which holds the sealing key, to each replica); a primary with standbys: ' +
      'postgres://user@db-a:5432,db-b:5432/db?target_session_attrs=read-write. file:PATH: a file (mode 0600) ' +
      'holding that URL with its password. Every `infisical-ca` command reads it.',
    validate: storeLocation,
  }),
  trust_domain: keys.string({
    reload: 'restart',
    optional: true,
    placeholder: 'name',
    description: 'SPIFFE trust domain, fixed by `init` (default infisical.local); later runs must agree with it.',
  }),
  api_names: keys.list({
    reload: 'command',
    default: ['localhost', '127.0.0.1'],
    flag: 'api-name',
    description: 'DNS names and IP addresses put in the API server certificate by `init` and `api-cert`.',
  }),
  token_ttl: keys.duration({
    reload: 'live',
    default: 15 * 60_000,
    description: 'Lifetime of access tokens issued at login.',
    validate: durationRange(60_000, 24 * 3_600_000),
  }),
  grant_ttl: keys.duration({
    reload: 'live',
    default: 5 * 60_000,
    description: 'Lifetime of access grants when a request names none.',
    validate: durationRange(10_000, 3_600_000),
  }),
  supersede_grace: keys.duration({
    reload: 'live',
    default: 120_000,
    description:
      'After a gateway or proxy renews, how long its previous certificates stay valid unless the new ones are used ' +
      'first; then they are revoked in the feed, so a copied state directory stops working.',
    validate: durationRange(0, 24 * 3_600_000),
  }),
  max_connections: keys.int({
    reload: 'live',
    default: MAX_CONNECTIONS,
    flag: null,
    description:
      'API connections at once from everywhere; more are dropped at accept. Each gateway and proxy holds one ' +
      'while it waits on the revocation feed.',
    validate: intRange(16, 1_000_000),
  }),
  max_connections_per_source: keys.int({
    reload: 'live',
    default: MAX_CONNECTIONS_PER_SOURCE,
    flag: null,
    description:
      'API connections at once from one source address (an IPv6 /64); more are closed at accept. The default ' +
      'lets 500 gateways behind one NAT address hold their feed reads and renew at the same time.',
    validate: intRange(1, 1_000_000),
  }),
  // Per-source limits on failed authentication (lib/ca/unauthenticated.ts; docs/security.md "CA API"). Only
  // failures are charged: components and identities that authenticate never meet them. File and environment only.
  login_failure_burst: keys.int({
    reload: 'live',
    default: DEFAULT_UNAUTHENTICATED_POLICIES.login.burst,
    flag: null,
    description:
      'Failed logins (unknown client id or wrong secret) one source address (an IPv6 /64) may make at once; ' +
      'each further one makes that source wait (E_RATE_LIMITED) before its next login is looked at.',
    validate: intRange(1, 100_000),
  }),
  login_failure_refill: keys.duration({
    reload: 'live',
    default: DEFAULT_UNAUTHENTICATED_POLICIES.login.refillMs,
    flag: null,
    description:
      'One failed login of a source is forgotten per this much quiet; also its first wait, which doubles with ' +
      'each further failure up to login_failure_delay_max.',
    validate: durationRange(10, 3_600_000),
  }),
  login_failure_delay_max: keys.duration({
    reload: 'live',
    default: DEFAULT_UNAUTHENTICATED_POLICIES.login.maxDelayMs,
    flag: null,
    description: 'The longest wait a source that keeps failing to log in is given.',
    validate: durationRange(1000, 3_600_000),
  }),
  enroll_failure_burst: keys.int({
    reload: 'live',
    default: DEFAULT_UNAUTHENTICATED_POLICIES.enroll.burst,
    flag: null,
    description:
      'Enrollments with an enrollment token that does not admit them (unknown, used, expired, for another ' +
      'component) one source may make at once before it waits (E_RATE_LIMITED).',
    validate: intRange(1, 100_000),
  }),
  enroll_failure_refill: keys.duration({
    reload: 'live',
    default: DEFAULT_UNAUTHENTICATED_POLICIES.enroll.refillMs,
    flag: null,
    description: 'One failed enrollment of a source is forgotten per this much quiet; also its first wait (doubling).',
    validate: durationRange(10, 3_600_000),
  }),
  enroll_failure_delay_max: keys.duration({
    reload: 'live',
    default: DEFAULT_UNAUTHENTICATED_POLICIES.enroll.maxDelayMs,
    flag: null,
    description: 'The longest wait a source that keeps failing to enroll is given.',
    validate: durationRange(1000, 3_600_000),
  }),
  signed_failure_burst: keys.int({
    reload: 'live',
    default: DEFAULT_UNAUTHENTICATED_POLICIES.signed.burst,
    flag: null,
    description:
      'Renewals and feed reads whose certificate or signature does not authenticate one source may make at once ' +
      'before it waits (E_RATE_LIMITED). Components that authenticate are never charged.',
    validate: intRange(1, 100_000),
  }),
  signed_failure_refill: keys.duration({
    reload: 'live',
    default: DEFAULT_UNAUTHENTICATED_POLICIES.signed.refillMs,
    flag: null,
    description:
      'One failed signed request of a source is forgotten per this much quiet; also its first wait (doubling).',
    validate: durationRange(10, 3_600_000),
  }),
  signed_failure_delay_max: keys.duration({
    reload: 'live',
    default: DEFAULT_UNAUTHENTICATED_POLICIES.signed.maxDelayMs,
    flag: null,
    description: 'The longest wait a source that keeps failing to authenticate signed requests is given.',
    validate: durationRange(1000, 3_600_000),
  }),
  ...runtimeKeys({ opsListen: '127.0.0.1:9471' }),
});

/** The per-source limits a loaded configuration sets. */
export function unauthenticatedPolicies(config: {
  readonly login_failure_burst: number;
  readonly login_failure_refill: number;
  readonly login_failure_delay_max: number;
  readonly enroll_failure_burst: number;
  readonly enroll_failure_refill: number;
  readonly enroll_failure_delay_max: number;
  readonly signed_failure_burst: number;
  readonly signed_failure_refill: number;
  readonly signed_failure_delay_max: number;
}): UnauthenticatedPolicies {
  const c = config;
  return {
    login: { burst: c.login_failure_burst, refillMs: c.login_failure_refill, maxDelayMs: c.login_failure_delay_max },
    enroll: {
      burst: c.enroll_failure_burst,
      refillMs: c.enroll_failure_refill,
      maxDelayMs: c.enroll_failure_delay_max,
    },
    signed: {
      burst: c.signed_failure_burst,
      refillMs: c.signed_failure_refill,
      maxDelayMs: c.signed_failure_delay_max,
    },
  };
}
export type CaConfigSchema = typeof caConfigSchema;
