/**
 * OpenSSH certificates (PROTOCOL.certkeys): the public surface of lib/sshcert.
 *
 * CONTRACT FILE: the names below are what other modules (lib/sshwire, lib/ca) import.
 * The implementation lives in sibling files and is re-exported from here.
 */

export { formatCertificate, parseCertificate, signCertificate } from './cert.js';
export { fingerprint, parsePublicKey } from './keyline.js';
export { type KeyAlgorithm, publicKeyBlob } from './keys.js';
export { toOpenSshPrivateKey } from './privkey.js';
export type { SignatureAlgorithm } from './signature.js';
export { signSsh } from './signature.js';
export { formatPublicKey } from './text.js';
export type { CertificateRequest, CertType, SshCertificate, VerifyOptions } from './types.js';
export { verifyCertificate, verifySshSignature } from './verify.js';
