/** Data types of lib/sshcert (PROTOCOL.certkeys); kept apart so implementation files share them without cycles. */
export type CertType = 'user' | 'host';

export interface SshCertificate {
  /** e.g. 'ssh-ed25519-cert-v01@openssh.com' */
  certAlgorithm: string;
  /** e.g. 'ssh-ed25519' */
  keyAlgorithm: string;
  nonce: Buffer;
  /** The certified key as a plain SSH public key blob (string algo + key fields). */
  publicKeyBlob: Buffer;
  serial: bigint;
  type: CertType;
  keyId: string;
  principals: string[];
  /** Seconds since the epoch; 0 = always valid from the start. */
  validAfter: bigint;
  /** Seconds since the epoch; 0xffffffffffffffff = forever. */
  validBefore: bigint;
  criticalOptions: Record<string, Buffer>;
  extensions: Record<string, Buffer>;
  /** The CA's public key blob. */
  signatureKeyBlob: Buffer;
  /** The whole SSH signature blob (string sigalg + string sig). */
  signatureBlob: Buffer;
  /** The bytes the CA signed (the whole cert blob minus the trailing signature field). */
  signedBytes: Buffer;
  /** The whole certificate blob as it travels on the wire. */
  blob: Buffer;
}

export interface CertificateRequest {
  /** The key to certify: an SSH public key blob, or OpenSSH text form ("ssh-ed25519 AAAA... comment"). */
  publicKey: Buffer | string;
  type: CertType;
  keyId: string;
  principals: string[];
  validAfter: bigint;
  validBefore: bigint;
  serial?: bigint;
  criticalOptions?: Record<string, string>;
  /** Extension name → value ('' for flag extensions such as permit-port-forwarding). */
  extensions?: Record<string, string>;
  /** CA signature algorithm; defaults to rsa-sha2-512 for RSA CAs (as ssh-keygen), the key's own otherwise. */
  signatureAlgorithm?: 'ssh-ed25519' | 'rsa-sha2-256' | 'rsa-sha2-512' | 'ecdsa-sha2-nistp256';
}

export interface VerifyOptions {
  /** Trusted CA public key blobs. */
  trustedCaKeys: Buffer[];
  type: CertType;
  /** When set, the certificate must list this principal. */
  principal?: string;
  /** Seconds since the epoch. */
  now: number;
  /** Critical options this caller understands; any other critical option refuses the cert. */
  knownCriticalOptions?: string[];
  /** Serial numbers, key ids or CA key fingerprints that are revoked. */
  isRevoked?: (cert: SshCertificate) => boolean;
}
