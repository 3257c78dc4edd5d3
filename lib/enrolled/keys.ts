/**
 * Keys an enrolled component (gateway or proxy) makes for itself at enrollment and at every renewal: an ECDSA
 * P-256 TLS key with its CSR, and an Ed25519 SSH key. They are generated here and never leave the host; the CA
 * gets the CSR and the SSH public key only.
 */
import { generateKeyPairSync } from 'node:crypto';
import { createCsrPem } from '../pki/csr.js';
import { generateKeyPair, privateKeyPem } from '../pki/keys.js';
import { formatPublicKey, publicKeyBlob, toOpenSshPrivateKey } from '../sshcert/index.js';

export interface FreshKeys {
  /** PKCS#8 PEM of the TLS key. */
  tlsKeyPem: string;
  /** PEM CSR for it: the CA's profile decides every name; the CN only helps people reading a CSR. */
  csr: string;
  /** OpenSSH private key text of the SSH key. */
  sshPrivateKey: string;
  /** OpenSSH public key line. */
  sshPublicKey: string;
}

export type ComponentRole = 'gateway' | 'proxy';

export async function freshKeys(role: ComponentRole, id: string): Promise<FreshKeys> {
  const tls = await generateKeyPair('ecdsa-p256');
  const ssh = generateKeyPairSync('ed25519').privateKey;
  return {
    tlsKeyPem: privateKeyPem(tls.privateKey),
    csr: createCsrPem({ privateKey: tls.privateKey, commonName: id }),
    sshPrivateKey: toOpenSshPrivateKey(ssh, `infisical-${role} ${id}`),
    sshPublicKey: formatPublicKey(publicKeyBlob(ssh), id),
  };
}
