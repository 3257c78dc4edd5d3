/**
 * Client-side errors name the hop that refused (the CA, a proxy, the gateway) so that a person reading
 * `infisical-connect` output knows whom to ask, and scripts get a stable exit code per error code.
 */
import { type ErrorCode, ErrorCodes, GatewayError } from '../errors/codes.js';

export type Hop = 'ca' | 'proxy' | 'gateway' | 'local';

export class ConnectError extends GatewayError {
  readonly hop: Hop;
  /** The proxy the error happened at (proxy and gateway hops). */
  readonly proxyId: string | undefined;
  /** The gateway that refused (gateway hop). */
  readonly gatewayId: string | undefined;
  /** Earlier failures when proxies were tried in turn (failover), oldest first. */
  readonly attempts: readonly ConnectError[];
  /** The message without the code's generic text. */
  readonly detail: string;

  constructor(
    code: ErrorCode,
    hop: Hop,
    detail: string,
    opts: { proxyId?: string; gatewayId?: string; attempts?: readonly ConnectError[]; cause?: unknown } = {},
  ) {
    super(code, detail, opts.cause === undefined ? undefined : { cause: opts.cause });
    this.name = 'ConnectError';
    this.hop = hop;
    this.detail = detail;
    this.proxyId = opts.proxyId;
    this.gatewayId = opts.gatewayId;
    this.attempts = opts.attempts ?? [];
  }

  /** "refused by gateway gw-1 (via proxy p1): E_…: message"; "failed at proxy p2: …" when nobody refused. */
  describe(): string {
    const failed = ['E_PROXY_UNREACHABLE', 'E_CA_UNREACHABLE', 'E_TIMEOUT', 'E_INTERNAL'].includes(this.code);
    const who = this.hop === 'gateway' && this.gatewayId ? `gateway ${this.gatewayId}` : this.hop;
    const where = this.hop === 'local' ? 'local error' : `${failed ? 'failed at' : 'refused by'} ${who}`;
    const via = this.proxyId ? (this.hop === 'proxy' ? ` ${this.proxyId}` : ` (via proxy ${this.proxyId})`) : '';
    return `${where}${via}: ${this.code}: ${this.detail}`;
  }
}

/** Wraps anything thrown by a hop as a ConnectError that names it; ConnectErrors pass through. */
export function atHop(err: unknown, hop: Hop, proxyId?: string): ConnectError {
  if (err instanceof ConnectError) return err;
  const opts = { ...(proxyId === undefined ? {} : { proxyId }), cause: err };
  if (err instanceof GatewayError) {
    const generic = ErrorCodes[err.code];
    const detail = err.message.startsWith(`${generic}: `) ? err.message.slice(generic.length + 2) : err.message;
    return new ConnectError(err.code, hop, detail, opts);
  }
  const code = (
    { ca: 'E_CA_UNREACHABLE', proxy: 'E_PROXY_UNREACHABLE', gateway: 'E_STREAM_CLOSED', local: 'E_INTERNAL' } as const
  )[hop];
  return new ConnectError(code, hop, (err as Error)?.message ?? String(err), opts);
}

/**
 * Should the next proxy be tried after this failure? Yes when the problem belongs to that one proxy (down,
 * slow, no tunnel for the gateway, a certificate we refuse): another proxy may do. No when the refusal is
 * about us (the route in our cert, policy, the grant, the target): every proxy leads to the same answer.
 */
export function shouldTryNextProxy(err: ConnectError): boolean {
  switch (err.code) {
    case 'E_PROXY_UNREACHABLE':
    case 'E_GATEWAY_OFFLINE':
    case 'E_TIMEOUT':
      return true;
    case 'E_LIMIT':
    case 'E_QUOTA_EXCEEDED':
      // A proxy's limit (or an org's quota on a shared proxy) is that proxy's; the gateway's own limit is the
      // same behind every proxy.
      return err.hop !== 'gateway';
    default:
      // A proxy whose server certificate we refuse may be an impostor on that path; others are checked anew.
      return err.hop === 'proxy' && err.code.startsWith('E_CERT_');
  }
}

/** Why a cached grant must not be used again: the gateway judged it expired, or a hop says it was revoked. */
export type StaleGrant = 'expired' | 'revoked';

/**
 * What the proxies and the gateway answer a grant whose grant id, certificate, identity or gateway was revoked:
 * E_CERT_REVOKED (grant or certificate: the gateway's admission and live-stream cut, the proxy's relay check,
 * a certificate_revoked TLS alert) or E_SUBJECT_REVOKED (identity or gateway, at the gateway). At hop "ca" the
 * same codes answer a NEW grant request: they say nothing about the grant we hold.
 */
const REVOCATION_CODES: ReadonlySet<ErrorCode> = new Set(['E_CERT_REVOKED', 'E_SUBJECT_REVOKED']);

