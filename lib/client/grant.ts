/**
 * Obtaining an access grant (SPEC §4.4), platform side. The key is generated here and never leaves the host:
 * the CA only sees two CSRs (outer for the proxy, inner for the gateway) for the same ECDSA P-256 key.
 *
 * `GrantSource` is the seam to the CA: the real one wraps lib/protocol/ca-client (POST /v1/grants with a
 * pinned CA certificate); tests inject one that mints certificates locally.
 */
import type { KeyObject } from 'node:crypto';
import { GatewayError } from '../errors/codes.js';
import { createCsrPem } from '../pki/csr.js';
import type { GrantMode, GrantTarget } from '../pki/grant.js';
import { parseIdentityOfKind } from '../pki/identity.js';
import { generateKeyPair } from '../pki/keys.js';
import { certificateInputs, parseCertificate } from '../pki/x509.js';
import type { GrantRequest, GrantResponse, ProxyScope } from '../protocol/api.js';

/** A proxy where the gateway can be attached, as the CA lists it in a grant response. */
export type ProxyEndpoint = GrantResponse['proxies'][number];
export type { GrantRequest, GrantResponse, ProxyScope };

/** The CA, as the client sees it. Refusals reject with a GatewayError (E_POLICY_DENIED, E_AUTH_INVALID, …). */
export interface GrantSource {
  requestGrant(req: GrantRequest): Promise<GrantResponse>;
}

/** What the client asks for; also the GrantCache key. */
export interface GrantSpec {
  orgId: string;
  gatewayId: string;
  target: GrantTarget;
  mode: GrantMode;
  ttlSeconds?: number;
}

/** A grant ready to dial with: the local key, the certificates, and whom to trust. */
export interface ClientGrant {
  spec: GrantSpec;
  grantId: string;
  privateKey: KeyObject;
  outerChain: Partial<Record<ProxyScope, string>>;
  innerChain: string;
  /** The gateway URI the inner server certificate must carry, exactly. */
  gatewayUri: string;
  /** Trust domain of the gateway URI (used to name the proxies we expect). */
  trustDomain: string;
  proxyServerCas: string[];
  gatewayServerCas: string[];
  proxies: ProxyEndpoint[];
  /** Earliest notAfter of the certificates we will present, in ms since the epoch. */
  expiresAtMs: number;
}

/** Generates the key, writes both CSRs and asks the source. The response is checked before use. */
export async function obtainGrant(source: GrantSource, spec: GrantSpec): Promise<ClientGrant> {
  const { privateKey } = await generateKeyPair('ecdsa-p256');
  // The CSR subject is informational: the CA's profile decides every name in the certificates.
  const csr = createCsrPem({ privateKey, commonName: 'infisical-connect' });
  const res = await source.requestGrant({
    orgId: spec.orgId,
    gatewayId: spec.gatewayId,
    target: spec.target,
    mode: spec.mode,
    outerCsr: csr,
    innerCsr: csr,
    ...(spec.ttlSeconds === undefined ? {} : { ttlSeconds: spec.ttlSeconds }),
  });
  return clientGrantFrom(spec, privateKey, res);
}

/** Checks a grant response against what was asked and turns it into a ClientGrant. Throws GatewayError. */
export function clientGrantFrom(spec: GrantSpec, privateKey: KeyObject, res: GrantResponse): ClientGrant {
  const bad = (why: string) => new GatewayError('E_REQUEST_INVALID', `CA grant response: ${why}`);
  const gw = parseIdentityOfKind(res.gatewayUri, 'gateway');
  if (!gw.ok) throw bad(gw.reason);
  if (gw.value.orgId !== spec.orgId || gw.value.id !== spec.gatewayId) {
    throw bad(`gateway URI ${res.gatewayUri} is not gateway ${spec.gatewayId} of org ${spec.orgId}`);
  }
  const outerChain: Partial<Record<ProxyScope, string>> = { ...(res.outerCertificateChains ?? {}) };
  if (res.outerCertificateChain) {
    // A single chain serves the scope(s) of the listed proxies that have no dedicated one.
    for (const p of res.proxies) outerChain[p.scope] ??= res.outerCertificateChain;
  }
  if (!Array.isArray(res.proxies) || res.proxies.length === 0) {
    throw new GatewayError('E_GATEWAY_OFFLINE', 'the CA lists no proxy where this gateway can be attached');
  }
  const proxies = res.proxies.filter((p) => outerChain[p.scope] !== undefined);
  if (proxies.length === 0) throw bad('no outer certificate for the scope of any listed proxy');
  if (!res.trust?.proxyServerCaCerts?.length || !res.trust?.gatewayServerCaCerts?.length) {
    throw bad('missing proxy or gateway server CA certificates');
  }
  const leaves = [...Object.values(outerChain), res.innerCertificateChain].map((chain) => leafNotAfter(chain ?? ''));
  const stated = Date.parse(res.expiresAt);
  const expiresAtMs = Math.min(...leaves, Number.isFinite(stated) ? stated : Number.POSITIVE_INFINITY);
  return {
    spec,
    grantId: res.grantId,
    privateKey,
    outerChain,
    innerChain: res.innerCertificateChain,
    gatewayUri: res.gatewayUri,
    trustDomain: gw.value.trustDomain,
    proxyServerCas: res.trust.proxyServerCaCerts,
    gatewayServerCas: res.trust.gatewayServerCaCerts,
    proxies,
    expiresAtMs,
  };
}

function leafNotAfter(chain: string): number {
  try {
    const [leaf] = certificateInputs(chain, 8);
    if (!leaf) throw new Error('empty chain');
    return parseCertificate(leaf).notAfter.getTime();
  } catch (err) {
    throw new GatewayError('E_CERT_MALFORMED', `CA grant response: ${(err as Error).message}`);
  }
}
