/**
 * The leaf certificate profiles of SPEC §3. Each takes the key to certify (from a parsed CSR), the subject's
 * identity URI and a lifetime, and decides every name and extension itself: nothing a CSR asks for is copied.
 *
 * | profile               | URI SAN (exactly one)        | other names     | EKU        | extension          |
 * |-----------------------|------------------------------|-----------------|------------|--------------------|
 * | gateway inner server  | gateway URI                  | -               | serverAuth | GatewayReplica (.3)|
 * | proxy TLS server      | org- or instance-proxy URI   | DNS / IP SANs   | serverAuth | -                  |
 * | platform outer client | identity URI                 | -               | clientAuth | GatewayRoute (.2)  |
 * | platform inner client | identity URI (= grant actor) | -               | clientAuth | AccessGrant (.1)   |
 *
 * The outer client cert names org and gateway in a GatewayRoute extension rather than a second URI SAN: a cert
 * names one subject (its URI SAN), and the route is what it may reach, not who it is. The proxy gets the route
 * from the verifier's result (`VerifiedPeer.route`), never from the CN. For the same reason a gateway replica's
 * server cert carries its replica name in a GatewayReplica extension (only when enrolled with --replica), and
 * its URI SAN stays the gateway's: one gateway to platforms and proxies, replicas told apart by the CA and audit.
 */
import type { KeyObject } from 'node:crypto';
import { accept, refuse, type Verdict } from '../errors/codes.js';
import { type CaIssuer, type IssuedCert, issueCertificate, validity } from './ca.js';
import {
  type AccessGrant,
  encodeGrant,
  encodeReplica,
  encodeRoute,
  type GatewayRoute,
  GRANT_EXTENSION_OID,
  REPLICA_EXTENSION_OID,
  ROUTE_EXTENSION_OID,
} from './grant.js';
import { type Identity, type IdentityKind, parseIdentity } from './identity.js';
import { OID } from './x509.js';

/** Default lifetimes in seconds. Client certs live as long as one access (SPEC §3: inner ≤ 5 min by default). */
export const DEFAULT_LIFETIME_SEC = {
  gatewayServer: 7 * 24 * 3600,
  proxyServer: 30 * 24 * 3600,
  platformOuterClient: 5 * 60,
  platformInnerClient: 5 * 60,
} as const;

export interface LeafRequest {
  /** The key to certify: `parseCsr(...).value.publicKey`. */
  subjectKey: KeyObject;
  /** The subject's identity URI (lib/protocol/identity). */
  uri: string;
  now: Date;
  lifetimeSec?: number;
}

export function issueGatewayServerCert(
  issuer: CaIssuer,
  req: LeafRequest & { replica?: string | null },
): Verdict<IssuedCert> {
  const id = identityOf(req.uri, ['gateway']);
  if (!id.ok) return id;
  if (req.replica == null) return leaf(issuer, req, id.value, DEFAULT_LIFETIME_SEC.gatewayServer, OID.serverAuth, {});
  const replica = encodeReplica(req.replica);
  if (!replica.ok) return replica;
  return leaf(issuer, req, id.value, DEFAULT_LIFETIME_SEC.gatewayServer, OID.serverAuth, {
    extra: { oid: REPLICA_EXTENSION_OID, critical: false, value: replica.value },
  });
}

export function issueProxyServerCert(
  issuer: CaIssuer,
  req: LeafRequest & { dnsNames?: string[]; ipAddresses?: string[] },
): Verdict<IssuedCert> {
  const id = identityOf(req.uri, ['org-proxy', 'instance-proxy']);
  if (!id.ok) return id;
  if (!req.dnsNames?.length && !req.ipAddresses?.length) {
    return refuse('E_CERT_IDENTITY', 'a proxy server cert needs at least one DNS name or IP address');
  }
  return leaf(issuer, req, id.value, DEFAULT_LIFETIME_SEC.proxyServer, OID.serverAuth, {
    dnsNames: req.dnsNames ?? [],
    ipAddresses: req.ipAddresses ?? [],
  });
}

export function issuePlatformOuterClientCert(
  issuer: CaIssuer,
  req: LeafRequest & { route: GatewayRoute },
): Verdict<IssuedCert> {
  const id = identityOf(req.uri, ['identity']);
  if (!id.ok) return id;
  if (id.value.kind === 'identity' && id.value.orgId !== req.route.orgId) {
    return refuse('E_GRANT_ORG', 'route names another org than the identity');
  }
  const route = encodeRoute(req.route);
  if (!route.ok) return route;
  return leaf(issuer, req, id.value, DEFAULT_LIFETIME_SEC.platformOuterClient, OID.clientAuth, {
    extra: { oid: ROUTE_EXTENSION_OID, critical: false, value: route.value },
  });
}

/** The inner client cert never outlives its grant: notAfter = min(now + lifetime, grant.notAfter). */
export function issuePlatformInnerClientCert(
  issuer: CaIssuer,
  req: LeafRequest & { grant: AccessGrant },
): Verdict<IssuedCert> {
  const id = identityOf(req.uri, ['identity']);
  if (!id.ok) return id;
  if (req.grant.actor !== req.uri) return refuse('E_CERT_IDENTITY', 'grant actor differs from the certificate URI');
  const grant = encodeGrant(req.grant);
  if (!grant.ok) return grant;
  const nowSec = Math.floor(req.now.getTime() / 1000);
  if (req.grant.notAfter <= nowSec) return refuse('E_GRANT_EXPIRED', 'grant already expired');
  const lifetime = Math.min(req.lifetimeSec ?? DEFAULT_LIFETIME_SEC.platformInnerClient, req.grant.notAfter - nowSec);
  return leaf(issuer, { ...req, lifetimeSec: lifetime }, id.value, lifetime, OID.clientAuth, {
    extra: { oid: GRANT_EXTENSION_OID, critical: false, value: grant.value },
  });
}

function identityOf(uri: string, kinds: IdentityKind[]): Verdict<Identity> {
  const id = parseIdentity(uri);
  if (!id.ok) return id;
  if (!kinds.includes(id.value.kind)) {
    return refuse('E_CERT_IDENTITY', `expected a ${kinds.join(' or ')} identity, got ${id.value.kind}`);
  }
  return accept(id.value);
}

function leaf(
  issuer: CaIssuer,
  req: LeafRequest,
  id: Identity,
  defaultLifetime: number,
  eku: string,
  opts: { dnsNames?: string[]; ipAddresses?: string[]; extra?: { oid: string; critical: boolean; value: Buffer } },
): Verdict<IssuedCert> {
  const lifetimeSec = req.lifetimeSec ?? defaultLifetime;
  if (!(lifetimeSec > 0)) return refuse('E_CERT_EXPIRED', 'lifetime must be positive');
  return issueCertificate(issuer, {
    subjectKey: req.subjectKey,
    subject: { commonName: id.id },
    ...validity({ now: req.now, lifetimeSec }),
    keyUsage: ['digitalSignature'],
    extKeyUsage: [eku],
    san: { uris: [req.uri], dnsNames: opts.dnsNames ?? [], ipAddresses: opts.ipAddresses ?? [] },
    extraExtensions: opts.extra ? [opts.extra] : [],
  });
}
