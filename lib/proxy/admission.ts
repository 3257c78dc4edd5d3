/**
 * The proxy's own decisions, pure (data and a clock in, a Verdict out). Certificate checks themselves are not
 * here: lib/sshcert (through lib/sshwire `verifyUserAuth`) and lib/pki (`checkPeer`) make them; these functions
 * only read what a verified certificate says and decide what it may do at this proxy:
 *
 *   admitGateway  a verified SSH user cert + the SSH user name → the gateway that may hold tunnels here
 *   admitForward  a `tcpip-forward` bind address → allowed only for the cert's own gateway name
 *   admitRoute    a verified outer TLS client cert → the (org, gateway) it may reach
 *   admitConnection  a new TCP connection → within the listener's bounds on connections not yet authenticated
 *   withinQuota   an org's tunnels or streams on an instance proxy → within its quota
 *
 * Instance and org proxies differ only in their ProxyScope: which org (if any) every cert must belong to, and
 * whether per-org quotas apply (instance proxies only: an org proxy serves its own org).
 */

import { accept, type ErrorCode, refuse, type Verdict } from '../errors/codes.js';
import { REPLICA_SSH_EXTENSION } from '../pki/grant.js';
import { isValidId, parseIdentity, parseIdentityOfKind } from '../pki/identity.js';
import { readAddress } from '../protocol/address.js';
import type { ProxyScope as ApiProxyScope } from '../protocol/api.js';
import type { SshCertificate } from '../sshcert/index.js';

export interface ProxyScope {
  scope: ApiProxyScope;
  /** Set for an org proxy: every gateway and platform cert must belong to it. */
  orgId?: string;
  /** The installation's trust domain (from the proxy's own identity URI). */
  trustDomain: string;
}

/** A gateway as admitted at SSH login. */
export interface GatewayLogin {
  orgId: string;
  gatewayId: string;
  /** The gateway URI (the cert's key id). */
  uri: string;
  serial: bigint;
  /** Milliseconds since the epoch; the tunnel is closed then. */
  validBeforeMs: number;
  /** A gateway replica's name (its certificate's replica@infisical extension), for logs; routing ignores it. */
  replica?: string;
}

/** A platform connection as admitted after the TLS handshake. */
export interface RouteDecision {
  orgId: string;
  gatewayId: string;
  /** The platform identity URI (the outer cert's URI SAN). */
  identityUri: string;
  serialHex: string;
  notAfterMs: number;
}

/** What the TLS verifier hands over (a subset of lib/pki VerifiedPeer). */
export interface VerifiedOuterCert {
  uris: string[];
  serialHex: string;
  notAfter: Date;
  route?: { orgId: string; gatewayId: string };
}

export const PORT_FORWARDING_EXTENSION = 'permit-port-forwarding';

/** Clock skew allowed on an outer certificate's notAfter at the edge: declared with its config key, cert_skew. */
export { DEFAULT_CERT_SKEW_MS } from './config.js';

/**
 * Runs after lib/sshcert accepted `cert` (CA, type, validity, principal = username). Refuses a cert whose one
 * principal is not the user name, whose key id is not a gateway URI of our trust domain naming that same
 * gateway, of another org on an org proxy, or without permit-port-forwarding.
 */