/**
 * Does this failure of a stream mean the grant it was dialled with is no good any more? Then the cache drops it
 * and one fresh grant is tried (connector.ts). A revocation counts wherever it shows: a proxy's refusal fails
 * over to the next proxy (a proxy's E_CERT_* may be that proxy's), so it may sit in the attempts of a failover.
 * Returns why, and the refusal that said so.
 */
export function staleGrant(err: ConnectError): { reason: StaleGrant; refusal: ConnectError } | undefined {
  if (err.hop === 'gateway' && err.code === 'E_GRANT_EXPIRED') return { reason: 'expired', refusal: err };
  const refusal = [err, ...err.attempts].find(
    (e) => (e.hop === 'gateway' || e.hop === 'proxy') && REVOCATION_CODES.has(e.code),
  );
  return refusal ? { reason: 'revoked', refusal } : undefined;
}

/**
 * The CA's refusal of a new grant after the one we held was refused as revoked (`revocation`, from staleGrant):
 * the CA's code at hop "ca", saying that the earlier grant was revoked and why no new one comes (the policy, or
 * a revoked identity).
 */
export function refusedAfterRevocation(grantId: string, revocation: ConnectError, ca: ConnectError): ConnectError {
  const why =
    ca.code === 'E_SUBJECT_REVOKED'
      ? 'the identity (or the gateway) is revoked'
      : ca.code === 'E_POLICY_DENIED' || ca.code === 'E_FORBIDDEN'
        ? 'the policy no longer allows this access'
        : 'the CA gives no new grant';
  return new ConnectError(
    ca.code,
    ca.hop,
    `grant ${grantId} was revoked (${revocation.hop} said ${revocation.code}) and ${why}: ${ca.detail}`,
    { cause: ca },
  );
}

/**
 * Exit statuses of `infisical-connect`, grouped by who must act. Each error code belongs to one group, named
 * there or by a prefix (`E_CERT_*`); a code in none exits 1. `--help` prints this table, so the two agree.
 */
export const EXIT_STATUSES: readonly { status: number; meaning: string; codes: readonly string[] }[] = [
  {
    status: 2,
    meaning: 'bad flags or configuration',
    codes: ['E_CONFIG_INVALID', 'E_SECRET_FILE_MODE', 'E_REQUEST_*'],
  },
  { status: 3, meaning: 'CA login refused', codes: ['E_AUTH_*', 'E_TOKEN_*', 'E_RATE_LIMITED'] },
  {
    status: 4,
    meaning: 'the CA refused the grant: policy, revoked subject or unknown gateway',
    codes: ['E_POLICY_DENIED', 'E_FORBIDDEN', 'E_SUBJECT_REVOKED', 'E_NOT_FOUND'],
  },
  {
    status: 5,
    meaning: "another org: --org is not the identity's, or a proxy refused the route",
    codes: ['E_ORG_MISMATCH', 'E_ROUTE_FORBIDDEN'],
  },
  { status: 6, meaning: 'no proxy could reach the gateway', codes: ['E_GATEWAY_OFFLINE', 'E_PROXY_UNREACHABLE'] },
  {
    status: 7,
    meaning: 'gateway refused the grant or target',
    codes: ['E_GRANT_*', 'E_TARGET_NOT_ALLOWED', 'E_STREAM_CLOSED'],
  },
  { status: 8, meaning: 'gateway could not reach the target', codes: ['E_TARGET_UNREACHABLE'] },
  { status: 9, meaning: 'a certificate or key was refused', codes: ['E_CERT_*', 'E_CSR_INVALID', 'E_KEY_UNSUPPORTED'] },
  { status: 10, meaning: 'timeout or limit', codes: ['E_TIMEOUT', 'E_LIMIT', 'E_QUOTA_EXCEEDED'] },
  { status: 11, meaning: 'the CA could not be reached or failed', codes: ['E_CA_UNREACHABLE', 'E_INTERNAL'] },
  { status: 12, meaning: 'the --listen address is in use', codes: ['E_ADDRESS_IN_USE'] },
];

/** Does `code` match `pattern` (a code, or a prefix ending in `*`)? */
export function codeMatches(pattern: string, code: string): boolean {
  return pattern.endsWith('*') ? code.startsWith(pattern.slice(0, -1)) : code === pattern;
}

/** Exit status of `infisical-connect` per error code (EXIT_STATUSES); 1 for none or an unlisted code. */
export function exitCodeFor(code: ErrorCode | undefined): number {
  if (code === undefined) return 1;
  return EXIT_STATUSES.find((s) => s.codes.some((p) => codeMatches(p, code)))?.status ?? 1;
}

/** The exit codes, for `--help`. */
export const EXIT_CODE_HELP = [
  '0 ok',
  '1 any other error (an error code not listed below)',
  ...EXIT_STATUSES.map((s) => `${s.status} ${s.meaning} (${s.codes.join(', ')})`),
].join('\n');
