/**
 * Enrollment and renewal, the proxy's side (SPEC §4.1, §4.5): the TLS and SSH host keys are generated here and
 * never leave the host; the CA gets a CSR and an SSH public key and answers with the TLS chain, the SSH host
 * cert and the trust lists (instance CAs for an instance proxy, that org's CAs only for an org proxy). The
 * answer becomes the ProxyState that `serve` runs on. Renewal sends fresh keys, signed by the current TLS key.
 */
import { currentTlsProof, type FreshKeys, withFreshKeys } from '../enrolled/keys.js';
import { GatewayError } from '../errors/codes.js';
import type { ProxyEnrollResponse } from '../protocol/api.js';
import type { CaClient } from '../protocol/ca-client.js';
import { scopeOf } from './proxy.js';
import type { ProxyState } from './state.js';

/** What is decided locally at enrollment (not by the CA). */
export type ProxySettings = Pick<
  ProxyState,
  | 'proxyId'
  | 'scope'
  | 'orgId'
  | 'hostnames'
  | 'sshListen'
  | 'tlsListen'
  | 'sshAddress'
  | 'tlsAddress'
  | 'caUrl'
  | 'caFingerprint'
>;

/** Turns the CA's answer into the stored state, refusing an answer for another proxy, scope or org. */
export function stateFromResponse(
  r: ProxyEnrollResponse,
  s: ProxySettings,
  keys: Pick<FreshKeys, 'tlsKeyPem' | 'sshPrivateKey'>,
): ProxyState {
  const scope = scopeOf(r.proxyUri);
  const id = r.proxyUri.slice(r.proxyUri.lastIndexOf('/') + 1);
  if (scope.scope !== s.scope || (scope.orgId ?? null) !== s.orgId || id !== s.proxyId) {
    throw new GatewayError('E_CERT_IDENTITY', `CA answered for ${r.proxyUri}, not ${s.scope} proxy ${s.proxyId}`);
  }
  if (r.trust.sshUserCaKeys.length === 0 || r.trust.pkiClientCaCerts.length === 0) {
    throw new GatewayError('E_CERT_MALFORMED', 'CA answered without trust lists');
  }
  return {
    ...s,
    proxyUri: r.proxyUri,
    tlsKeyPem: keys.tlsKeyPem,
    tlsChainPem: r.tlsCertificateChain,
    sshPrivateKey: keys.sshPrivateKey,
    sshHostCertificate: r.sshHostCertificate.trim(),
    sshUserCaKeys: r.trust.sshUserCaKeys.map((k) => k.trim()),
    pkiClientCaCerts: [...r.trust.pkiClientCaCerts],
    revocationFeedKey: r.revocationFeedKey,
    notAfter: r.notAfter,
    ...(r.rotation ? { rotation: r.rotation } : {}),
  };
}

export interface EnrollOptions extends ProxySettings {
  /** A client carrying the admin's (instance) or an org-admin's (org) token, or none with an enrollment token. */
  client: CaClient;
  enrollmentToken?: string;
}

export function enroll(o: EnrollOptions): Promise<ProxyState> {
  const { scope, proxyId, hostnames, sshAddress, tlsAddress } = o;
  const named = { scope, ...(o.orgId ? { orgId: o.orgId } : {}), proxyId, hostnames, sshAddress, tlsAddress };
  const token = o.enrollmentToken ? { enrollmentToken: o.enrollmentToken } : {};
  return withFreshKeys(
    'proxy',
    o.proxyId,
    (request) => o.client.enrollProxy({ ...named, ...request, ...token }),
    (response, keys) => stateFromResponse(response, o, keys),
  );
}

/** Renews both certificates with fresh keys, proving itself with the current TLS key. */
export function renew(client: CaClient, current: ProxyState): Promise<ProxyState> {
  return withFreshKeys(
    'proxy',
    current.proxyId,
    (request) => client.renewProxy(request, currentTlsProof(current)),
    (response, keys) => stateFromResponse(response, current, keys),
  );
}

/**
 * When to renew: at about two thirds of the remaining lifetime from `issuedAtMs`, with ±5 % jitter (step-ca's
 * habit), never before a minute from now. Pure.
 */
export function renewalDelayMs(issuedAtMs: number, notAfterMs: number, nowMs: number, random = Math.random()): number {
  const lifetime = Math.max(0, notAfterMs - issuedAtMs);
  const at = issuedAtMs + lifetime * (2 / 3) + lifetime * 0.05 * (2 * random - 1);
  return Math.max(60_000, at - nowMs);
}