export function admitGateway(cert: SshCertificate, username: string, scope: ProxyScope): Verdict<GatewayLogin> {
  if (cert.principals.length !== 1 || cert.principals[0] !== username) {
    return refuse('E_CERT_WRONG_PRINCIPAL', `a gateway cert names exactly its gateway; user is "${username}"`);
  }
  const id = parseIdentityOfKind(cert.keyId, 'gateway');
  if (!id.ok) return refuse('E_CERT_IDENTITY', `key id: ${id.reason}`);
  if (id.value.trustDomain !== scope.trustDomain) {
    return refuse('E_CERT_IDENTITY', `key id is in trust domain ${id.value.trustDomain}`);
  }
  if (id.value.id !== username) return refuse('E_CERT_IDENTITY', 'key id names another gateway than the principal');
  if (scope.scope === 'org' && id.value.orgId !== scope.orgId) {
    return refuse('E_ORG_MISMATCH', `gateway of org ${id.value.orgId} on a proxy of org ${scope.orgId}`);
  }
  if (!(PORT_FORWARDING_EXTENSION in cert.extensions)) {
    return refuse('E_CERT_USAGE', 'certificate does not permit port forwarding');
  }
  // u64 "forever" and anything past JS's Date range collapse to the largest safe value.
  const validBeforeMs =
    cert.validBefore >= 8_640_000_000_000n ? Number.MAX_SAFE_INTEGER : Number(cert.validBefore) * 1000;
  const replica = cert.extensions[REPLICA_SSH_EXTENSION]?.toString('utf8');
  return accept({
    orgId: id.value.orgId,
    gatewayId: id.value.id,
    uri: cert.keyId,
    serial: cert.serial,
    validBeforeMs,
    ...(replica !== undefined && isValidId(replica) ? { replica } : {}),
  });
}

/** `tcpip-forward`: the bind address must be the gateway's own name (SPEC §4.3). */
export function admitForward(gateway: GatewayLogin, bindAddr: string, bindPort: number): Verdict<{ port: number }> {
  if (bindAddr !== gateway.gatewayId) {
    return refuse(
      'E_CERT_WRONG_PRINCIPAL',
      `gateway ${gateway.gatewayId} asked to forward the name "${bindAddr.slice(0, 128)}"`,
    );
  }
  if (!Number.isInteger(bindPort) || bindPort < 0 || bindPort > 65535)
    return refuse('E_ROUTE_FORBIDDEN', 'bad bind port');
  return accept({ port: bindPort });
}

/**
 * The one expiry rule for outer certificates at the edge: live iff now <= notAfter + skew. lib/pki applies it at
 * the handshake (same skew); the relay applies it again right before it writes the success line (the channel
 * open may have taken a while) and cuts the stream at `endsAtMs`.
 */
export function outerCertLive(
  route: Pick<RouteDecision, 'notAfterMs'>,
  nowMs: number,
  skewMs: number,
): Verdict<{ endsAtMs: number }> {
  const endsAtMs = route.notAfterMs + skewMs;
  if (nowMs > endsAtMs) {
    return refuse('E_CERT_EXPIRED', `client certificate expired at ${new Date(route.notAfterMs).toISOString()}`);
  }
  return accept({ endsAtMs });
}

/**
 * Runs after lib/pki accepted the outer cert (CA, clientAuth, validity, route present). The identity must be
 * a platform identity of the route's org and of our trust domain; an org proxy serves its own org only.
 */
export function admitRoute(peer: VerifiedOuterCert, scope: ProxyScope): Verdict<RouteDecision> {
  const route = peer.route;
  if (!route) return refuse('E_ROUTE_FORBIDDEN', 'client certificate names no gateway route');
  if (peer.uris.length !== 1) return refuse('E_CERT_IDENTITY', 'client certificate must carry exactly one URI');
  const id = parseIdentity(peer.uris[0]);
  if (!id.ok) return refuse('E_CERT_IDENTITY', id.reason);
  if (id.value.kind !== 'identity') return refuse('E_CERT_IDENTITY', `a ${id.value.kind} cannot open streams`);
  if (id.value.trustDomain !== scope.trustDomain) {
    return refuse('E_CERT_IDENTITY', `identity is in trust domain ${id.value.trustDomain}`);
  }
  if (id.value.orgId !== route.orgId) return refuse('E_ORG_MISMATCH', 'route names another org than the identity');
  if (scope.scope === 'org' && route.orgId !== scope.orgId) {
    return refuse('E_ORG_MISMATCH', `route to org ${route.orgId} on a proxy of org ${scope.orgId}`);
  }
  return accept({
    orgId: route.orgId,
    gatewayId: route.gatewayId,
    identityUri: peer.uris[0]!,
    serialHex: peer.serialHex,
    notAfterMs: peer.notAfter.getTime(),
  });
}

