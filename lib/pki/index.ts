/**
 * lib/pki: X.509 for the suite. Keys and CSRs where keys live; CAs and SPEC §3 profiles at the CA; THE verifier
 * and its TLS glue everywhere a certificate is judged.
 */
export {
  type CaIssuer,
  type CertTemplate,
  createIntermediateCa,
  createRootCa,
  type IssuedCert,
  issueCertificate,
  type Lifetime,
  loadIssuer,
  validity,
} from './ca.js';
export { type CsrSpec, createCsr, createCsrPem, type ParsedCsr, parseCsr } from './csr.js';
export {
  describeKey,
  generateKeyPair,
  generateKeyPairSync,
  type KeyAlgorithm,
  type KeyInfo,
  type KeyPair,
  loadPrivateKey,
  privateKeyPem,
  spkiDer,
} from './keys.js';
export {
  DEFAULT_LIFETIME_SEC,
  issueGatewayServerCert,
  issuePlatformInnerClientCert,
  issuePlatformOuterClientCert,
  issueProxyServerCert,
  type LeafRequest,
} from './profiles.js';
export {
  certificatePem,
  checkPeer,
  connectVerified,
  type MtlsCredentials,
  mtlsClientOptions,
  mtlsServerOptions,
  onVerifiedConnection,
  type PeerExpectations,
  peerChain,
} from './tls.js';
export {
  DEFAULT_SKEW_SEC,
  type IssuerRef,
  loadTrustAnchors,
  type Purpose,
  type TrustAnchors,
  type VerifiedPeer,
  type VerifyOptions,
  verifyCertificateChain,
} from './verify.js';
export { certificateInputs, type ParsedCert, parseCertificate, toPem } from './x509.js';
