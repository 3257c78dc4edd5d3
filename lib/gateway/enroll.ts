/**
 * Enrollment and renewal, the gateway's side (SPEC §4.2, §4.5): keys are generated here and never leave the
 * host; the CA gets a CSR and an SSH public key and answers with certificates, trust anchors and the proxy
 * list, which become the GatewayState that `serve` runs on. Renewal sends fresh keys, authenticated by the
 * current TLS key (lib/protocol/ca-client).
 */
import { createPublicKey } from 'node:crypto';
import { currentTlsProof, type FreshKeys, withFreshKeys } from '../enrolled/keys.js';
import { GatewayError } from '../errors/codes.js';
import { decodeReplica, REPLICA_EXTENSION_OID } from '../pki/grant.js';
import { parseIdentityOfKind } from '../pki/identity.js';
import { parseCertificate, pemBlocks } from '../pki/x509.js';
import type { GatewayEnrollResponse } from '../protocol/api.js';
import type { CaClient } from '../protocol/ca-client.js';
import type { GatewayState } from './state.js';

/** Turns the CA's answer into the stored state, refusing an answer for another org or gateway. */
export function stateFromResponse(
  r: GatewayEnrollResponse,
  ids: { orgId: string; gatewayId: string; caUrl: string; caFingerprint: string },
  keys: Pick<FreshKeys, 'tlsKeyPem' | 'sshPrivateKey'>,
): GatewayState {
  const id = parseIdentityOfKind(r.gatewayUri, 'gateway');
  if (!id.ok || id.value.orgId !== ids.orgId || id.value.id !== ids.gatewayId) {
    throw new GatewayError('E_CERT_IDENTITY', `CA answered for ${r.gatewayUri}, not ${ids.orgId}/${ids.gatewayId}`);
  }
  if (r.sshCertificates.length === 0)
    throw new GatewayError('E_CERT_MALFORMED', 'CA answered without SSH certificates');
  if (r.trust.gatewayClientCaCerts.length === 0)
    throw new GatewayError('E_CERT_MALFORMED', 'CA answered without a gateway client CA');
  return {
    orgId: ids.orgId,
    gatewayId: ids.gatewayId,
    gatewayUri: r.gatewayUri,
    caUrl: ids.caUrl,
    caFingerprint: ids.caFingerprint,
    tlsKeyPem: keys.tlsKeyPem,
    tlsChainPem: r.tlsCertificateChain,
    sshPrivateKey: keys.sshPrivateKey,
    sshCertificates: r.sshCertificates.map((c) => ({ scope: c.scope, certificate: c.certificate })),
    sshHostCaKeys: r.trust.sshHostCaKeys.map((k) => ({ scope: k.scope, key: k.key })),
    gatewayClientCaCerts: [...r.trust.gatewayClientCaCerts],
    proxies: r.proxies.map((p) => ({
      proxyId: p.proxyId,
      scope: p.scope,
      hostname: p.hostname,
      sshAddress: p.sshAddress,
      tlsAddress: p.tlsAddress,
    })),
    revocationFeedKey: r.revocationFeedKey,
    notAfter: r.notAfter,
    ...(r.rotation ? { rotation: r.rotation } : {}),
  };
}

export interface EnrollOptions {
  /** A client carrying an org-admin access token, or none when an enrollment token is given. */
  client: CaClient;
  caUrl: string;
  caFingerprint: string;
  orgId: string;
  gatewayId: string;
  /** Enroll as this replica of the gateway (--replica). */
  replica?: string;
  enrollmentToken?: string;
}

export function enroll(o: EnrollOptions): Promise<GatewayState> {
  const token = o.enrollmentToken ? { enrollmentToken: o.enrollmentToken } : {};
  const replica = o.replica ? { replica: o.replica } : {};
  return withFreshKeys(
    'gateway',
    o.gatewayId,
    (request) => o.client.enrollGateway({ orgId: o.orgId, gatewayId: o.gatewayId, ...replica, ...request, ...token }),
    (response, keys) => stateFromResponse(response, o, keys),
  );
}

/** Renews every certificate with fresh keys, proving itself with the current TLS key. */
export function renew(client: CaClient, current: GatewayState): Promise<GatewayState> {
  return withFreshKeys(
    'gateway',
    current.gatewayId,
    (request) => client.renewGateway(request, currentTlsProof(current)),
    (response, keys) => stateFromResponse(response, current, keys),
  );
}

/** The public half of the stored TLS key (for checks that the chain's leaf is ours). */
export function tlsPublicKeyPem(state: GatewayState): string {
  return createPublicKey(state.tlsKeyPem).export({ type: 'spki', format: 'pem' }) as string;
}

/** The replica this state directory was enrolled as (its TLS certificate's GatewayReplica extension), if any. */
export function replicaOf(state: Pick<GatewayState, 'tlsChainPem'>): string | undefined {
  const leaf = pemBlocks(state.tlsChainPem, 'CERTIFICATE')[0];
  const ext = leaf ? parseCertificate(leaf).extensions.get(REPLICA_EXTENSION_OID) : undefined;
  const replica = ext ? decodeReplica(ext.value) : undefined;
  return replica?.ok ? replica.value : undefined;
}