/**
 * The abuse limits, named by their config keys (lib/proxy/config.ts), which are also the `limit` label of
 * infisical_proxy_limit_refusals_total: the operator reads there which key to look at.
 */
export type LimitName =
  | 'max_connections'
  | 'max_unauthenticated_per_source'
  | 'handshake_timeout'
  | 'forward_timeout'
  | 'max_streams_per_gateway'
  | 'max_tunnels_per_org'
  | 'max_streams_per_org';

/** A refusal by one of the limits (a Verdict refusal that also names the limit). */
export interface LimitRefusal {
  ok: false;
  code: ErrorCode;
  reason: string;
  limit: LimitName;
}

export function refuseAt(limit: LimitName, code: ErrorCode, reason: string): LimitRefusal {
  return { ok: false, code, reason, limit };
}

/** The limit a refusal came from, if it came from one. */
export function limitOf(v: Verdict<unknown>): LimitName | undefined {
  return !v.ok && 'limit' in v ? (v as LimitRefusal).limit : undefined;
}

/**
 * Whom a per-source limit counts together: an IPv4 address (also written IPv4-mapped, as a dual-stack listener
 * reports it), or an IPv6 /64 (one host commonly holds a whole /64, so counting single IPv6 addresses would
 * give it 2^64 budgets).
 */
export function sourceKey(address: string | undefined): string {
  const a = readAddress(address ?? '');
  if (typeof a === 'string') return address || 'unknown';
  if (a.family === 4) return a.text;
  const groups: string[] = [];
  for (let i = 0; i < 8; i += 2) groups.push(((a.bytes[i]! << 8) | a.bytes[i + 1]!).toString(16));
  return `${groups.join(':')}::/64`;
}

export interface ConnectionLimits {
  /** Connections open on the listener, authenticated or not. */
  maxConnections: number;
  /** Connections from one source (sourceKey) that have not yet authenticated. */
  maxUnauthenticatedPerSource: number;
}

/**
 * A new TCP connection, before a byte is read: refused (E_LIMIT) when the listener holds `maxConnections`,
 * or when its source already has `maxUnauthenticatedPerSource` connections in their handshake. Only connections
 * still in their handshake count against the source: an authenticated gateway or platform costs its source
 * nothing, so a site behind one NAT address is bounded by how many reconnect AT ONCE, not by its size.
 */
export function admitConnection(
  now: { open: number; unauthenticatedFromSource: number },
  limits: ConnectionLimits,
  source: string,
): Verdict<void> | LimitRefusal {
  if (now.open >= limits.maxConnections) {
    return refuseAt('max_connections', 'E_LIMIT', `listener holds its maximum of ${limits.maxConnections} connections`);
  }
  if (now.unauthenticatedFromSource >= limits.maxUnauthenticatedPerSource) {
    return refuseAt(
      'max_unauthenticated_per_source',
      'E_LIMIT',
      `source ${source} already has ${limits.maxUnauthenticatedPerSource} connections in their handshake`,
    );
  }
  return accept(undefined);
}

/** Per-org quotas of an instance proxy (undefined on an org proxy: no quota). */
export interface OrgQuotas {
  maxTunnelsPerOrg: number;
  maxStreamsPerOrg: number;
}

/**
 * One more tunnel or stream for `orgId` on an instance proxy: refused (E_QUOTA_EXCEEDED) at its quota, so one
 * tenant cannot take the shared proxy's connections from the others.
 */
export function withinQuota(
  what: 'tunnels' | 'streams',
  orgId: string,
  used: number,
  quotas: OrgQuotas | undefined,
): Verdict<void> | LimitRefusal {
  if (!quotas) return accept(undefined);
  const [max, limit] =
    what === 'tunnels'
      ? ([quotas.maxTunnelsPerOrg, 'max_tunnels_per_org'] as const)
      : ([quotas.maxStreamsPerOrg, 'max_streams_per_org'] as const);
  if (used >= max) return refuseAt(limit, 'E_QUOTA_EXCEEDED', `org ${orgId} holds its quota of ${max} ${what} here`);
  return accept(undefined);
}
