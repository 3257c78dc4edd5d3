/**
 * Keys an enrolled component (gateway or proxy) makes for itself at enrollment and at every renewal: an ECDSA
 * P-256 TLS key with its CSR, and an Ed25519 SSH key. They are generated here and never leave the host; the CA
 * gets the CSR and the SSH public key only.
 */
import { generateKeyPairSync } from 'node:crypto';
import { createCsrPem } from '../pki/csr.js';
import { generateKeyPair, loadPrivateKey, privateKeyPem } from '../pki/keys.js';
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

/** What the CA is sent of fresh keys: the CSR and the SSH public key (the private halves stay here). */
export interface KeyRequest {
  csr: string;
  sshPublicKey: string;
}

/**
 * Enrollment and renewal alike: fresh keys made here, the CA asked with their public halves (`ask`), its answer
 * and the keys made into the new state (`toState`).
 */
export async function withFreshKeys<R, S>(
  role: ComponentRole,
  id: string,
  ask: (request: KeyRequest) => Promise<R>,
  toState: (response: R, keys: FreshKeys) => S,
): Promise<S> {
  const keys = await freshKeys(role, id);
  return toState(await ask({ csr: keys.csr, sshPublicKey: keys.sshPublicKey }), keys);
}

/** A renewal's proof of possession: the current TLS chain and its key. */
export function currentTlsProof(current: { tlsChainPem: string; tlsKeyPem: string }) {
  return { certificate: current.tlsChainPem, privateKey: loadPrivateKey(current.tlsKeyPem) };
}
