/**
 * Client-side errors name the hop that refused (the CA, a proxy, the gateway) so that a person reading
 * `infisical-connect` output knows whom to ask, and scripts get a stable exit code per error code.
 */
import { type ErrorCode, ErrorCodes, GatewayError } from '../protocol/errors.js';

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
      // A proxy's limit is that proxy's; the gateway's own limit is the same behind every proxy.
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

/** Exit status of `infisical-connect` per error code: stable, grouped by who must act. */
export function exitCodeFor(code: ErrorCode | undefined): number {
  if (code === undefined) return 1;
  if (code.startsWith('E_AUTH_') || code.startsWith('E_TOKEN_') || code === 'E_RATE_LIMITED') return 3;
  if (code === 'E_POLICY_DENIED' || code === 'E_FORBIDDEN' || code === 'E_SUBJECT_REVOKED') return 4;
  if (code === 'E_ROUTE_FORBIDDEN' || code === 'E_ORG_MISMATCH') return 5;
  if (code === 'E_GATEWAY_OFFLINE' || code === 'E_PROXY_UNREACHABLE') return 6;
  if (code.startsWith('E_GRANT_') || code === 'E_TARGET_NOT_ALLOWED' || code === 'E_STREAM_CLOSED') return 7;
  if (code === 'E_TARGET_UNREACHABLE') return 8;
  if (code.startsWith('E_CERT_') || code === 'E_KEY_UNSUPPORTED' || code === 'E_CSR_INVALID') return 9;
  if (code === 'E_TIMEOUT' || code === 'E_LIMIT') return 10;
  if (code === 'E_CONFIG_INVALID' || code.startsWith('E_REQUEST_')) return 2;
  if (code === 'E_CA_UNREACHABLE' || code === 'E_INTERNAL') return 11;
  return 1;
}

/** The exit codes, for `--help`. */
export const EXIT_CODE_HELP = [
  '0 ok',
  '1 other error',
  '2 bad flags or configuration',
  '3 CA login refused (E_AUTH_*, E_TOKEN_*, E_RATE_LIMITED)',
  '4 CA policy refused the grant (E_POLICY_DENIED, E_FORBIDDEN, E_SUBJECT_REVOKED)',
  '5 proxy refused the route (E_ROUTE_FORBIDDEN)',
  '6 no proxy could reach the gateway (E_GATEWAY_OFFLINE, E_PROXY_UNREACHABLE)',
  '7 gateway refused the grant or target (E_GRANT_*, E_TARGET_NOT_ALLOWED, E_STREAM_CLOSED)',
  '8 gateway could not reach the target (E_TARGET_UNREACHABLE)',
  '9 a certificate was refused (E_CERT_*)',
  '10 timeout or limit (E_TIMEOUT, E_LIMIT)',
  '11 the CA could not be reached or failed (E_CA_UNREACHABLE, E_INTERNAL)',
].join('\n');
